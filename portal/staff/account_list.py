"""The accounts list: find any account the signed-in user may see."""

from __future__ import annotations

from flask import render_template, request
from flask_login import current_user

from portal import access, account_list
from portal.access import Action, roles_for
from portal.auth import roles_required
from portal.db import get_db
from portal.forms import options
from portal.models import StaffUser
from portal.salespeople import salespeople
from portal.staff import bp
from portal.staff.forms import AccountFilterForm

STATUS_LABELS = {status: status.replace("_", " ").capitalize() for status in account_list.STATUSES}


@bp.get("/accounts")
@roles_required(*roles_for(Action.SEE))
def accounts() -> str:
    session = get_db()
    me: StaffUser = current_user._get_current_object()
    # Someone who sees only their own accounts has no salesperson to choose.
    people = salespeople(session) if access.own_accounts_only(me) is None else []
    form = AccountFilterForm(request.args)
    form.status.choices = options([("", "Any status"), *STATUS_LABELS.items()])
    form.salesperson.choices = options([("", "Everyone"), *((str(p.id), p.display_name) for p in people)])
    form.sort.choices = options([(name, sort.label) for name, sort in account_list.SORTS.items()])
    form.validate()
    person = form.salesperson.data or ""
    flt = account_list.AccountFilter(
        query=(form.q.data or "").strip() if not form.q.errors else "",
        status=form.status.data if form.status.data in account_list.STATUSES else None,
        salesperson_id=int(person) if person.isdigit() and people else None,
        visit_from=form.visit_from.data if not form.visit_from.errors else None,
        visit_to=form.visit_to.data if not form.visit_to.errors else None,
        sort=form.sort.data if form.sort.data in account_list.SORTS else "name",
        after=request.args.get("after"),
    )
    page = account_list.list_accounts(session, me, flt)
    args = {k: v for k, v in request.args.items() if k != "after"}
    return render_template(
        "staff/accounts.html",
        form=form,
        flt=flt,
        page=page,
        args=args,
        show_salesperson=bool(people),
        status_labels=STATUS_LABELS,
    )
