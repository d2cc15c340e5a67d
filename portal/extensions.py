"""Extensions, created unbound here and initialised in the app factory."""
from __future__ import annotations

from flask import current_app, request, session
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf import CSRFProtect

csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address)


class StaffLoginManager(LoginManager):
    """Flask-Login with "strong" session protection applied to staff sign-ins only.

    Its template context processor loads the user on every page, and the protection then
    clears the (absent) login keys of a customer's session and marks it changed, so every
    customer page re-issued the session cookie. With no staff login in the session and no
    remember cookie there is nothing to protect."""

    def _session_protection_failed(self) -> bool:
        remember_cookie = current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token")
        if "_user_id" not in session and remember_cookie not in request.cookies:
            return False
        return bool(super()._session_protection_failed())


login_manager = StaffLoginManager()
login_manager.login_view = "staff.login"
login_manager.login_message = "Please sign in to see that page."
login_manager.login_message_category = "info"
login_manager.session_protection = "strong"
