"""The staff workspace: dashboard, differences, resolutions, briefs, day list and reports."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timezone
from typing import TypedDict

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response as BaseResponse

from portal import (
    access_card,
    decisions,
    follow_through,
    follow_ups,
    handback,
    inbox,
    once,
    pipeline,
    record,
    reports,
)
from portal import brief as brief_service
from portal import differences as diffs
from portal.access import Action, account_or_404, allows, roles_for
from portal.auth import ALL_STAFF, is_safe_next, roles_required
from portal.company import company_today
from portal.csv_export import csv_text
from portal.db import get_db, unit_of_work
from portal.forms import options
from portal.handoffs import KIND_LABELS
from portal.models import Account, ChangeRequest, ChangeRequestStatus, Role, StaffUser
from portal.salespeople import salespeople
from portal.secret_codes import has_code, restored, screened, without_codes
from portal.staff import bp, tasks
from portal.staff.forms import (
    AccessFlagForm,
    AgreedChangeForm,
    ChangeDecisionForm,
    DifferenceFilterForm,
    FollowUpCloseForm,
    ResolveForm,
    ShowCodesForm,
    new_resolve_form,
)
from portal.staff.reveal import page_with_codes


def _me() -> StaffUser:
    me: StaffUser = current_user._get_current_object()
    return me


@bp.app_template_global("staff_may")
def staff_may(action: str) -> bool:
    """Pages offer a link or a form only where the policy lets the signed-in user act."""
    return bool(current_user.is_authenticated) and allows(_me(), Action(action))


@bp.get("/")
@roles_required(*ALL_STAFF)
def dashboard() -> str | BaseResponse:
    if not allows(_me(), Action.SEE):  # technicians: their day list is their start page
        return redirect(url_for("staff.day_list"))
    session = get_db()
    now = datetime.now(timezone.utc)
    return render_template(
        "staff/dashboard.html",
        pipeline=pipeline.pipeline(session, _me(), now),
        attention=pipeline.needing_attention(session, _me()),
        undelivered=pipeline.undelivered(session, _me()),
        recent=pipeline.recent(session, _me()),
        unacknowledged=handback.unacknowledged_soon(session, _me(), company_today())
        if allows(_me(), Action.ACKNOWLEDGE)
        else None,
        questions=handback.waiting_for(session, _me()),
    )


def _filter_form(people: list[StaffUser]) -> tuple[DifferenceFilterForm, diffs.DifferenceFilter]:
    form = DifferenceFilterForm(request.args)
    form.kind.choices = options([("", "All kinds"), *KIND_LABELS.items()])
    form.salesperson.choices = options([("", "Everyone"), *((str(p.id), p.display_name) for p in people)])
    form.validate()
    status = form.status.data if form.status.data in diffs.STATUSES else "open"
    kind = form.kind.data if form.kind.data in KIND_LABELS else None
    person = int(form.salesperson.data) if (form.salesperson.data or "").isdigit() else None
    flt = diffs.DifferenceFilter(
        status=status,
        kind=kind,
        salesperson_id=person,
        visit_from=form.visit_from.data if not form.visit_from.errors else None,
        visit_to=form.visit_to.data if not form.visit_to.errors else None,
        after=request.args.get("after"),
    )
    return form, flt


@bp.get("/differences")
@roles_required(*roles_for(Action.DIFFERENCES))
def differences() -> str:
    people = salespeople(get_db())
    form, flt = _filter_form(people)
    page = inbox.list_inbox(get_db(), _me(), flt, company_today())
    args = {k: v for k, v in request.args.items() if k != "after"}
    return render_template(
        "staff/differences.html",
        form=form,
        flt=flt,
        page=page,
        args=args,
        per_page=inbox.PER_PAGE,
        highlight=diffs.highlight,
        now=datetime.now(timezone.utc),
    )


CSV_HEADER = [
    "account_id",
    "customer",
    "service_address",
    "first_visit",
    "salesperson",
    "kind",
    "promise",
    "promised",
    "customer_value",
    "outcome",
    "customer_comment",
    "answered_at",
    "status",
    "assigned_to",
    "promised_by",
]


def _csv_rows(rows: Iterable[diffs.DifferenceRow], with_codes: bool = False) -> Iterable[list[object]]:
    """Codes blanked (secret_codes.without_codes) unless an admin asked for them."""
    for row in rows:
        account = row.account
        kind = row.item.kind

        def shown(text: str, kind: str = kind) -> str:
            return text if with_codes else without_codes(text, kind)

        yield [
            account.id,
            account.customer.name,
            account.service_address,
            account.first_visit.isoformat() if account.first_visit else "",
            account.salesperson.display_name if account.salesperson else "",
            row.item.kind,
            row.item.label,
            shown(row.promised_value),
            shown(row.customer_value),
            row.latest.details.get("customer_outcome", row.latest.outcome),
            shown(row.comment),
            row.latest.created_at.isoformat(),
            "resolved" if row.latest.outcome == "resolved" else "open",
            row.assignee.display_name if row.assignee else "",
            row.promised_by.display_name if row.promised_by else "",
        ]


@bp.route("/differences.csv", methods=["GET", "POST"])
@roles_required(*roles_for(Action.DIFFERENCES))
def differences_csv() -> Response:
    """The differences as CSV, codes blanked. An admin gets them in clear by posting codes=1
    (a button, not a link: each account whose codes it shows gets a record entry)."""
    _, flt = _filter_form(salespeople(get_db()))
    if request.method == "POST" and not ShowCodesForm().validate_on_submit():
        abort(400)
    with_codes = (
        request.method == "POST" and request.form.get("codes") == "1" and _me().role == Role.ADMIN.value
    )
    rows = list(diffs.iter_differences(get_db(), _me(), flt))
    if with_codes:
        shown = {
            row.account.id: row.account
            for row in rows
            if any(
                has_code(row.item.kind, text)
                for text in (row.promised_value, row.customer_value, row.comment)
            )
        }
        with unit_of_work() as session:
            for account in shown.values():
                access_card.record_reveal(session, account, _me(), "differences CSV")
    # Built whole rather than streamed: a streamed body outlives the request's session.
    response = Response(csv_text(CSV_HEADER, _csv_rows(rows, with_codes)), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="differences-{flt.status}.csv"'
    return response


def _back(raw: str | None) -> str:
    """Where to go after resolving: a page of the staff workspace, else the differences."""
    back = raw or ""
    return back if is_safe_next(back) and back.startswith("/staff/") else url_for("staff.differences")


@bp.route("/differences/<int:item_id>/resolve", methods=["GET", "POST"])
@roles_required(*roles_for(Action.RESOLVE))
def resolve(item_id: int) -> str | BaseResponse | tuple[str, int]:
    """One difference and the decision on it, on a page of its own (the list stays light)."""
    session = get_db()
    row = diffs.find_open(session, _me(), item_id)
    if row is None:
        flash("That difference is resolved already or is not yours to resolve.", "info")
        return redirect(_back(request.values.get("back")))
    people = salespeople(session)
    form = _resolve_form(row, people)
    if request.method == "GET":
        form.back.data = _back(request.args.get("back"))
    elif form.validate_on_submit():
        message = _decide(form, item_id, people)
        if message is not None:
            flash(message, "success")
            return redirect(_back(form.back.data))
    code = 400 if request.method == "POST" else 200
    return _resolve_page(row, form), code


@bp.post("/differences/<int:item_id>/resolve/show-codes")
@roles_required(*roles_for(Action.RESOLVE))
def resolve_show_codes(item_id: int) -> str | BaseResponse | tuple[str, int]:
    row = diffs.find_open(get_db(), _me(), item_id)
    if row is None:
        flash("That difference is resolved already or is not yours to resolve.", "info")
        return redirect(_back(request.args.get("back")))
    form = _resolve_form(row, salespeople(get_db()), blank=True)
    form.back.data = _back(request.args.get("back"))
    return page_with_codes(row.account, "difference", lambda shown: _resolve_page(row, form, shown))


def _resolve_form(row: diffs.DifferenceRow, people: list[StaffUser], blank: bool = False) -> ResolveForm:
    return new_resolve_form(
        people,
        disputed=row.latest.outcome == "disputed" or not row.latest.confirmed_value,
        preferred_days=row.preferred_days,
        needed=row.account.visits_per_week,
        blank=blank,
    )


def _resolve_page(row: diffs.DifferenceRow, form: ResolveForm, codes_shown: bool = False) -> str:
    kind = row.item.kind
    return render_template(
        "staff/resolve.html",
        row=row,
        form=form,
        highlight=diffs.highlight,
        back=_back(form.back.data),
        codes_shown=codes_shown,
        codes_hidden=not codes_shown
        and any(has_code(kind, text) for text in (row.promised_value, row.customer_value, row.comment)),
    )


def _decide(form: ResolveForm, item_id: int, people: list[StaffUser]) -> str | None:
    """Record the decision in one unit of work: what to tell the user, or None with the form's
    errors set (nothing written)."""
    note = (form.note.data or "").strip()
    try:
        with unit_of_work() as session:
            if once.claim(session, form.submitted_id, "resolve") is None:
                return "That was saved already."
            if form.action.data == "accept":
                if form.days.choices:
                    entry = diffs.accept_customer_version(session, item_id, _me(), note, form.days.data or [])
                    return f"Accepted the customer's choice: {entry.confirmed_value} is agreed."
                diffs.accept_customer_version(session, item_id, _me(), note)
                return "Accepted the customer's version."
            if form.action.data == "keep":
                diffs.keep_promise(session, item_id, _me(), note)
                return "Kept the promise; the note is in the service record."
            # One of the colleagues offered, never a lookup by whatever number was posted.
            assignee = next((p for p in people if p.id == form.assignee.data), None)
            if assignee is None:
                form.assignee.errors = ["Choose who should handle it."]
                raise diffs.ResolutionError()
            diffs.assign(session, item_id, _me(), assignee, note)
            return f"Assigned to {assignee.display_name}."
    except diffs.ResolutionError as error:
        if str(error) and form.action.data == "keep":
            form.note.errors = [*form.note.errors, str(error)]
        elif str(error) and form.action.data == "accept" and form.days.choices:
            form.days.errors = [*form.days.errors, str(error)]
        elif str(error):
            form.form_errors = [*form.form_errors, str(error)]
        return None


@bp.route("/changes/<int:change_id>", methods=["GET", "POST"])
@roles_required(*roles_for(Action.RESOLVE))
def decide_change(change_id: int) -> str | BaseResponse | tuple[str, int]:
    """One change request and the office's answer to it, on a page of its own."""
    change = _open_change(change_id)
    if not isinstance(change, ChangeRequest):
        return change
    form = ChangeDecisionForm()
    if request.method == "GET":
        form.back.data = _back(request.args.get("back"))
        form.value.data = screened(change.requested_value, _kind_of(change))
    elif form.validate_on_submit():
        message = _decide_change(form, change)
        if message is not None:
            flash(message, "success")
            return redirect(_back(form.back.data))
    code = 400 if request.method == "POST" else 200
    return _change_page(change, form), code


