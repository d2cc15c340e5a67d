"""Customer pages. The account always comes from the customer session, never from the URL."""
from __future__ import annotations

from datetime import date

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from portal import confirmations as confirm
from portal import email_change, links, once, record
from portal.company import get_company
from portal.db import begin_writes, get_db, mark_writes, reads_first
from portal.extensions import limiter
from portal.models import Account
from portal.handoffs import OnboardingSigned, display_value
from portal.onboarding import send_link_on_request
from portal.skeletons import render_filled
from portal.web import fixed_url
from portal.welcome import bp, calendar
from portal.welcome import customer
from portal.welcome.customer import customer_required, customer_step_required
from portal.welcome.forms import (
    ContactForm,
    NewLinkForm,
    SignForm,
    change_form_class,
    item_form_class,
    parse_answers,
    prefill,
    readiness_form_class,
)

LINK_PROBLEM = "welcome/link_problem.html"


@bp.errorhandler(OnboardingSigned)
def already_signed(error: OnboardingSigned) -> BaseResponse:
    get_db().rollback()
    flash(str(error), "info")
    return redirect(url_for("welcome.my_service"))


@bp.get("/t/<token>")
def open_link(token: str) -> str | BaseResponse | tuple[str, int]:
    """Check the link, start a customer session, and move the token out of the address bar."""
    mark_writes()
    session = get_db()
    check = links.check_token(session, token)
    if check.status is not links.LinkStatus.OK or check.account is None:
        # Expired, tampered, revoked, other purpose, deleted account: one answer for all.
        return render_template(LINK_PROBLEM, form=NewLinkForm()), 400
    confirm.record_opened(session, check.account)
    session.commit()
    customer.start(check.account, check.nonce_hash)
    return redirect(url_for("welcome.resume"))


@bp.get("/session-ended")
def session_ended() -> str:
    return render_template(LINK_PROBLEM, form=NewLinkForm(), ended=True)


def _address_key() -> str:
    return "new-link:" + (request.form.get("email") or "").strip().lower()[:254]


@bp.post("/new-link")
@limiter.limit(lambda: current_app.config["NEW_LINK_LIMIT_PER_CLIENT"], scope="new-link-client")
@limiter.limit(lambda: current_app.config["NEW_LINK_LIMIT_PER_ADDRESS"], key_func=_address_key,
               scope="new-link-address")
def new_link() -> str | tuple[str, int]:
    form = NewLinkForm()
    if not form.validate_on_submit():
        return render_template(LINK_PROBLEM, form=form), 400
    session = get_db()
    if once.claim(session, form.form_id.data, "new_link") is not None:
        send_link_on_request(session, form.email.data or "")
        session.commit()
    # The same words whether or not the address is on file: no account enumeration.
    return render_template("welcome/link_requested.html")


@bp.get("/")
@customer_required
def resume(account: Account) -> BaseResponse:
    if account.signed_at is not None:
        return redirect(url_for("welcome.my_service"))
    progress = confirm.progress(get_db(), account)
    return redirect(url_for("welcome.step", name=progress.first_unfinished.step.name))


@bp.get("/step/<name>")
@customer_step_required
def step_page(account: confirm.StepAccount, name: str) -> str | BaseResponse | tuple[str, int]:
    """Showing a step. Pages without promise forms render from the plain read; the others
    load the account's objects, as posting does."""
    if account.signed_at is not None:
        return _signed_already()
    status = account.progress.get(name)
    if status is None:
        abort(404)
    if status.step.name in PLAIN_PAGES:
        return PLAIN_PAGES[status.step.name](account, status)
    return _handle_step(account, status)


