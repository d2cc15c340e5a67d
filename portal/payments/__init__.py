"""Stripe Checkout, invoices and the Stripe webhook."""

from flask import Blueprint

bp = Blueprint("payments", __name__)

from portal.payments import routes  # noqa: E402,F401

__all__ = ["bp"]
