"""Customer pages. The account always comes from the customer session, never from the URL."""

from __future__ import annotations

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from portal import (
    access_card,
    agreement,
    consents,
    customer_session,
    decisions,
    email_change,
    follow_ups,
    links,
    once,
    photos,
    record,
    sms,
)
from portal import confirmations as confirm
from portal.company import company_today, get_company
from portal.customer_session import customer_pay_required, customer_required
from portal.db import get_db, unit_of_work
from portal.extensions import limiter
from portal.forms import NewLinkForm, PhotoForm
from portal.handoffs import OnboardingSigned
from portal.models import Account
from portal.onboarding import send_link_on_request
from portal.storage import get_storage
from portal.web import body_limit
from portal.welcome import bp, calendar
from portal.welcome.forms import (
    CardUpdateForm,
    ContactForm,
    WelcomeForm,
    change_form_class,
    item_form_class,
    parse_answers,
    prefill,
    readiness_form_class,
    sign_form_class,
)

LINK_PROBLEM = "welcome/link_problem.html"


@bp.errorhandler(OnboardingSigned)
def already_signed(error: OnboardingSigned) -> BaseResponse:
    # Raised inside a unit of work, which rolled back.
    flash(str(error), "info")
    return redirect(url_for("welcome.my_service"))


@bp.get("/t/<token>")
def open_link(token: str) -> str | BaseResponse | tuple[str, int]:
    """Check the link, start a customer session, and move the token out of the address bar."""
    with unit_of_work() as session:
        check = links.check_token(session, token)
        if check.status is links.LinkStatus.OK and check.account is not None:
            confirm.record_opened(session, check.account)
    if check.status is not links.LinkStatus.OK or check.account is None:
        # Expired, tampered, revoked, other purpose, deleted account: one answer for all.
        return render_template(LINK_PROBLEM, form=NewLinkForm()), 400
    customer_session.start(check.account, check.nonce_hash)
    return redirect(url_for("welcome.resume"))


@bp.get("/session-ended")
def session_ended() -> str:
    return render_template(LINK_PROBLEM, form=NewLinkForm(), ended=True)


def _address_key() -> str:
    return "new-link:" + (request.form.get("email") or "").strip().lower()[:254]


@bp.post("/new-link")
@limiter.limit(lambda: current_app.config["NEW_LINK_LIMIT_PER_CLIENT"], scope="new-link-client")
@limiter.limit(
    lambda: current_app.config["NEW_LINK_LIMIT_PER_ADDRESS"], key_func=_address_key, scope="new-link-address"
)
def new_link() -> str | tuple[str, int]:
    form = NewLinkForm()
    if not form.validate_on_submit():
        return render_template(LINK_PROBLEM, form=form), 400
    with unit_of_work() as session:
        if once.claim(session, form.submitted_id, "new_link") is not None:
            send_link_on_request(session, form.email.data or "")
    # The same words whether or not the address is on file: no account enumeration.
    return render_template("welcome/link_requested.html")


@bp.get("/")
@customer_required
def resume(account: Account) -> BaseResponse:
    if account.signed_at is not None:
        return redirect(url_for("welcome.my_service"))
    progress = confirm.progress(get_db(), account)
    return redirect(url_for("welcome.step", name=progress.first_unfinished.step.name))


@bp.route("/step/<name>", methods=["GET", "POST"])
@customer_required
def step(account: Account, name: str) -> str | BaseResponse | tuple[str, int]:
    """Showing a step, and answering it: each step posts one form to its own address."""
    if account.signed_at is not None:
        flash("You have signed already. To change something, ask for a change below.", "info")
        return redirect(url_for("welcome.my_service"))
    progress = confirm.progress(get_db(), account)
    status = progress.get(name)
    if status is None:
        abort(404)
    return STEP_HANDLERS[status.step.name](account, progress, status)


def _render_step(
    template: str, progress: confirm.Progress, status: confirm.StepStatus, **context: object
) -> tuple[str, int]:
    """A step's page: 200 when shown, 400 when a posted form comes back with its mistakes."""
    before, after = progress.neighbours(status.step.name)
    code = 400 if request.method == "POST" else 200
    return render_template(
        template, progress=progress, current=status, previous=before, following=after, **context
    ), code