@bp.post("/changes/<int:change_id>/show-codes")
@roles_required(*roles_for(Action.RESOLVE))
def change_show_codes(change_id: int) -> str | BaseResponse | tuple[str, int]:
    change = _open_change(change_id)
    if not isinstance(change, ChangeRequest):
        return change
    form = ChangeDecisionForm(formdata=None)
    form.back.data = _back(request.args.get("back"))
    form.value.data = change.requested_value

    def render(shown: bool) -> str:
        if not shown:
            form.value.data = screened(change.requested_value, _kind_of(change))
        return _change_page(change, form, shown)

    return page_with_codes(change.account, "change request", render)


def _open_change(change_id: int) -> ChangeRequest | BaseResponse:
    """The open change request the user may decide (else a 404, or back with a word)."""
    change = decisions.find_request(get_db(), _me(), change_id)
    if change is None:
        abort(404)
    if change.status != ChangeRequestStatus.OPEN.value:
        flash("That change request was decided already.", "info")
        return redirect(_back(request.values.get("back")))
    return change


def _kind_of(change: ChangeRequest) -> str:
    return change.item.kind if change.item is not None else ""


def _change_page(change: ChangeRequest, form: ChangeDecisionForm, codes_shown: bool = False) -> str:
    states = {state.item.id: state for state in record.item_states(get_db(), change.account)}
    current = states.get(change.item_id) if change.item_id is not None else None
    kind = _kind_of(change)
    return render_template(
        "staff/change.html",
        change=change,
        current=current,
        form=form,
        back=_back(form.back.data),
        codes_shown=codes_shown,
        codes_hidden=not codes_shown
        and any(
            has_code(kind, text)
            for text in (change.requested_value, current.current_value if current else "")
        ),
    )


