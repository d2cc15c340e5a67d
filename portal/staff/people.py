"""Staff accounts in the browser: the admin's staff page (invite, role, deactivate, the audit),
one's own password, and the forgotten-password and invite links."""

from __future__ import annotations

from collections.abc import Callable

from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from portal import once
from portal import staff_admin as service
from portal.access import Action, roles_for
from portal.auth import roles_required
from portal.db import get_db, unit_of_work
from portal.extensions import limiter
from portal.models import StaffUser
from portal.staff import bp
from portal.staff.forms import (
    ActiveForm,
    ChangePasswordForm,
    ForgotPasswordForm,
    InviteForm,
    RoleForm,
    SetPasswordForm,
)

MANAGERS = roles_for(Action.MANAGE_STAFF)
LINK_KINDS = {"invite": service.INVITE, "reset": service.RESET}
# The link's token, once opened: kept in the session so it leaves the address bar.
PENDING_LINK = "password_link"


def _me() -> StaffUser:
    # current_user is a LocalProxy typed Any by Flask-Login's stub; the user loader returns StaffUser.
    return current_user._get_current_object()  # type: ignore[no-any-return]


def _row_forms(user: StaffUser) -> tuple[RoleForm, ActiveForm]:
    # A prefix per row: every row's fields get their own ids (and labels) on the one page.
    role = RoleForm(prefix=f"role-{user.id}")
    active = ActiveForm(prefix=f"active-{user.id}")
    if not role.is_submitted():
        role.role.data = user.role
        active.active.data = "0" if user.active else "1"
    return role, active


def _staff_page(invite_form: InviteForm, status: int = 200) -> tuple[str, int]:
    db = get_db()
    people = service.staff_list(db)
    page = request.args.get("page", "1")
    return render_template(
        "staff/staff.html",
        people=people,
        invite_form=invite_form,
        row_forms={user.id: _row_forms(user) for user in people},
        audit=service.audit_page(db, int(page) if page.isdigit() else 1),
        labels=service.AUDIT_LABELS,
        me=_me(),
    ), status


@bp.get("/staff")
@roles_required(*MANAGERS)
def staff_page() -> tuple[str, int]:
    return _staff_page(InviteForm())


@bp.post("/staff/invite")
@roles_required(*MANAGERS)
def invite_staff() -> tuple[str, int] | Response:
    form = InviteForm()
    if not form.validate_on_submit():
        return _staff_page(form, 400)
    try:
        with unit_of_work() as db:
            if once.claim(db, form.submitted_id, "invite_staff") is None:
                return redirect(url_for("staff.staff_page"))
            user = service.invite(
                db, _me(), email=form.email.data or "", name=form.name.data or "", role=form.role.data or ""
            )
    except service.StaffError as error:
        form.email.errors = [str(error)]
        return _staff_page(form, 400)
    flash(
        f"Invitation sent to {user.email}; the link works for "
        f"{current_app.config['STAFF_INVITE_MAX_AGE_HOURS']} hours.",
        "success",
    )
    return redirect(url_for("staff.staff_page"))


def _colleague(db: Session, user_id: int) -> StaffUser:
    user = db.get(StaffUser, user_id)
    if user is None:
        abort(404)
    return user


def _row_change(
    form: RoleForm | ActiveForm,
    user_id: int,
    purpose: str,
    change: Callable[[Session, StaffUser], str | None],
) -> Response:
    """One row's form: the colleague read again inside the unit of work (what the change checks,
    like the last active admin, is read under the write lock), then the change, or its refusal
    as a message on the staff page."""
    back = redirect(url_for("staff.staff_page"))
    _colleague(get_db(), user_id)  # someone who does not exist is a 404, whatever was posted
    if not form.validate_on_submit():
        errors = [error for field in form for error in field.errors]
        flash(" ".join(errors) or "That change was not understood; please try again.", "error")
        return back
    try:
        with unit_of_work() as db:
            user = _colleague(db, user_id)
            if once.claim(db, form.submitted_id, purpose) is None:
                return back
            message = change(db, user)
    except service.StaffError as error:
        flash(str(error), "error")
        return back
    if message:
        flash(message, "success")
    return back


