"""Twilio's inbound-message webhook: opt-out words and HELP."""

from flask import Blueprint

bp = Blueprint("sms_webhook", __name__)

from portal.sms_webhook import routes  # noqa: E402,F401  (registers the view)

__all__ = ["bp"]
