"""Handoffs and accounts: create, edit before signing, preview, send the welcome link."""

from __future__ import annotations

from collections.abc import Mapping

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.wrappers import Response

from portal import consents, follow_ups, notes, once, photos, record, record_story, technicians
from portal.access import Action, account_or_404, allows, may, roles_for
from portal.auth import roles_required
from portal.db import get_db, unit_of_work
from portal.forms import PhotoForm, RemovePhotoForm, options
from portal.handoffs import DERIVED_KINDS, OnboardingSigned, create_handoff, staff_actor, update_handoff
from portal.models import Account, OutboxEmail, StaffUser
from portal.onboarding import send_new_link
from portal.salespeople import SELLING_ROLES, salespeople
from portal.secret_codes import BLANKED, has_code, screened
from portal.staff import bp
from portal.staff.forms import TechnicianForm, new_note_form
from portal.staff.handback_forms import handback_view
from portal.staff.handoff_forms import (
    SALE_NOTES,
    EditHandoffForm,
    HandoffForm,
    edit_promises,
    new_handoff_promises,
    validate,
    when_data,
)
from portal.staff.reveal import page_with_codes
from portal.storage import get_storage
from portal.web import body_limit


@bp.errorhandler(OnboardingSigned)
def onboarding_signed(error: OnboardingSigned) -> Response:
    # Raised inside a unit of work, which rolled back.
    flash(str(error), "error")
    account_id = (request.view_args or {}).get("account_id")
    return redirect(
        url_for("staff.account", account_id=account_id) if account_id else url_for("staff.dashboard")
    )


def _salesperson_choices(form: HandoffForm | EditHandoffForm, default: StaffUser | None) -> None:
    people = salespeople(get_db())
    form.salesperson_id.choices = options([(p.id, p.display_name) for p in people])
    if form.salesperson_id.data is None and default is not None:
        form.salesperson_id.data = default.id


def _chosen_salesperson(form: HandoffForm | EditHandoffForm) -> StaffUser | None:
    """Sales staff hand off their own accounts; office and admin may name anyone who sells."""
    if current_user.role == "sales":
        me: StaffUser = current_user._get_current_object()
        return me
    chosen = get_db().get(StaffUser, form.salesperson_id.data or 0)
    if chosen is None or not chosen.active or chosen.role not in SELLING_ROLES:
        form.salesperson_id.errors = ["Choose who made the sale."]
        return None
    return chosen


def _already_done(form_id: str) -> Response:
    flash("That was already saved; here is the result.", "info")
    return redirect(once.earlier_result(get_db(), form_id) or url_for("staff.dashboard"))


@bp.route("/handoffs/new", methods=["GET", "POST"])
@roles_required(*roles_for(Action.HAND_OFF))
def new_handoff() -> str | Response | tuple[str, int]:
    form = HandoffForm()
    _salesperson_choices(form, current_user)
    if request.method == "POST" and "add_row" in request.form:
        form.validate()  # keep what was typed; only add a blank row
        form.add_row("custom" if request.form["add_row"] == "custom" else "equipment")
        form.form_errors.clear()
        for field in form:
            field.errors = []
        return render_template("staff/handoff_new.html", form=form)
    if form.validate_on_submit():
        data = validate(form, new_handoff_promises(form))
        salesperson = _chosen_salesperson(form)
        if data is not None and salesperson is not None:
            with unit_of_work() as session:
                claim = once.claim(session, form.submitted_id, "new_handoff")
                if claim is None:
                    return _already_done(form.submitted_id)
                account = create_handoff(session, data, salesperson, actor=staff_actor(current_user))
                once.keep_result(session, claim, url_for("staff.account", account_id=account.id))
            flash("Handoff saved. Check the preview, then send the welcome link.", "success")
            return redirect(url_for("staff.preview", account_id=account.id))
    status = 400 if request.method == "POST" else 200
    return render_template("staff/handoff_new.html", form=form), status


@bp.get("/accounts/<int:account_id>")
@roles_required(*roles_for(Action.SEE))
def account(account_id: int) -> str:
    found = account_or_404(get_db(), account_id, current_user, Action.SEE)
    return account_page(found)


@bp.post("/accounts/<int:account_id>/show-codes")
@roles_required(*roles_for(Action.SEE))
def account_show_codes(account_id: int) -> str | tuple[str, int]:
    found = account_or_404(get_db(), account_id, current_user, Action.SEE)
    return page_with_codes(found, "account page", lambda shown: account_page(found, codes_shown=shown))


