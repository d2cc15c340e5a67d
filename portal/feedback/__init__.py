"""The customer's answer to "Did your first visit match what we agreed?", opened from the
feedback email's signed single-use link, without signing in."""

from flask import Blueprint

bp = Blueprint("feedback", __name__)

from portal.feedback import routes  # noqa: E402,F401

__all__ = ["bp"]
