from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from werkzeug.wrappers import Response

from portal import company as company_service
from portal.auth import authenticate, is_safe_next, roles_required
from portal.db import get_db
from portal.extensions import limiter
from portal.staff import bp
from portal.staff.forms import CompanySettingsForm, LoginForm


def _login_email_key() -> str:
    return "login-account:" + (request.form.get("email") or "").strip().lower()[:254]


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_CLIENT"], methods=["POST"],
               scope="login-client")
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ACCOUNT"], methods=["POST"],
               key_func=_login_email_key, scope="login-account")
def login() -> Response | tuple[str, int]:
    if current_user.is_authenticated:
        return redirect(url_for("staff.dashboard"))
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    if form.validate_on_submit():
        user = authenticate(get_db(), form.email.data or "", form.password.data or "")
        if user is not None:
            # Drop anything set before sign-in (session fixation), then start fresh.
            session.clear()
            login_user(user, remember=form.remember.data)
            target = form.next.data if is_safe_next(form.next.data) else None
            return redirect(target or url_for("staff.dashboard"))
        form.password.errors = ["That email and password do not match an active account."]
    status = 400 if request.method == "POST" else 200
    return render_template("staff/login.html", form=form), status


@bp.post("/logout")
@roles_required()
def logout() -> Response:
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("staff.login"))


@bp.route("/settings", methods=["GET", "POST"])
@roles_required("admin")
def company_settings() -> Response | tuple[str, int]:
    session = get_db()
    company = company_service.editable_company(session)
    form = CompanySettingsForm(data=company_service.form_data(company))
    if form.validate_on_submit():
        company_service.update_company(session, company, form.data)
        session.commit()
        flash("Company settings saved.", "success")
        return redirect(url_for("staff.company_settings"))
    status = 400 if request.method == "POST" else 200
    return render_template("staff/settings.html", form=form), status