def _decide_change(form: ChangeDecisionForm, change: ChangeRequest) -> str | None:
    """Accept or decline in one unit of work: what to tell the user, or None with the form's
    errors set (nothing written). A code the form showed hidden is taken back as it was."""
    note = (form.note.data or "").strip()
    change_id = change.id
    value = restored(form.value.data, change.requested_value, _kind_of(change)).strip()
    try:
        with unit_of_work() as session:
            if once.claim(session, form.submitted_id, "decide-change") is None:
                return "That was saved already."
            if form.action.data == "accept":
                decisions.accept_request(session, change_id, _me(), value or None, note)
                return "Accepted; the customer will be emailed what is agreed now."
            decisions.decline_request(session, change_id, _me(), note)
            return "Declined; the customer will be emailed your note."
    except decisions.DecisionError as error:
        target = form.note if form.action.data == "decline" and "why" in str(error) else form.value
        target.errors = [*target.errors, str(error)]
        return None


@bp.route("/follow-ups/<int:follow_up_id>", methods=["GET", "POST"])
@roles_required(*roles_for(Action.RESOLVE))
def close_follow_up(follow_up_id: int) -> str | BaseResponse | tuple[str, int]:
    """One follow-up and what the office did about it, on a page of its own."""
    follow_up = follow_ups.find(get_db(), _me(), follow_up_id)
    if follow_up is None:
        abort(404)
    if follow_up.status != follow_ups.OPEN:
        flash("That follow-up was closed already.", "info")
        return redirect(_back(request.values.get("back")))
    form = FollowUpCloseForm()
    if request.method == "GET":
        form.back.data = _back(request.args.get("back"))
    elif form.validate_on_submit():
        message = _close_follow_up(form, follow_up_id)
        if message is not None:
            flash(message, "success")
            return redirect(_back(form.back.data))
    code = 400 if request.method == "POST" else 200
    return render_template(
        "staff/follow_up.html",
        follow_up=follow_up,
        kind_words=follow_ups.kind_words(follow_up.kind),
        form=form,
        back=_back(form.back.data),
    ), code