def account_page(found: Account, forms: Mapping[str, object] | None = None, codes_shown: bool = False) -> str:
    """The account page, its codes masked unless `codes_shown` (a recorded "Show codes"); a
    form posted from it that comes back with its mistakes is passed in `forms` (by name) to be
    shown as typed, with its errors. Answering a POST, every other form starts blank, with an
    id of its own."""
    session = get_db()
    forms = forms or {}
    blank = request.method == "POST"
    emails = session.scalars(
        select(OutboxEmail).where(OutboxEmail.account_id == found.id).order_by(OutboxEmail.id.desc())
    ).all()
    states = record.item_states(session, found)
    story = record_story.story(session, found, record.entries_for(session, found.id), codes_shown=codes_shown)
    # The button shows only where something was blanked.
    codes_hidden = not codes_shown and (
        any(has_code(s.item.kind, v) for s in states for v in (s.item.promised_value, s.current_value))
        or any(BLANKED in line.what + line.note for line in story)
        or any(has_code("", text) for text in (found.customer_goal, *(getattr(found, n) for n in SALE_NOTES)))
    )
    return render_template(
        "staff/account.html",
        account=found,
        handback=handback_view(session, found, current_user._get_current_object(), forms),
        states=states,
        codes_shown=codes_shown,
        codes_hidden=codes_hidden,
        story=story,
        emails=emails,
        send_form=once.OnceForm(formdata=None) if blank else once.OnceForm(),
        note_form=new_note_form(found, blank=blank) if allows(current_user, Action.NOTE) else None,
        consent_state=consents.state(session, found),
        consent_names=consents.NAMES,
        follow_ups=follow_ups.open_for(session, found),
        technician_form=_technician_form(found, forms.get("technician"), blank),
        **_photo_context(found, blank),
    )


def _technician_form(account: Account, posted: object, blank: bool) -> TechnicianForm | None:
    """The office's select of active technicians, on the one assigned now (or nobody yet)."""
    if not may(current_user, Action.ASSIGN_TECHNICIAN, account):
        return None
    if isinstance(posted, TechnicianForm):
        form = posted
    else:
        form = TechnicianForm(formdata=None) if blank else TechnicianForm()
        form.technician_id.data = str(account.technician_id or "")
    people = [(str(p.id), p.display_name) for p in technicians.active_technicians(get_db())]
    form.technician_id.choices = [("", technicians.NOBODY_YET), *people]
    return form


@bp.post("/accounts/<int:account_id>/technician")
@roles_required(*roles_for(Action.ASSIGN_TECHNICIAN))
def assign_technician(account_id: int) -> Response | tuple[str, int]:
    found = account_or_404(get_db(), account_id, current_user, Action.ASSIGN_TECHNICIAN)
    form = TechnicianForm()
    if not form.validate_on_submit():
        form.technician_id.errors = ["That form had expired; please try again."]
        return account_page(found, {"technician": form}), 400
    back = redirect(url_for("staff.account", account_id=found.id) + "#technician")
    try:
        with unit_of_work() as session:
            if once.claim(session, form.submitted_id, "assign-technician") is None:
                return back
            me: StaffUser = current_user._get_current_object()
            technicians.assign(session, found, technicians.chosen(form.technician_id.data or ""), me)
    except technicians.TechnicianError as error:
        form.technician_id.errors = [str(error)]
        return account_page(found, {"technician": form}), 400
    except StaleDataError:  # another save landed between our read and our write
        flash("Someone else saved this account meanwhile; check the technician and try again.", "error")
        return back
    named = found.technician.display_name if found.technician else None
    flash(f"Technician: {named}." if named else "No technician is assigned yet.", "success")
    return back


def _photo_context(account: Account, blank: bool) -> dict[str, object]:
    shown = photos.shown(get_db(), account.id)
    if not allows(current_user, Action.PHOTOS):
        return {"photos": shown, "photo_form": None, "remove_forms": {}}
    formdata = {"formdata": None} if blank else {}
    return {
        "photos": shown,
        "photo_form": PhotoForm(prefix="photo", **formdata),
        # One form per photo, prefixed: no two fields on the page share an id.
        "remove_forms": {p.id: RemovePhotoForm(prefix=f"remove{p.id}", **formdata) for p in shown},
    }