def _next(progress: confirm.Progress, status: confirm.StepStatus) -> BaseResponse:
    _, after = progress.neighbours(status.step.name)
    return redirect(url_for("welcome.step", name=after.step.name) if after else url_for("welcome.resume"))


def _claimed(session: Session, form: once.OnceForm, purpose: str) -> bool:
    """False when this exact form was posted before (double click): do nothing twice."""
    return once.claim(session, form.submitted_id, purpose) is not None


def welcome_step(
    account: Account, progress: confirm.Progress, status: confirm.StepStatus
) -> str | BaseResponse | tuple[str, int]:
    form = WelcomeForm(data={"goal": account.customer_goal} if request.method == "GET" else None)
    if form.validate_on_submit():
        with unit_of_work() as session:
            if _claimed(session, form, "step-welcome"):
                confirm.record_step_event(session, account, "started")
                confirm.record_goal(session, account, form.goal.data or "")
        return _next(progress, status)
    return _render_step("welcome/step_welcome.html", progress, status, form=form, account=account)


def _answers_form(
    status: confirm.StepStatus, data: dict[str, object] | None = None, posted: bool = True
) -> once.OnceForm:
    """The step's answers form; `posted=False` shows `data` alone (another form was posted)."""
    access = status.step.name == "access"
    form_class = item_form_class(status.items, with_note=access, with_card=access)
    return form_class(data=data) if posted else form_class(formdata=None, data=data)


def items_step(
    account: Account, progress: confirm.Progress, status: confirm.StepStatus
) -> str | BaseResponse | tuple[str, int]:
    """A promise step: one answer per promise, parsed once, recorded in one unit of work."""
    if request.method == "GET":
        latest = record.latest_entries_by_item(get_db(), [account.id])
        data = prefill(status.items, latest)
        if status.step.name == "access":
            data["card"] = access_card.latest(get_db(), account)
        form = _answers_form(status, data)
    else:
        form = _answers_form(status)
        answers = parse_answers(form, status.items, company_today()) if form.validate_on_submit() else None
        if answers is not None:
            with unit_of_work() as session:
                if _claimed(session, form, f"step-{status.step.name}"):
                    card_fields = getattr(form, "card", None)  # the access step's form only
                    # Before the answers are recorded: it compares them with those the form showed.
                    card = (
                        access_card.with_corrections(session, account, card_fields.form.card(), answers)
                        if card_fields is not None
                        else None
                    )
                    confirm.record_answers(session, account, answers)
                    note_field = getattr(form, "technician_note", None)  # the access step's form only
                    note = (note_field.data or "").strip() if note_field is not None else ""
                    if note:
                        confirm.record_step_event(session, account, "technician_note", confirmed=note)
                    if card is not None:
                        access_card.save(
                            session,
                            account,
                            card,
                            company_today(),
                            actor="customer",
                            how="confirmed in the access step",
                        )
            return _next(progress, status)
    return _render_step(
        "welcome/step_items.html",
        progress,
        status,
        form=form,
        items=status.items,
        account=account,
        **_photo_context(account, status),
    )


def _photo_context(
    account: Account, status: confirm.StepStatus, photo_form: PhotoForm | None = None
) -> dict[str, object]:
    """The access step's photos section (templates/welcome/_photos.html)."""
    if status.step.name != PHOTO_STEP:
        return {}
    return {"photos": photos.shown(get_db(), account.id), "photo_form": photo_form or _new_photo_form()}


PHOTO_STEP = "access"


def _new_photo_form() -> PhotoForm:
    # Prefixed: beside the step's own form, no two fields share an id or a name.
    form = PhotoForm(prefix="photo", formdata=None)
    form.form_id.data = once.new_form_id()
    return form