def _close_follow_up(form: FollowUpCloseForm, follow_up_id: int) -> str | None:
    """Close in one unit of work: what to tell the user, or None with the form's errors set."""
    tell = bool(form.tell_customer.data)
    try:
        with unit_of_work() as session:
            if once.claim(session, form.submitted_id, "close-follow-up") is None:
                return "That was saved already."
            follow_ups.close(session, follow_up_id, _me(), form.note.data or "", tell_customer=tell)
    except follow_ups.FollowUpError as error:
        form.note.errors = [*form.note.errors, str(error)]
        return None
    return "Closed; the customer will be emailed your note." if tell else "Closed."


@bp.route("/accounts/<int:account_id>/agreed/<int:item_id>", methods=["GET", "POST"])
@roles_required(*roles_for(Action.RESOLVE))
def change_agreed(account_id: int, item_id: int) -> str | BaseResponse | tuple[str, int]:
    """After signing, the office changes an agreed value itself; the customer is told."""
    found = _agreed_state(account_id, item_id)
    if not isinstance(found, tuple):
        return found
    account, state = found
    form = AgreedChangeForm()
    if request.method == "GET":
        form.value.data = screened(state.current_value, state.item.kind)
    elif form.validate_on_submit():
        # A code the form showed hidden is taken back as it was.
        value = restored(form.value.data, state.current_value, state.item.kind)
        try:
            with unit_of_work() as db:
                if once.claim(db, form.submitted_id, "change-agreed") is not None:
                    decisions.change_agreed(
                        db, account, item_id, _me(), value, form.note.data or "", form.effective.data
                    )
            flash("Changed; the customer will be emailed what is agreed now.", "success")
            return redirect(url_for("staff.account", account_id=account.id))
        except decisions.DecisionError as error:
            form.value.errors = [*form.value.errors, str(error)]
    code = 400 if request.method == "POST" else 200
    return _agreed_page(account, state, form), code


@bp.post("/accounts/<int:account_id>/agreed/<int:item_id>/show-codes")
@roles_required(*roles_for(Action.RESOLVE))
def agreed_show_codes(account_id: int, item_id: int) -> str | BaseResponse | tuple[str, int]:
    found = _agreed_state(account_id, item_id)
    if not isinstance(found, tuple):
        return found
    account, state = found
    form = AgreedChangeForm(formdata=None)

    def render(shown: bool) -> str:
        form.value.data = screened(state.current_value, state.item.kind, shown)
        return _agreed_page(account, state, form, shown)

    return page_with_codes(account, "agreed value", render)


