"""The staff navigation: one list of entries, each shown only to roles the access policy lets
use it, and only when its page exists in this build (a page another change adds appears here
once its endpoint is registered; url_for on a missing endpoint would fail every page)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, request, url_for
from flask_login import current_user

from portal.access import Action, allows
from portal.staff import bp


@dataclass(frozen=True)
class NavEntry:
    label: str
    endpoint: str
    action: Action


NAV = (
    NavEntry("Dashboard", "staff.dashboard", Action.SEE),
    NavEntry("Accounts", "staff.accounts", Action.SEE),
    NavEntry("Inbox", "staff.differences", Action.DIFFERENCES),
    NavEntry("Day list", "staff.day_list", Action.BRIEF),
    NavEntry("New handoff", "staff.new_handoff", Action.HAND_OFF),
    NavEntry("Reports", "staff.report_page", Action.REPORTS),
    NavEntry("Settings", "staff.company_settings", Action.SETTINGS),
    NavEntry("Staff", "staff.staff_page", Action.MANAGE_STAFF),
)


@dataclass(frozen=True)
class NavLink:
    label: str
    url: str
    current: bool


@bp.app_template_global("staff_nav")
def staff_nav() -> list[NavLink]:
    """The signed-in user's entries, in order; none for anyone else."""
    if not current_user.is_authenticated:
        return []
    user = current_user._get_current_object()
    return [
        NavLink(entry.label, url_for(entry.endpoint), request.endpoint == entry.endpoint)
        for entry in NAV
        if entry.endpoint in current_app.view_functions and allows(user, entry.action)
    ]