@bp.post("/accounts/<int:account_id>/notes")
@roles_required(*roles_for(Action.NOTE))
def add_note(account_id: int) -> Response:
    """A note in the service record, on the account or one of its promises (how sales weigh in
    on a difference the office decides)."""
    session = get_db()
    found = account_or_404(session, account_id, current_user, Action.NOTE)
    form = new_note_form(found)
    back = redirect(url_for("staff.account", account_id=found.id))
    if not form.validate_on_submit():
        flash(
            " ".join(form.note.errors or form.item.errors)
            or "That note was not understood; please try again.",
            "error",
        )
        return back
    with unit_of_work() as session:
        if once.claim(session, form.submitted_id, "note") is None:
            return back
        item = next((i for i in found.items if i.id == form.item.data), None)
        notes.add_note(session, found, current_user, (form.note.data or "").strip(), item)
    flash("Note added to the service record.", "success")
    return back


@bp.post("/accounts/<int:account_id>/photos")
@body_limit(photos.UPLOAD_LIMIT)
@roles_required(*roles_for(Action.PHOTOS))
def add_photo(account_id: int) -> Response:
    """A photo for the technician from staff (the salesperson's from the sale)."""
    found = account_or_404(get_db(), account_id, current_user, Action.PHOTOS)
    form = PhotoForm(prefix="photo")
    back = redirect(url_for("staff.account", account_id=found.id) + "#photos")
    if form.validate_on_submit() and form.cleaned is not None:
        try:
            photos.add_once(
                get_storage(),
                found,
                form.cleaned,
                form.caption.data or "",
                form.submitted_id,
                staff=current_user._get_current_object(),
            )
        except photos.PhotoProblem as problem:
            flash(str(problem), "error")
        else:
            flash("Photo added: the technician sees it on the brief and the day list.", "success")
        return back
    flash(" ".join(error for f in form for error in f.errors) or "That photo was not added.", "error")
    return back


@bp.post("/accounts/<int:account_id>/photos/<int:photo_id>/remove")
@roles_required(*roles_for(Action.PHOTOS))
def remove_photo(account_id: int, photo_id: int) -> Response:
    """Remove a wrong photo: a record entry says who and why; its files are deleted."""
    session = get_db()
    found = account_or_404(session, account_id, current_user, Action.PHOTOS)
    photo = photos.of_account_or_404(session, found.id, photo_id)
    form = RemovePhotoForm(prefix=f"remove{photo.id}")
    back = redirect(url_for("staff.account", account_id=found.id) + "#photos")
    if not form.validate_on_submit():
        flash(" ".join(error for f in form for error in f.errors) or "That was not understood.", "error")
        return back
    with unit_of_work() as session:
        if once.claim(session, form.submitted_id, "photo-remove") is None:
            return back
        photos.remove(session, found, photo, current_user._get_current_object(), form.reason.data or "")
    photos.discard(get_storage(), photo)  # after the commit: a failed one keeps the files
    flash("Photo removed.", "success")
    return back


@bp.get("/accounts/<int:account_id>/photos/<int:photo_id>/<size>")
@roles_required(*roles_for(Action.BRIEF))
def photo_file(account_id: int, photo_id: int, size: str) -> Response:
    """A photo (`full` or `thumb`) for staff who may read the account's brief."""
    session = get_db()
    found = account_or_404(session, account_id, current_user, Action.BRIEF)
    return photos.serve(get_storage(), photos.of_account_or_404(session, found.id, photo_id), size)


@bp.get("/accounts/<int:account_id>/preview")
@roles_required(*roles_for(Action.SEE))
def preview(account_id: int) -> str:
    found = account_or_404(get_db(), account_id, current_user, Action.SEE)
    return render_template("staff/preview.html", account=found, send_form=once.OnceForm())


@bp.post("/accounts/<int:account_id>/send")
@roles_required(*roles_for(Action.EDIT))
def send_link(account_id: int) -> Response:
    session = get_db()
    found = account_or_404(session, account_id, current_user, Action.EDIT)
    form = once.OnceForm()
    if not form.validate_on_submit():
        flash("That button had expired; please try again.", "error")
        return redirect(url_for("staff.account", account_id=found.id))
    with unit_of_work() as session:
        claim = once.claim(session, form.submitted_id, "send_link")
        if claim is None:
            return _already_done(form.submitted_id)
        resend = found.link_sent_at is not None
        signed = found.signed_at is not None
        send_new_link(session, found, staff_actor(current_user))
        once.keep_result(session, claim, url_for("staff.account", account_id=found.id))
    if signed:
        message = (
            "New link to their service page sent; the earlier link and pages opened with it no longer work."
        )
    else:
        message = "New link sent; the earlier link no longer works." if resend else "Welcome email queued."
    flash(message + f" It goes to {found.customer.email}.", "success")
    return redirect(url_for("staff.account", account_id=found.id))