def _agreed_state(account_id: int, item_id: int) -> tuple[Account, record.ItemState] | BaseResponse:
    """The signed account and its promise as agreed now (else a 404, or back to the account)."""
    session = get_db()
    account = account_or_404(session, account_id, _me(), Action.RESOLVE)
    state = next((s for s in record.item_states(session, account) if s.item.id == item_id), None)
    if state is None:
        abort(404)
    if account.signed_at is None:
        flash("Before signing, edit the handoff instead.", "info")
        return redirect(url_for("staff.account", account_id=account.id))
    return account, state


def _agreed_page(
    account: Account, state: record.ItemState, form: AgreedChangeForm, codes_shown: bool = False
) -> str:
    return render_template(
        "staff/agreed_change.html",
        account=account,
        state=state,
        form=form,
        codes_shown=codes_shown,
        codes_hidden=not codes_shown and has_code(state.item.kind, state.current_value),
    )


@bp.get("/accounts/<int:account_id>/brief")
@roles_required(*roles_for(Action.BRIEF))
def brief(account_id: int) -> str:
    account = account_or_404(get_db(), account_id, _me(), Action.BRIEF)
    return tasks.brief_page(account)


@bp.post("/accounts/<int:account_id>/brief/show-codes")
@roles_required(*roles_for(Action.BRIEF))
def brief_show_codes(account_id: int) -> str | tuple[str, int]:
    """The brief with the access codes in clear: the technician at the gate needs them, and
    the record notes who asked."""
    account = account_or_404(get_db(), account_id, _me(), Action.BRIEF)
    return page_with_codes(
        account, "first-visit brief", lambda shown: tasks.brief_page(account, codes_shown=shown)
    )


@bp.post("/accounts/<int:account_id>/access-flag")
@roles_required(*roles_for(Action.BRIEF))
def access_flag(account_id: int) -> str | BaseResponse | tuple[str, int]:
    """A technician's report from the gate: the office's inbox, the record, and an email asking
    the customer to update their access card."""
    account = account_or_404(get_db(), account_id, _me(), Action.BRIEF)
    form = AccessFlagForm()
    if not form.validate_on_submit():
        return tasks.brief_page(account, flag_form=form), 400
    with unit_of_work() as session:
        if once.claim(session, form.submitted_id, "access-flag") is not None:
            access_card.flag(session, account, _me(), form.flag.data or "")
    flash(
        f"Reported: {access_card.FLAGS[form.flag.data or '']}. The office and the customer are told.",
        "success",
    )
    return redirect(url_for("staff.brief", account_id=account.id) + "#access")


@bp.get("/day")
@roles_required(*roles_for(Action.BRIEF))
def day_list() -> str:
    raw = request.args.get("date", "")
    day = None
    if raw:
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            flash("That date was not understood; showing the next day with visits.", "error")
    page = brief_service.day_page(get_db(), _me(), day, company_today())
    ids = [visit.account.id for visit in page.visits]
    routine = follow_through.routine_work_on(get_db(), _me(), page.day, page.today, ids)
    due = follow_through.technician_due(get_db(), ids + [a.id for a in routine], page.day, page.today)
    return render_template("staff/day.html", page=page, due_tasks=due, routine=routine)


class ReportData(TypedDict):
    by_kind: list[reports.Rate]
    by_person: list[reports.Rate]
    median_days: float | None
    signed_count: int
    funnel: list[tuple[str, int]]
    kept: follow_through.KeptReport


def _report_data() -> ReportData:
    session, me = get_db(), _me()
    median, signed = reports.median_days_to_sign(session, me)
    return {
        "by_kind": reports.rates_by_kind(session, me),
        "by_person": reports.rates_by_salesperson(session, me),
        "median_days": median,
        "signed_count": signed,
        "funnel": reports.funnel(session, me),
        "kept": follow_through.kept_on_time(session, me, company_today()),
    }


class HandbackReport(TypedDict):
    feedback_by_person: list[reports.FeedbackCounts]
    feedback_by_technician: list[reports.FeedbackCounts]
    acknowledge_overall: reports.Median | None
    acknowledge_by_person: list[reports.Median]
    churned: list[reports.Churned]
    churn_by_person: list[tuple[str, int]]
    churn_days: int