def readiness_step(
    account: Account, progress: confirm.Progress, status: confirm.StepStatus
) -> str | BaseResponse | tuple[str, int]:
    checklist = get_company().readiness_checklist or []
    form = readiness_form_class(checklist)()
    if form.validate_on_submit():
        answers = {label: getattr(form, f"r{i}").data for i, label in enumerate(checklist)}
        missing = [i for i, label in enumerate(checklist) if answers[label] not in ("done", "not_yet")]
        for i in missing:
            getattr(form, f"r{i}").errors = ["Choose Done or Not yet."]
        if not missing:
            with unit_of_work() as session:
                if _claimed(session, form, "step-readiness"):
                    ready = sum(1 for a in answers.values() if a == "done")
                    confirm.record_step_event(
                        session,
                        account,
                        "readiness",
                        confirmed=f"{ready} of {len(checklist)} ready",
                        details={"answers": answers},
                    )
            return _next(progress, status)
    return _render_step("welcome/step_readiness.html", progress, status, form=form, checklist=checklist)


def contact_step(
    account: Account, progress: confirm.Progress, status: confirm.StepStatus
) -> str | BaseResponse | tuple[str, int]:
    form = ContactForm(
        data={"phone": account.customer.phone, "channels": ["email"]} if request.method == "GET" else None
    )
    if form.validate_on_submit() and form.extra_checks():
        with unit_of_work() as session:
            if _claimed(session, form, "step-contact"):
                _record_contact(session, account, form)
                new_email = (form.new_email.data or "").strip().lower()
                if new_email and new_email != account.customer.email:
                    email_change.request_change(session, account, new_email)
                    flash(f"We have emailed {account.customer.email} to confirm the change.", "info")
        return _next(progress, status)
    form.label_consents(get_company())  # the disclosures name the number now in the field
    return _render_step("welcome/step_contact.html", progress, status, form=form)


def _record_contact(session: Session, account: Account, form: ContactForm) -> None:
    channels = list(form.channels.data or [])
    phone = (form.phone.data or "").strip()
    details = {
        "channels": channels,
        "phone": phone,
        "preferred_times": (form.preferred_times.data or "").strip(),
        "sms_consent": bool(form.sms_service.data),
        "sms_marketing": bool(form.sms_marketing.data),
    }
    confirm.record_step_event(
        session, account, "contact_preferences", confirmed=", ".join(channels), details=details
    )
    # Each text consent on its own entry, with the exact words agreed to and the number; an
    # answer changed before signing gives or withdraws it again.
    channel = consents.Channel("welcome/contact", request.remote_addr or "", request.user_agent.string)
    current = consents.state(session, account)
    for kind, ticked in (
        (consents.SMS_SERVICE, form.sms_service.data),
        (consents.SMS_MARKETING, form.sms_marketing.data),
    ):
        latest = current.get(kind)
        given = latest is not None and latest.event == consents.GIVEN
        if ticked and not (given and latest is not None and latest.confirmed_value == sms.e164(phone)):
            sms.give(session, account, kind, phone, get_company(), channel)
        elif not ticked and given:
            consents.withdraw(session, account, kind, channel=channel)


def review_step(
    account: Account, progress: confirm.Progress, status: confirm.StepStatus
) -> str | BaseResponse | tuple[str, int]:
    """The agreement in full (agreed values, each term, the electronic-records disclosure) and
    the signing act: every term ticked, the consent, the typed name, Sign."""
    shown = agreement.agreement_for(get_db(), account)
    form = sign_form_class(list(shown.terms.terms))()
    unfinished = progress.unfinished_before_review
    if form.validate_on_submit():
        if unfinished:
            form.form_errors.append("Please finish the steps marked below before signing.")
        else:
            evidence = agreement.Evidence(
                typed_name=(form.full_name.data or "").strip(),
                ip_address=request.remote_addr or "",
                user_agent=request.user_agent.string[:500],
                link_nonce_hash=account.link_nonce_hash or "",
                shown_sha256=form.document_sha256.data or "",
                accepted_terms=tuple(term["title"] for term in shown.terms.terms),
            )
            try:
                with unit_of_work() as session:
                    if _claimed(session, form, "sign"):
                        confirm.sign(session, account, evidence)
            except agreement.AgreementChanged:
                form.form_errors.append(
                    "Something in the agreement changed since this page opened. "
                    "Please read it again below, then sign."
                )
            else:
                return redirect(url_for("welcome.thanks"))
    form.document_sha256.data = shown.sha256
    return _render_step(
        "welcome/step_review.html", progress, status, form=form, agreement=shown, unfinished=unfinished
    )