@bp.route("/accounts/<int:account_id>/edit", methods=["GET", "POST"])
@roles_required(*roles_for(Action.EDIT))
def edit_handoff(account_id: int) -> str | Response | tuple[str, int]:
    session = get_db()
    found = account_or_404(session, account_id, current_user, Action.EDIT)
    if found.signed_at is not None:
        flash(
            "The customer has signed: the office changes an agreed value with its Change link "
            "under Promises (the customer is emailed the new value and the note).",
            "info",
        )
        return redirect(url_for("staff.account", account_id=found.id))
    form = EditHandoffForm() if request.method == "POST" else EditHandoffForm(data=_edit_data(found))
    _salesperson_choices(form, found.salesperson)
    if form.validate_on_submit():
        if str(found.version) != form.version.data:
            return _saved_meanwhile(form, found)
        promises, item_ids = edit_promises(form, {item.id: item for item in found.items})
        data = validate(form, promises, found)
        salesperson = _chosen_salesperson(form)
        if data is not None and salesperson is not None:
            try:
                with unit_of_work() as session:
                    claim = once.claim(session, form.submitted_id, "edit_handoff")
                    if claim is None:
                        return _already_done(form.submitted_id)
                    changes = update_handoff(
                        session, found, data, item_ids, salesperson, staff_actor(current_user)
                    )
                    once.keep_result(session, claim, url_for("staff.account", account_id=found.id))
            except StaleDataError:  # another save landed between our read and our write
                return _saved_meanwhile(form, found)
            flash("Saved: " + (", ".join(changes) if changes else "account details") + ".", "success")
            return redirect(url_for("staff.account", account_id=found.id))
    status = 400 if request.method == "POST" else 200
    return _edit_page(form, found), status


@bp.post("/accounts/<int:account_id>/edit/show-codes")
@roles_required(*roles_for(Action.EDIT))
def edit_show_codes(account_id: int) -> str | Response | tuple[str, int]:
    """The handoff form again with its codes in clear, to edit them (the record notes it)."""
    found = account_or_404(get_db(), account_id, current_user, Action.EDIT)
    if found.signed_at is not None:
        return redirect(url_for("staff.edit_handoff", account_id=found.id))

    def render(shown: bool) -> str:
        form = EditHandoffForm(formdata=None, data=_edit_data(found, codes_shown=shown))
        _salesperson_choices(form, found.salesperson)
        return _edit_page(form, found, shown)

    return page_with_codes(found, "handoff form", render)


def _edit_page(form: EditHandoffForm, account: Account, codes_shown: bool = False) -> str:
    return render_template(
        "staff/handoff_edit.html",
        form=form,
        account=account,
        codes_shown=codes_shown,
        codes_hidden=not codes_shown
        and (
            any(has_code(i.kind, i.promised_value) for i in account.items)
            or any(has_code("", getattr(account, name)) for name in SALE_NOTES)
        ),
    )


def _saved_meanwhile(form: EditHandoffForm, account: Account) -> tuple[str, int]:
    form.form_errors.append(
        "Someone else saved this account after you opened it. "
        "Reload the page to see their changes, then edit again."
    )
    return _edit_page(form, account), 409


def _edit_data(account: Account, codes_shown: bool = False) -> dict[str, object]:
    """The form as the account stands, its codes blanked unless `codes_shown`."""
    rows = [
        {
            "item_id": str(item.id),
            "kind": item.kind,
            "title": item.label,
            "value": screened(item.promised_value, item.kind, codes_shown),
            "when": when_data(item),
        }
        for item in account.items
        if item.kind not in DERIVED_KINDS
    ]
    rows += [{"kind": "custom", "title": "", "value": ""}] * 2
    return {
        "customer_name": account.customer.name,
        "customer_email": account.customer.email,
        "customer_phone": account.customer.phone,
        "service_address": account.service_address,
        "plan": account.plan,
        "visits_per_week": str(account.visits_per_week),
        "billing_cadence": account.billing_cadence,
        "price": f"{account.price_cents / 100:.2f}",
        "first_visit": account.first_visit.isoformat() if account.first_visit else "",
        "salesperson_id": account.salesperson_id,
        **{name: screened(getattr(account, name), "", codes_shown) for name in SALE_NOTES},
        "version": str(account.version),
        "rows": rows,
    }