@bp.post("/step/<name>")
@reads_first
@customer_step_required
def step(account: confirm.StepAccount, name: str) -> str | BaseResponse | tuple[str, int]:
    """Answering a step. Promise answers are saved from the plain read; the other steps, and
    a form with mistakes (shown again with its messages), use the account's objects."""
    if account.signed_at is not None:
        return _signed_already()
    status = account.progress.get(name)
    if status is None:
        abort(404)
    if status.step.kinds:
        saved = _save_answers(account, account.progress, status, _answers_form(status))
        if saved is not None:
            return saved
    return _handle_step(account, status)


def _signed_already() -> BaseResponse:
    flash("You have signed already. To change something, ask for a change below.", "info")
    return redirect(url_for("welcome.my_service"))


def _handle_step(account: confirm.StepAccount, status: confirm.StepStatus) -> str | BaseResponse | tuple[str, int]:
    """The step's own handler, with the account's objects and the progress already read."""
    full = get_db().get(Account, account.id)
    assert full is not None  # the plain read found it in this request
    return STEP_HANDLERS[status.step.name](full, account.progress, status)


def _frame(progress: confirm.Progress, status: confirm.StepStatus) -> dict[str, object]:
    """What every step's frame shows: the progress bar and the ways back and on."""
    before, after = progress.neighbours(status.step.name)
    return {"progress": progress, "current": status, "previous": before, "following": after}


def _render_step(template: str, progress: confirm.Progress, status: confirm.StepStatus,
                 http_status: int = 200, **context: object) -> tuple[str, int]:
    return render_template(template, **_frame(progress, status), **context), http_status


def _next(progress: confirm.Progress, status: confirm.StepStatus) -> BaseResponse:
    _, after = progress.neighbours(status.step.name)
    return redirect(fixed_url("welcome.step", name=after.step.name) if after else fixed_url("welcome.resume"))


def _claimed(form: once.OnceForm, purpose: str) -> bool:
    """False when this exact form was posted before (double click): do nothing twice. The
    claim is a step's first write, so the write lock is taken here (see db.reads_first)."""
    begin_writes(get_db())
    return once.claim(get_db(), form.form_id.data, purpose) is not None


def welcome_step(account: Account, progress: confirm.Progress, status: confirm.StepStatus):  # type: ignore[no-untyped-def]
    form = once.OnceForm()
    if form.validate_on_submit():
        if _claimed(form, "step-welcome"):
            confirm.record_step_event(get_db(), account, "started")
            get_db().commit()
        return _next(progress, status)
    return _render_welcome(progress, status, account.customer.name, account.service_address,
                           account.first_visit, form)


WELCOME_TEMPLATE = "welcome/step_welcome.html"


def _welcome_page(account: confirm.StepAccount, status: confirm.StepStatus) -> str:
    """The first page of every customer in a burst: filled into a skeleton shared by every
    customer at the same point of the same steps (see portal.skeletons)."""
    shape = (tuple((each.step.name, each.done) for each in account.progress.steps), status.step.name,
             account.first_visit is not None)
    personal = _welcome_values(account.customer_name, account.service_address, account.first_visit,
                               once.new_form_id())
    return render_filled(WELCOME_TEMPLATE, shape, personal, **_frame(account.progress, status),
                         form=None, first_visit=account.first_visit is not None)


def _render_welcome(progress: confirm.Progress, status: confirm.StepStatus, customer_name: str,
                    service_address: str, first_visit: date | None,
                    form: once.OnceForm) -> tuple[str, int]:
    return _render_step(WELCOME_TEMPLATE, progress, status, 400, form=form,
                        first_visit=first_visit is not None,
                        **_welcome_values(customer_name, service_address, first_visit, form.form_id.data))


def _welcome_values(customer_name: str, service_address: str, first_visit: date | None,
                    form_id: str) -> dict[str, str]:
    """The welcome page's values that are the customer's own: the skeleton's slots."""
    shown = display_value(first_visit.isoformat(), "start_date") if first_visit else ""
    return {"customer_name": customer_name, "service_address": service_address,
            "first_visit_shown": shown, "form_id": form_id}