STEP_HANDLERS = {
    "welcome": welcome_step,
    "schedule": items_step,
    "access": items_step,
    "readiness": readiness_step,
    "contact": contact_step,
    "promises": items_step,
    "billing": items_step,
    "review": review_step,
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
    plan = confirm.schedule(session, account)
    signature = agreement.signature_of(session, account.id)
    return {
        "signature": signature,
        "amendments": agreement.amendments(session, account, signature) if signature else [],
        "consent_state": consents.state(session, account),
        "consent_names": consents.NAMES,
        # One form per consent, prefixed: the page has no two fields with the same id.
        "withdraw_forms": {kind: once.OnceForm(prefix=kind) for kind in consents.KINDS},
        "account": account,
        "agreed": decisions.agreed_lines(session, account, company_today()),
        "requests": decisions.open_requests(session, account),
        "office_notes": follow_ups.told_customer(session, account),
        "schedule": plan,
        "days": plan.days,
        "next_visit": plan.next_visit(company_today()),
        "extras": confirm.latest_step_details(session, account),
        "photos": photos.shown(session, account.id),
        "photo_form": _new_photo_form(),
        "card_today": access_card.card_on(session, account, company_today()),
    }


@bp.get("/service")
# An invoice's pay link reaches the customer's service pages too (same account).
@customer_pay_required
def my_service(account: Account) -> str | BaseResponse:
    if account.signed_at is None:
        return redirect(url_for("welcome.resume"))
    form = change_form_class(record.item_states(get_db(), account))()
    return render_template(
        "welcome/service.html", form=form, card_form=_card_form(account), **_service_context(account)
    )


def _card_form(account: Account) -> CardUpdateForm:
    if request.method == "POST" and request.endpoint == "welcome.update_card":
        return CardUpdateForm(prefix="card-update")
    form = CardUpdateForm(
        formdata=None,
        prefix="card-update",
        # Today's card, from today: a change already saved for a later date stays as it is.
        data={
            "card": access_card.card_on(get_db(), account, company_today()).card,
            "effective": company_today(),
        },
    )
    form.form_id.data = once.new_form_id()  # also when the page answers the other form's POST
    return form


@bp.post("/service/access-card")
@customer_pay_required
def update_card(account: Account) -> str | BaseResponse | tuple[str, int]:
    """The customer keeps their access card current, from today or from a later date."""
    if account.signed_at is None:
        return redirect(url_for("welcome.resume"))
    card_form = _card_form(account)
    if card_form.validate_on_submit() and card_form.check_effective(company_today()):
        effective = card_form.effective.data
        assert effective is not None  # checked just above
        with unit_of_work() as session:
            if _claimed(session, card_form, "access-card"):
                access_card.save(
                    session,
                    account,
                    card_form.card.form.card(),
                    effective,
                    actor="customer",
                    how="updated from My service",
                )
        when = "from today" if effective == company_today() else f"from {effective.isoformat()}"
        flash(f"Thanks, your access card is updated {when}. The technician sees it on that day.", "success")
        return redirect(url_for("welcome.my_service") + "#access-card")
    form = change_form_class(record.item_states(get_db(), account))(formdata=None)
    form.form_id.data = once.new_form_id()
    return render_template(
        "welcome/service.html", form=form, card_form=card_form, **_service_context(account)
    ), 400


@bp.post("/service/change")
@customer_pay_required
def request_change(account: Account) -> str | BaseResponse | tuple[str, int]:
    if account.signed_at is None:
        return redirect(url_for("welcome.resume"))
    form = change_form_class(record.item_states(get_db(), account))()
    if form.validate_on_submit():
        with unit_of_work() as session:
            if _claimed(session, form, "change-request"):
                item = next((i for i in account.items if str(i.id) == form["item"].data), None)
                confirm.request_change(
                    session, account, item, (form["details"].data or "").strip(), form["effective"].data
                )
        flash("Thanks, we have your request. The office will decide and email you.", "success")
        return redirect(url_for("welcome.my_service"))
    return render_template(
        "welcome/service.html", form=form, card_form=_card_form(account), **_service_context(account)
    ), 400


@bp.post("/photos")
@body_limit(photos.UPLOAD_LIMIT)
@customer_pay_required
def add_photo(account: Account) -> str | BaseResponse | tuple[str, int]:
    """A photo for the technician, from the access step (before signing) or My service."""
    back = url_for("welcome.my_service") if account.signed_at else url_for("welcome.step", name=PHOTO_STEP)
    form = PhotoForm(prefix="photo")
    if form.validate_on_submit() and form.cleaned is not None:
        try:
            photos.add_once(get_storage(), account, form.cleaned, form.caption.data or "", form.submitted_id)
        except photos.PhotoProblem as problem:
            form.photo.errors = [str(problem)]
        else:
            flash("Photo added. Thank you: your technician will see it before the visit.", "success")
            return redirect(back + "#photos")
    return _photo_refused(account, form)


def _photo_refused(account: Account, form: PhotoForm) -> tuple[str, int]:
    """The page the photo came from, again, with the form's messages and the caption kept."""
    session = get_db()
    if account.signed_at is not None:
        change_form = change_form_class(record.item_states(session, account))(formdata=None)
        context = {**_service_context(account), "photo_form": form, "card_form": _card_form(account)}
        return render_template("welcome/service.html", form=change_form, **context), 400
    progress = confirm.progress(session, account)
    status = progress.get(PHOTO_STEP)
    if status is None:
        abort(404)
    data = prefill(status.items, record.latest_entries_by_item(session, [account.id]))
    data["card"] = access_card.latest(session, account)
    answers = _answers_form(status, data, posted=False)
    answers.form_id.data = once.new_form_id()
    return _render_step(
        "welcome/step_items.html",
        progress,
        status,
        form=answers,
        items=status.items,
        account=account,
        **_photo_context(account, status, form),
    )


@bp.get("/photos/<int:photo_id>/<size>")
@customer_pay_required
def photo_file(account: Account, photo_id: int, size: str) -> BaseResponse:
    """One of this account's photos (`full` or `thumb`); any other id is a 404."""
    photo = photos.of_account_or_404(get_db(), account.id, photo_id)
    return photos.serve(get_storage(), photo, size)


@bp.get("/service/agreement.pdf")
@customer_pay_required
def agreement_pdf(account: Account) -> Response:
    """The signed agreement as it was signed: the stored bytes."""
    signature = agreement.signature_of(get_db(), account.id)
    if signature is None:
        abort(404)
    return agreement.pdf_download(signature)


@bp.post("/service/consents/<kind>/withdraw")
@customer_pay_required
def withdraw_consent(account: Account, kind: str) -> BaseResponse:
    if kind not in consents.KINDS:
        abort(404)
    form = once.OnceForm(prefix=kind)
    if form.validate_on_submit():
        with unit_of_work() as session:
            if _claimed(session, form, "withdraw-consent"):
                channel = consents.Channel(
                    "welcome/service", request.remote_addr or "", request.user_agent.string
                )
                consents.withdraw_and_tell(session, account, kind, channel=channel, how="from My service")
        flash(f"Done: {consents.NAMES[kind].lower()} withdrawn. We have told the office.", "success")
    else:
        flash("That did not go through; please try again.", "error")
    return redirect(url_for("welcome.my_service") + "#agreement")


@bp.get("/service/visit.ics")
@customer_pay_required
def visit_calendar(account: Account) -> Response:
    company = get_company()
    plan = confirm.schedule(get_db(), account)
    body = calendar.visit_calendar(account, company.name, company.timezone, plan, company_today())
    if body is None:
        abort(404)
    response = Response(body, mimetype="text/calendar")
    response.headers["Content-Disposition"] = 'attachment; filename="pool-visit.ics"'
    return response


@bp.get("/email-change/<token>")
def confirm_email_change(token: str) -> tuple[str, int] | str:
    with unit_of_work() as session:
        account = email_change.confirm_change(session, token)
    if account is None:
        return render_template(LINK_PROBLEM, form=NewLinkForm()), 400
    customer_session.end()  # the session came from the old link, which no longer works
    return render_template("welcome/email_changed.html", email=account.customer.email)


@bp.post("/sign-out")
def sign_out() -> BaseResponse:
    customer_session.end()
    flash("You are signed out. To come back, open the link from your latest email.", "info")
    return redirect(url_for("welcome.session_ended"))
