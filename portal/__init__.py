"""Handoff Portal: what sales promised, what the customer confirmed, and the difference."""

from __future__ import annotations

import os
from typing import Any

from dotenv import load_dotenv
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from portal import config as settings
from portal import db


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app. `config` overrides the environment (tests pass their settings here)."""
    load_dotenv(os.path.join(os.getcwd(), ".env"), override=False)
    app = Flask(
        __name__,
        instance_path=os.environ.get("PORTAL_INSTANCE_PATH") or None,
        instance_relative_config=True,
        template_folder="../templates",
        static_folder="../static",
    )
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(settings.from_environment(app.instance_path))
    app.config.update(config or {})
    settings.finalise(app.config, app.instance_path)
    if app.config["TRUST_PROXY"]:
        hops = app.config["TRUST_PROXY"]
        # Flask's documented way to add WSGI middleware; mypy sees a method being replaced.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops
        )

    register_extensions(app)
    register_blueprints(app)
    register_request_hooks(app)
    register_errorhandlers(app)
    register_commands(app)
    return app


def register_extensions(app: Flask) -> None:
    from portal import storage
    from portal.auth import register_user_loader
    from portal.extensions import csrf, limiter, login_manager, register_login_manager

    db.init_app(app)
    storage.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    register_login_manager(app)
    register_user_loader(login_manager)


def register_blueprints(app: Flask) -> None:
    from portal.api import bp as api_bp
    from portal.core import bp as core_bp
    from portal.feedback import bp as feedback_bp
    from portal.payments import bp as payments_bp
    from portal.sms_webhook import bp as sms_webhook_bp
    from portal.staff import bp as staff_bp
    from portal.welcome import bp as welcome_bp

    app.register_blueprint(core_bp)
    app.register_blueprint(welcome_bp, url_prefix="/welcome")
    app.register_blueprint(staff_bp, url_prefix="/staff")
    app.register_blueprint(api_bp, url_prefix="/api/v1")
    app.register_blueprint(payments_bp)
    app.register_blueprint(sms_webhook_bp)
    app.register_blueprint(feedback_bp, url_prefix="/feedback")
    from portal.payments.gateway import warn_if_payments_off

    warn_if_payments_off(app.config)


def register_request_hooks(app: Flask) -> None:
    from portal import web

    web.register(app)


def register_errorhandlers(app: Flask) -> None:
    from portal import errors

    errors.register(app)


def register_commands(app: Flask) -> None:
    from portal import cli

    cli.register(app)