def _answers_form(status: confirm.StepStatus, data: dict[str, object] | None = None) -> once.OnceForm:
    return item_form_class(status.items, with_note=status.step.name == "access")(data=data)


def _save_answers(account: Account | confirm.StepAccount, progress: confirm.Progress,
                  status: confirm.StepStatus, form: once.OnceForm) -> BaseResponse | None:
    """Record a promise step's answers and go on; None when the form has mistakes."""
    if not form.validate_on_submit():
        return None
    answers = parse_answers(form, status.items, date.today())
    if answers is None:
        return None
    if _claimed(form, f"step-{status.step.name}"):
        session = get_db()
        confirm.record_answers(session, account, answers)
        note = (getattr(form, "technician_note", None) and form.technician_note.data or "").strip()
        if note:
            confirm.record_step_event(session, account, "technician_note", confirmed=note)
        session.commit()
    return _next(progress, status)


def items_step(account: Account, progress: confirm.Progress, status: confirm.StepStatus):  # type: ignore[no-untyped-def]
    if request.method == "GET":
        latest = record.latest_entries_by_item(get_db(), [account.id])
        form = _answers_form(status, prefill(status.items, latest))
    else:
        form = _answers_form(status)
        saved = _save_answers(account, progress, status, form)
        if saved is not None:
            return saved
    code = 400 if request.method == "POST" else 200
    return _render_step("welcome/step_items.html", progress, status, code, form=form,
                        items=status.items, account=account)


def readiness_step(account: Account, progress: confirm.Progress, status: confirm.StepStatus):  # type: ignore[no-untyped-def]
    checklist = get_company().readiness_checklist or []
    form = readiness_form_class(checklist)()
    if form.validate_on_submit():
        answers = {label: getattr(form, f"r{i}").data for i, label in enumerate(checklist)}
        missing = [i for i, label in enumerate(checklist) if answers[label] not in ("done", "not_yet")]
        for i in missing:
            getattr(form, f"r{i}").errors = ["Choose Done or Not yet."]
        if not missing:
            if _claimed(form, "step-readiness"):
                ready = sum(1 for a in answers.values() if a == "done")
                confirm.record_step_event(get_db(), account, "readiness",
                                          confirmed=f"{ready} of {len(checklist)} ready",
                                          details={"answers": answers})
                get_db().commit()
            return _next(progress, status)
    code = 400 if request.method == "POST" else 200
    return _render_step("welcome/step_readiness.html", progress, status, code, form=form,
                        checklist=checklist)


def contact_step(account: Account, progress: confirm.Progress, status: confirm.StepStatus):  # type: ignore[no-untyped-def]
    form = ContactForm(data={"phone": account.customer.phone, "channels": ["email"]}
                       if request.method == "GET" else None)
    if form.validate_on_submit() and form.extra_checks():
        if _claimed(form, "step-contact"):
            _record_contact(account, form)
            new_email = (form.new_email.data or "").strip().lower()
            if new_email and new_email != account.customer.email:
                email_change.request_change(get_db(), account, new_email)
                flash(f"We have emailed {account.customer.email} to confirm the change.", "info")
            get_db().commit()
        return _next(progress, status)
    code = 400 if request.method == "POST" else 200
    return _render_step("welcome/step_contact.html", progress, status, code, form=form)


def _record_contact(account: Account, form: ContactForm) -> None:
    session = get_db()
    channels = list(form.channels.data or [])
    details = {"channels": channels, "phone": (form.phone.data or "").strip(),
               "preferred_times": (form.preferred_times.data or "").strip(),
               "sms_consent": bool(form.sms_consent.data)}
    confirm.record_step_event(session, account, "contact_preferences",
                              confirmed=", ".join(channels), details=details)
    if form.sms_consent.data:
        # Consent for texts is recorded on its own, with the exact words agreed to.
        confirm.record_step_event(session, account, "sms_consent", confirmed=details["phone"],
                                  details={"consent_text": form.sms_consent.label.text})


