"""JSON API for other systems (CRMs), authenticated by bearer tokens."""

from flask import Blueprint

bp = Blueprint("api", __name__)

from portal.api import routes  # noqa: E402,F401

__all__ = ["bp"]
