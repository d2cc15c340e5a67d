"""The one access policy for staff: which accounts a user may see, and what they may do on one.

Every staff view, list, count, export, brief and day list asks here, so a rule changes in one
place. Two questions, answered separately:
- scope: which accounts at all (sales their own, everyone else every live account);
- actions: what a role may do on an account in its scope (technicians read briefs and mark
  promised work done;
  deciding a difference is an office/admin action, sales may add a note).
Views carry `roles_required(*roles_for(action))` (so a role without the action gets 403 before
anything is read) and load the account with `account_or_404` (someone else's account is a 404,
no hint that it exists).
"""

from __future__ import annotations

import enum
from typing import Any, TypeVarTuple

from flask import abort
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from portal.models import Account, Role, StaffUser


class Action(str, enum.Enum):
    SEE = "see"  # the account page, its preview and service record
    HAND_OFF = "hand_off"  # enter a new handoff
    EDIT = "edit"  # edit the handoff before signing, send or re-send its link
    NOTE = "note"  # add a note to the service record
    RESOLVE = "resolve"  # decide a difference: accept, keep the promise, assign
    BRIEF = "brief"  # the first-visit brief and the day list
    WORK = "work"  # mark a promised piece of work done, or say why it couldn't be
    DIFFERENCES = "differences"  # the differences list and its CSV
    INVOICE = "invoice"  # create an invoice
    ADJUST_INVOICE = "adjust_invoice"  # void an unpaid invoice, refund a paid one
    REPORTS = "reports"  # the reports across salespeople, and their CSV
    SETTINGS = "settings"  # company settings
    MANAGE_STAFF = "manage_staff"  # invite staff, change roles, deactivate, read the staff audit
    ACKNOWLEDGE = "acknowledge"  # acknowledge a handoff, or send a question back to sales
    ANSWER = "answer"  # answer the office's question on a handoff (its salesperson only: may_answer)
    CANCEL = "cancel"  # mark an account cancelled, with a reason
    PHOTOS = "photos"  # add a photo for the technician, remove a wrong one (seeing them: BRIEF)
    ASSIGN_TECHNICIAN = "assign_technician"  # set or clear the account's technician (office/admin)


_ADMIN_ONLY = frozenset({Action.SETTINGS, Action.MANAGE_STAFF})
_SELLING = frozenset(
    {
        Action.SEE,
        Action.HAND_OFF,
        Action.EDIT,
        Action.NOTE,
        Action.BRIEF,
        Action.DIFFERENCES,
        Action.ANSWER,
        Action.PHOTOS,
    }
)
_MANAGING = frozenset(Action) - _ADMIN_ONLY
ACTIONS: dict[str, frozenset[Action]] = {
    Role.ADMIN.value: frozenset(Action),
    Role.OFFICE.value: _MANAGING,
    Role.SALES.value: _SELLING,
    Role.TECHNICIAN.value: frozenset({Action.BRIEF, Action.WORK}),
}


def roles_for(action: Action) -> tuple[str, ...]:
    """The roles that may take `action` at all, for the view's `roles_required`."""
    return tuple(role.value for role in Role if action in ACTIONS[role.value])


def allows(user: StaffUser, action: Action) -> bool:
    return action in ACTIONS.get(user.role, frozenset())


def own_accounts_only(user: StaffUser) -> int | None:
    """The salesperson whose accounts are all `user` may see (sales: themselves), or None when
    the scope is every live account. For summaries kept per salesperson (the pipeline counts)."""
    return user.id if user.role == Role.SALES.value else None


def conditions(user: StaffUser) -> list[Any]:
    """The scope as plain conditions on Account, to add to any query that joins accounts: the
    indexes serve these (a subquery of visible ids made both databases read every account)."""
    found: list[Any] = [Account.deleted_at.is_(None)]
    if (own := own_accounts_only(user)) is not None:
        found.append(Account.salesperson_id == own)
    return found


Columns = TypeVarTuple("Columns")


def scoped(query: Select[*Columns], user: StaffUser) -> Select[*Columns]:
    return query.where(*conditions(user))


def visible_accounts(user: StaffUser) -> Select[Account]:
    return scoped(select(Account), user)


def may(user: StaffUser, action: Action, account: Account) -> bool:
    if not allows(user, action) or account.deleted_at is not None:
        return False
    own = own_accounts_only(user)
    return own is None or account.salesperson_id == own


def may_answer(user: StaffUser, account: Account) -> bool:
    """Questions on a handoff go to the one who sold it: its salesperson, whatever their role."""
    return may(user, Action.ANSWER, account) and account.salesperson_id == user.id


def in_service(user: StaffUser) -> list[Any]:
    """The scope without cancelled accounts: what the day list and the office inbox show."""
    return [*conditions(user), Account.cancelled_at.is_(None)]


def account_or_404(session: Session, account_id: int, user: StaffUser, action: Action) -> Account:
    """The account if `user` may take `action` on it: 404 for one outside their scope (no hint
    that it exists), 403 for a role that may see it but not do this."""
    account = session.scalars(visible_accounts(user).where(Account.id == account_id)).first()
    if account is None:
        abort(404)
    if not may(user, action, account):
        abort(403)
    return account
