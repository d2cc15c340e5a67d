"""The customer's welcome portal, entered by a signed link."""

from flask import Blueprint

bp = Blueprint("welcome", __name__)

from portal.welcome import routes  # noqa: E402,F401

__all__ = ["bp"]