def review_step(account: Account, progress: confirm.Progress, status: confirm.StepStatus):  # type: ignore[no-untyped-def]
    session = get_db()
    form = SignForm()
    unfinished = progress.unfinished_before_review
    if form.validate_on_submit():
        if unfinished:
            form.form_errors.append("Please finish the steps marked below before signing.")
        else:
            if _claimed(form, "sign"):
                confirm.sign(session, account, (form.full_name.data or "").strip())
                session.commit()
            return redirect(url_for("welcome.thanks"))
    code = 400 if request.method == "POST" else 200
    return _render_step("welcome/step_review.html", progress, status, code, form=form,
                        lines=confirm.summary(session, account),
                        extras=confirm.latest_step_details(session, account), unfinished=unfinished)


PLAIN_PAGES = {"welcome": _welcome_page}
STEP_HANDLERS = {
    "welcome": welcome_step, "schedule": items_step, "access": items_step,
    "readiness": readiness_step, "contact": contact_step, "promises": items_step,
    "billing": items_step, "review": review_step,
}


@bp.get("/thanks")
@customer_required
def thanks(account: Account) -> str | BaseResponse:
    if account.signed_at is None:
        return redirect(url_for("welcome.resume"))
    lines = confirm.summary(get_db(), account)
    changed = [line for line in lines if line.outcome in ("changed", "disputed")]
    return render_template("welcome/thanks.html", account=account, changed=changed)


def _service_context(account: Account) -> dict[str, object]:
    session = get_db()
    days = confirm.agreed_days(session, account)
    return {"account": account, "lines": confirm.summary(session, account), "days": days,
            "next_visit": confirm.next_visit(days, confirm.agreed_start(session, account), date.today()),
            "extras": confirm.latest_step_details(session, account)}


@bp.get("/service")
@customer_required
def my_service(account: Account) -> str | BaseResponse:
    if account.signed_at is None:
        return redirect(url_for("welcome.resume"))
    form = change_form_class(account.items)()
    return render_template("welcome/service.html", form=form, **_service_context(account))


@bp.post("/service/change")
@customer_required
def request_change(account: Account) -> str | BaseResponse | tuple[str, int]:
    if account.signed_at is None:
        return redirect(url_for("welcome.resume"))
    form = change_form_class(account.items)()
    if form.validate_on_submit():
        if _claimed(form, "change-request"):
            item = next((i for i in account.items if str(i.id) == form.item.data), None)
            confirm.request_change(get_db(), account, item, (form.details.data or "").strip())
            get_db().commit()
        flash("Thanks, we have your request. The office will contact you shortly.", "success")
        return redirect(url_for("welcome.my_service"))
    return render_template("welcome/service.html", form=form, **_service_context(account)), 400


@bp.get("/service/visit.ics")
@customer_required
def visit_calendar(account: Account) -> Response:
    session = get_db()
    days = confirm.agreed_days(session, account)
    first = confirm.next_visit(days, confirm.agreed_start(session, account), date.today())
    if first is None:
        abort(404)
    body = calendar.weekly_visit(account, get_company().name, first, days)
    response = Response(body, mimetype="text/calendar")
    response.headers["Content-Disposition"] = 'attachment; filename="pool-visit.ics"'
    return response


@bp.get("/email-change/<token>")
def confirm_email_change(token: str) -> tuple[str, int] | str:
    mark_writes()
    session = get_db()
    account = email_change.confirm_change(session, token)
    if account is None:
        return render_template(LINK_PROBLEM, form=NewLinkForm()), 400
    session.commit()
    customer.end()  # the session came from the old link, which no longer works
    return render_template("welcome/email_changed.html", email=account.customer.email)


@bp.post("/sign-out")
def sign_out() -> BaseResponse:
    customer.end()
    return redirect(url_for("welcome.session_ended"))
