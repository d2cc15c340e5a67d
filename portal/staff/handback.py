"""The account page's handback actions: the office acknowledges a handoff or asks its
salesperson a question, the salesperson answers, the office cancels an account. Each posts one
form; a refused one comes back on the account page with its message and the text as typed."""

from __future__ import annotations

from flask import abort, flash, redirect, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from portal import access, handback, once
from portal.access import Action, account_or_404, roles_for
from portal.auth import roles_required
from portal.db import get_db, unit_of_work
from portal.models import Account, StaffUser
from portal.staff import bp
from portal.staff.accounts import account_page
from portal.staff.handback_forms import AcknowledgeForm, AnswerForm, CancelForm, QuestionForm


def _me() -> StaffUser:
    me: StaffUser = current_user._get_current_object()
    return me


def _back(account: Account) -> Response:
    return redirect(url_for("staff.account", account_id=account.id) + "#handback")


def _refused(account: Account, name: str, form: object) -> tuple[str, int]:
    return account_page(account, {name: form}), 400


@bp.post("/accounts/<int:account_id>/acknowledge")
@roles_required(*roles_for(Action.ACKNOWLEDGE))
def acknowledge_handoff(account_id: int) -> Response | tuple[str, int]:
    found = account_or_404(get_db(), account_id, _me(), Action.ACKNOWLEDGE)
    form = AcknowledgeForm()
    if not form.validate_on_submit():
        form.ack_note.errors = ["That form had expired; please try again."]
        return _refused(found, "acknowledge", form)
    try:
        with unit_of_work() as session:
            if once.claim(session, form.submitted_id, "acknowledge") is not None:
                handback.acknowledge(session, found, _me(), form.ack_note.data or "")
    except handback.HandbackError as error:
        if found.acknowledged_at is not None or found.cancelled_at is not None:
            flash(str(error), "info")  # the page no longer offers the form to show it beside
            return _back(found)
        form.ack_note.errors = [str(error)]
        return _refused(found, "acknowledge", form)
    flash("Handoff acknowledged: service takes it from here.", "success")
    return _back(found)


@bp.post("/accounts/<int:account_id>/questions")
@roles_required(*roles_for(Action.ACKNOWLEDGE))
def ask_salesperson(account_id: int) -> Response | tuple[str, int]:
    found = account_or_404(get_db(), account_id, _me(), Action.ACKNOWLEDGE)
    form = QuestionForm()
    if not form.validate_on_submit():
        form.question.errors = ["That form had expired; please try again."]
        return _refused(found, "question", form)
    try:
        with unit_of_work() as session:
            if once.claim(session, form.submitted_id, "handoff-question") is not None:
                handback.ask(session, found, _me(), form.question.data or "")
    except handback.HandbackError as error:
        form.question.errors = [str(error)]
        return _refused(found, "question", form)
    name = found.salesperson.display_name if found.salesperson else "the salesperson"
    flash(f"Question sent to {name}; it waits on their dashboard.", "success")
    return _back(found)


@bp.post("/accounts/<int:account_id>/questions/<int:question_id>/answer")
@roles_required(*roles_for(Action.ANSWER))
def answer_question(account_id: int, question_id: int) -> Response | tuple[str, int]:
    session = get_db()
    found = account_or_404(session, account_id, _me(), Action.SEE)
    if not access.may_answer(_me(), found):
        abort(403)
    asked = handback.find_question(session, found, question_id)
    if asked is None:
        abort(404)
    form = AnswerForm()
    name = f"answer-{asked.id}"
    if not form.validate_on_submit():
        form.answer.errors = ["That form had expired; please try again."]
        return _refused(found, name, form)
    try:
        with unit_of_work() as session:
            if once.claim(session, form.submitted_id, "handoff-answer") is not None:
                handback.answer(session, asked, _me(), form.answer.data or "")
    except handback.HandbackError as error:
        if asked.answered_at is not None:
            flash(str(error), "info")
            return _back(found)
        form.answer.errors = [str(error)]
        return _refused(found, name, form)
    flash("Answer saved; the office sees it on this page.", "success")
    return _back(found)


@bp.post("/accounts/<int:account_id>/cancel")
@roles_required(*roles_for(Action.CANCEL))
def cancel_account(account_id: int) -> Response | tuple[str, int]:
    found = account_or_404(get_db(), account_id, _me(), Action.CANCEL)
    form = CancelForm()
    if not form.validate_on_submit():
        form.reason.errors = ["That form had expired; please try again."]
        return _refused(found, "cancel", form)
    try:
        with unit_of_work() as session:
            if once.claim(session, form.submitted_id, "cancel-account") is not None:
                handback.cancel(session, found, _me(), form.reason.data or "")
    except handback.HandbackError as error:
        if found.cancelled_at is not None:
            flash(str(error), "info")
            return _back(found)
        form.reason.errors = [str(error)]
        return _refused(found, "cancel", form)
    flash("Account cancelled: it has left the day list and the inbox.", "success")
    return _back(found)
