"""Closing a promised piece of work from the brief: done with a note, or couldn't do with a
reason. The rules live in portal/follow_through.py; this parses the form and redirects."""

from __future__ import annotations

from datetime import date

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from portal import access_card, follow_through, once
from portal import brief as brief_service
from portal.access import Action, account_or_404, roles_for
from portal.auth import roles_required
from portal.company import company_today
from portal.db import get_db, unit_of_work
from portal.models import Account, StaffUser
from portal.staff import bp
from portal.staff.forms import AccessFlagForm, TaskForm, task_form


def _me() -> StaffUser:
    me: StaffUser = current_user._get_current_object()
    return me


def visit_day(account: Account, today: date) -> date:
    """The visit the brief is for: the first visit, or today once that has passed."""
    return max(account.first_visit, today) if account.first_visit else today


def brief_page(
    account: Account,
    failed: TaskForm | None = None,
    failed_id: int | None = None,
    *,
    codes_shown: bool = False,
    flag_form: AccessFlagForm | None = None,
) -> str:
    """The one renderer of the brief: the work due on its visit, each with its form (the one
    that failed with what was typed and its errors), the access card with its codes masked
    unless `codes_shown` (a "Show code" POST, recorded), and the gate-problem buttons."""
    session, today = get_db(), company_today()
    due = follow_through.due_for_visit(session, account, visit_day(account, today), today)
    forms = {task.id: task_form(task.id, formdata=False) for task in due}
    if failed is not None and failed_id in forms:
        forms[failed_id] = failed
    if flag_form is None:
        flag_form = AccessFlagForm(formdata=None)
        flag_form.form_id.data = once.new_form_id()  # also when the page answers a POST
    return render_template(
        "staff/brief.html",
        brief=brief_service.brief_for(session, account, today),
        due_tasks=due,
        task_forms=forms,
        codes_shown=codes_shown,
        flag_form=flag_form,
        flags=access_card.FLAGS,
    )


@bp.post("/accounts/<int:account_id>/tasks/<int:task_id>")
@roles_required(*roles_for(Action.WORK))
def close_task(account_id: int, task_id: int) -> Response | tuple[str, int]:
    session = get_db()
    account = account_or_404(session, account_id, _me(), Action.WORK)
    task = follow_through.find_task(session, task_id)
    if task is None or task.account_id != account.id:
        abort(404)
    form = task_form(task_id)
    if form.validate_on_submit():
        label = task.item.label
        try:
            with unit_of_work() as db:
                if once.claim(db, form.submitted_id, "close-task") is not None:
                    stored = follow_through.find_task(db, task_id)
                    assert stored is not None
                    if form.outcome.data == "done":
                        follow_through.mark_done(db, stored, _me(), form.note.data or "", company_today())
                    else:
                        follow_through.mark_missed(db, stored, _me(), form.note.data or "", company_today())
        except follow_through.TaskError as error:
            form.note.errors = [*form.note.errors, str(error)]
        else:
            if form.outcome.data == "done":
                flash(f"Marked done: {label}.", "success")
            else:
                flash(
                    f"Noted that {label.lower()} couldn't be done; the office will see it if it runs late.",
                    "info",
                )
            return redirect(url_for("staff.brief", account_id=account.id) + "#work")
    return brief_page(account, form, task_id), 400
