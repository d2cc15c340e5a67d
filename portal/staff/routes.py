from __future__ import annotations

from email.utils import parseaddr

from flask import Response as FlaskResponse
from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from werkzeug.wrappers import Response

from portal import agreement, brand, logo, webhooks
from portal import company as company_service
from portal.access import Action, roles_for
from portal.auth import authenticate, end_sessions, is_safe_next, record_sign_in, roles_required
from portal.db import get_db, unit_of_work
from portal.extensions import limiter
from portal.models import CompanySettings
from portal.staff import bp
from portal.staff.forms import CompanySettingsForm, LoginForm, WebhookForm
from portal.web import body_limit


def _login_email_key() -> str:
    return "login-account:" + (request.form.get("email") or "").strip().lower()[:254]


def _sign_in_refused(response: FlaskResponse) -> bool:
    return response.status_code == 400


def _forget_failed_sign_ins() -> None:
    """A successful sign-in starts the account's count again: its owner, having got in, is not
    locked out later by their own earlier typos."""
    key = _login_email_key()
    for applied in limiter.current_limits:
        if key in applied.request_args:
            applied.limiter.clear(applied.limit, *applied.request_args)


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_CLIENT"], methods=["POST"], scope="login-client")
# Per account, only refused attempts count (a success clears the count): counting successes
# too locked an owner out after a few ordinary sign-ins.
@limiter.limit(
    lambda: current_app.config["LOGIN_LIMIT_PER_ACCOUNT"],
    methods=["POST"],
    key_func=_login_email_key,
    scope="login-account",
    deduct_when=_sign_in_refused,
)
def login() -> str | Response | tuple[str, int]:
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
            with unit_of_work():
                record_sign_in(user)
            _forget_failed_sign_ins()
            target = form.next.data if is_safe_next(form.next.data) else None
            return redirect(target or url_for("staff.dashboard"))
        form.password.errors = ["That email and password do not match an active account."]
    status = 400 if request.method == "POST" else 200
    return render_template("staff/login.html", form=form), status


@bp.post("/logout")
@roles_required()
def logout() -> Response:
    with unit_of_work():
        end_sessions(current_user._get_current_object())
    session.clear()
    # After clearing: logout_user leaves the flag that makes Flask-Login delete the remember-me
    # cookie, which a clear afterwards would erase.
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("staff.login"))


@bp.route("/settings", methods=["GET", "POST"])
@body_limit(logo.UPLOAD_LIMIT)
@roles_required(*roles_for(Action.SETTINGS))
def company_settings() -> Response | tuple[str, int]:
    company = company_service.editable_company(get_db())
    form = CompanySettingsForm(data=_settings_data(company))
    valid = form.validate_on_submit()
    if valid and "preview" not in request.form:
        with unit_of_work() as db:
            company_service.update_company(db, company, form.data, new_logo=form.logo_png)
            new_version = agreement.save_terms(
                db,
                agreement.parse_terms(form.service_terms.data or "")[0],
                current_user._get_current_object(),
            )
        flash("Company settings saved.", "success")
        if new_version is not None:
            flash(f"Service terms version {new_version} saved: it applies to new signatures only.", "info")
        return redirect(url_for("staff.company_settings"))
    status = 400 if request.method == "POST" and not valid else 200
    return _settings_page(
        form, WebhookForm(formdata=None, data={"url": company.webhook_url}), company, status
    )


@bp.post("/settings/webhook")
@roles_required(*roles_for(Action.SETTINGS))
def webhook_settings() -> Response | tuple[str, int]:
    """Save the webhook URL; a new signing secret is shown on this page once (never stored in
    the session or a flash message), an empty URL turns webhooks off."""
    company = company_service.editable_company(get_db())
    webhook_form = WebhookForm()
    if webhook_form.validate_on_submit():
        try:
            with unit_of_work() as db:
                company = company_service.editable_company(db)
                secret = webhooks.set_url(db, company, webhook_form.url.data or "", current_app.config)
        except webhooks.WebhookUrlError as error:
            webhook_form.url.errors = [str(error)]
        else:
            if secret is None:
                flash("Webhooks are off: no events will be sent.", "success")
                return redirect(url_for("staff.company_settings"))
            return _settings_page(
                CompanySettingsForm(formdata=None, data=_settings_data(company)),
                webhook_form,
                company,
                200,
                new_secret=secret,
            )
    return _settings_page(
        CompanySettingsForm(formdata=None, data=_settings_data(company)),
        webhook_form,
        company,
        400,
    )


def _settings_data(company: CompanySettings) -> dict[str, object]:
    """The settings form's values: the company's, and the service terms in force as text."""
    terms = agreement.terms_text(agreement.current_terms(get_db()))
    return {**company_service.form_data(company), "service_terms": terms}


def _settings_page(
    form: CompanySettingsForm,
    webhook_form: WebhookForm,
    company: CompanySettings,
    status: int,
    new_secret: str | None = None,
) -> tuple[str, int]:
    entered = brand.preview(form.brand_color.data) or brand.preview(company.brand_color)
    return render_template(
        "staff/settings.html",
        form=form,
        webhook_form=webhook_form,
        new_secret=new_secret,
        deliveries=webhooks.recent(get_db()),
        terms=agreement.current_terms(get_db()),
        saved=company,
        preview=entered,
        shade=brand.preview(entered.shade) if entered and entered.shade else None,
        sending_address=parseaddr(current_app.config["MAIL_FROM"])[1],
    ), status