@bp.post("/staff/<int:user_id>/role")
@roles_required(*MANAGERS)
def change_role(user_id: int) -> Response:
    form = RoleForm(prefix=f"role-{user_id}")

    def change(db: Session, user: StaffUser) -> str | None:
        if not service.change_role(db, _me(), user, form.role.data or ""):
            return None
        return f"{user.display_name} is now {user.role}."

    return _row_change(form, user_id, "staff_role", change)


@bp.post("/staff/<int:user_id>/active")
@roles_required(*MANAGERS)
def set_active(user_id: int) -> Response:
    form = ActiveForm(prefix=f"active-{user_id}")
    active = form.active.data == "1"

    def change(db: Session, user: StaffUser) -> str | None:
        if not service.set_active(db, _me(), user, active):
            return None
        return (
            f"{user.display_name} can sign in again."
            if active
            else f"{user.display_name} is deactivated and signed out everywhere."
        )

    return _row_change(form, user_id, "staff_active", change)


# -- one's own password ------------------------------------------------------------------------


@bp.route("/password", methods=["GET", "POST"])
@roles_required()
def change_password() -> tuple[str, int] | Response:
    form = ChangePasswordForm()
    if form.validate_on_submit():
        me = _me()
        try:
            with unit_of_work() as db:
                service.change_password(db, me, form.current.data or "", form.password.data or "")
        except service.StaffError as error:
            form.current.errors = [str(error)]
        else:
            # The change ended every session of this user, this one too: carry on in this one.
            login_user(me)
            flash("Password changed. You are signed out everywhere else.", "success")
            return redirect(url_for("staff.dashboard"))
    status = 400 if request.method == "POST" else 200
    return render_template("staff/password_change.html", form=form), status


# -- forgotten password and invite links (no sign-in) ----------------------------------------


def _reset_address_key() -> str:
    return "reset-address:" + (request.form.get("email") or "").strip().lower()[:254]


@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["RESET_LIMIT_PER_CLIENT"], methods=["POST"], scope="reset-client")
@limiter.limit(
    lambda: current_app.config["RESET_LIMIT_PER_ADDRESS"],
    methods=["POST"],
    key_func=_reset_address_key,
    scope="reset-address",
)
def forgot_password() -> tuple[str, int] | str:
    form = ForgotPasswordForm()
    if not form.validate_on_submit():
        status = 400 if request.method == "POST" else 200
        return render_template("staff/password_forgot.html", form=form), status
    with unit_of_work() as db:
        if once.claim(db, form.submitted_id, "password_reset") is not None:
            service.request_reset(db, form.email.data or "")
    # The same words whether or not the address belongs to anyone.
    return render_template("staff/password_sent.html")


@bp.get("/password/<kind>/<token>")
def password_link(kind: str, token: str) -> Response | tuple[str, int]:
    purpose = LINK_KINDS.get(kind)
    if purpose is None:
        abort(404)
    check = service.check_link(get_db(), token, purpose)
    if check.user is None:
        return _link_problem(check.status)
    session[PENDING_LINK] = {"p": purpose, "t": token}
    return redirect(url_for("staff.set_password"))


def _link_problem(status: service.LinkStatus) -> tuple[str, int]:
    session.pop(PENDING_LINK, None)
    return render_template(
        "staff/password_link_problem.html", expired=status is service.LinkStatus.EXPIRED
    ), 400


@bp.route("/password/new", methods=["GET", "POST"])
def set_password() -> tuple[str, int] | Response:
    pending = session.get(PENDING_LINK)
    if (
        not isinstance(pending, dict)
        or pending.get("p") not in LINK_KINDS.values()
        or not isinstance(pending.get("t"), str)
    ):
        return _link_problem(service.LinkStatus.INVALID)
    check = service.check_link(get_db(), pending["t"], pending["p"])
    if check.user is None:
        return _link_problem(check.status)
    form = SetPasswordForm()
    if form.validate_on_submit():
        with unit_of_work() as db:  # the link checked again under the write lock
            user = service.use_link(db, pending["t"], pending["p"], form.password.data or "")
        if user is None:  # used or changed in the meantime
            return _link_problem(service.LinkStatus.INVALID)
        # Whoever was signed in on this browser is not who chose this password.
        session.clear()
        flash("Password saved. Sign in with it now.", "success")
        return redirect(url_for("staff.login"))
    status = 400 if request.method == "POST" else 200
    return render_template(
        "staff/password_set.html", form=form, user=check.user, invite=pending["p"] == service.INVITE
    ), status