def _handback_report() -> HandbackReport:
    """Issue 18's sections: first-visit feedback, time to acknowledge, early churn."""
    session, me = get_db(), _me()
    overall, by_person = reports.days_to_acknowledge(session, me)
    churned, churn_by_person = reports.early_churn(session, me)
    return {
        "feedback_by_person": reports.first_visit_feedback(session, me, "salesperson"),
        "feedback_by_technician": reports.first_visit_feedback(session, me, "technician"),
        "acknowledge_overall": overall,
        "acknowledge_by_person": by_person,
        "churned": churned,
        "churn_by_person": churn_by_person,
        "churn_days": reports.EARLY_CHURN_DAYS,
    }


def _handback_csv_rows(data: HandbackReport) -> list[list[object]]:
    """In the CSV's columns: feedback answered / "not quite" (it differed) / that share, and
    the emails not answered yet; acknowledgment like time_to_sign (count, median days); early
    churn per salesperson (count) and per account (days from the sale; the reason)."""
    rows: list[list[object]] = []
    for section, counts in (
        ("feedback_by_person", data["feedback_by_person"]),
        ("feedback_by_technician", data["feedback_by_technician"]),
    ):
        for c in counts:
            share = round(100 * c.not_quite / c.answered, 1) if c.answered else ""
            rows.append([section, c.label, c.answered, c.not_quite, share])
            rows.append([f"{section}_no_answer", c.label, c.no_answer, "", ""])
    for median in ([data["acknowledge_overall"]] if data["acknowledge_overall"] else []) + data[
        "acknowledge_by_person"
    ]:
        rows.append(["time_to_acknowledge", median.label, median.count, "", median.days])
    for person, count in data["churn_by_person"]:
        rows.append(["early_churn", person, count, "", ""])
    for row in data["churned"]:
        rows.append(["early_churn_account", f"{row.customer} ({row.salesperson})", row.days, "", row.reason])
    return rows


@bp.get("/reports")
@roles_required(*roles_for(Action.REPORTS))
def report_page() -> str:
    data = _report_data()
    bars = {
        "by_kind": [(r.label, r.percent, f"{r.percent} %") for r in data["by_kind"]],
        "by_person": [(r.label, r.percent, f"{r.percent} %") for r in data["by_person"]],
        "funnel": [(stage, n, str(n)) for stage, n in data["funnel"]],
        **follow_through.kept_bars(data["kept"]),
    }
    handback_data = _handback_report()
    return render_template(
        "staff/reports.html",
        bars=bars,
        handback=handback_data,
        handback_bars=_handback_bars(handback_data),
        **data,
    )


def _handback_bars(data: HandbackReport) -> dict[str, list[tuple[str, float, str]]]:
    """(label, value, words beside the bar) for the handback charts: the numbers in text too."""

    def feedback(counts: list[reports.FeedbackCounts]) -> list[tuple[str, float, str]]:
        return [(c.label, c.yes_percent, f"{c.yes_percent} % yes") for c in counts]

    return {
        "feedback_by_person": feedback(data["feedback_by_person"]),
        "feedback_by_technician": feedback(data["feedback_by_technician"]),
        "acknowledge": [
            (m.label, m.days, f"{m.days} days ({m.count})") for m in data["acknowledge_by_person"]
        ],
        "churn": [(person, n, str(n)) for person, n in data["churn_by_person"]],
    }


@bp.get("/reports.csv")
@roles_required(*roles_for(Action.REPORTS))
def report_csv() -> Response:
    data = _report_data()
    rows: list[list[object]] = []
    for section, rates in (("by_kind", data["by_kind"]), ("by_person", data["by_person"])):
        for rate in rates:
            rows.append([section, rate.label, rate.answered, rate.differed, rate.percent])
    for stage, count in data["funnel"]:
        rows.append(["funnel", stage, count, "", ""])
    rows.append(["time_to_sign", "median_days", data["signed_count"], "", data["median_days"] or ""])
    rows += _handback_csv_rows(_handback_report())
    rows += follow_through.kept_csv_rows(data["kept"])
    header = ["section", "label", "answered", "differed", "difference_rate_percent"]
    response = Response(csv_text(header, rows), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="reports.csv"'
    return response
