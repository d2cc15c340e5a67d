"""Extensions, created unbound here and initialised in the app factory."""

from __future__ import annotations

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, current_user
from flask_wtf import CSRFProtect

csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address)


login_manager = LoginManager()
login_manager.login_view = "staff.login"
login_manager.login_message = "Please sign in to see that page."
login_manager.login_message_category = "info"
login_manager.session_protection = "strong"


def register_login_manager(app: Flask) -> None:
    """Flask-Login, without its eager template variable.

    Its own context processor loads the user on every rendered page; "strong" protection then
    found a customer's session (which has no staff login in it) "changed", cleared it of login
    keys and so re-issued the customer's cookie on every page. Templates get the lazy
    `current_user` proxy instead: only pages that show staff details (staff pages) load the user,
    and with it the protection runs where there is a staff login to protect."""
    login_manager.init_app(app, add_context_processor=False)
    app.context_processor(lambda: {"current_user": current_user})
