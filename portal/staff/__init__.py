"""Staff pages: sign-in, dashboard, accounts, differences, briefs, staff and passwords."""

from flask import Blueprint

bp = Blueprint("staff", __name__)

from portal.staff import account_list, accounts, handback, navigation, people, routes, signatures, workspace  # noqa: E402,F401  (registers the views)

__all__ = ["bp"]
