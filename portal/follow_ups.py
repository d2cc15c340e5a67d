"""Follow-ups: what the office must act on that is neither a difference nor a change request.

Any part of the portal that finds something for the office to do (an overdue promise, a
technician's flag at the gate, a payment that failed for good, first-visit feedback) raises a
follow-up here; the office inbox lists it beside differences and change requests
(portal/inbox.py) until an office user closes it with a note, which may be told to the customer
in the next decisions email. Both steps are record entries."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal import access, decisions, record
from portal.db import utcnow
from portal.models import Account, FollowUp, FollowUpStatus, StaffUser

OPEN = FollowUpStatus.OPEN.value
CLOSED = FollowUpStatus.CLOSED.value
NOTE_LIMIT = 1000

# Each kind as the inbox names it. A feature that raises a new kind adds its words here.
KIND_WORDS: dict[str, str] = {
    "office": "Follow-up",
    "payment_failed": "Payment failed",
    "first_visit_feedback": "First visit: not quite",
    "plan_not_billed": "Plan not billed",
    "access_flag": "Access problem",
    "task_overdue": "Overdue promise",
}


class FollowUpError(ValueError):
    """The follow-up cannot be closed as asked (closed already, not yours, no note)."""


def kind_words(kind: str) -> str:
    return KIND_WORDS.get(kind, kind.replace("_", " ").capitalize())


def _open_one(session: Session, account_id: int, kind: str, key: str) -> FollowUp | None:
    return session.scalars(
        select(FollowUp).where(
            FollowUp.account_id == account_id,
            FollowUp.kind == kind,
            FollowUp.key == key,
            FollowUp.status == OPEN,
        )
    ).first()


def raise_follow_up(
    session: Session,
    account: Account,
    kind: str,
    summary: str,
    *,
    detail: str = "",
    key: str | None = None,
    actor: str = "system",
) -> FollowUp:
    """Put `summary` in the office inbox for `account`, in the caller's transaction, with a
    record entry. Raising the same (kind, key) again while one is open returns the open one
    and records nothing: a worker may raise on every run."""
    key = key or ""
    found = _open_one(session, account.id, kind, key)
    if found is not None:
        return found
    follow_up = FollowUp(
        account_id=account.id,
        kind=kind,
        key=key,
        summary=summary[:300],
        detail=detail,
        status=OPEN,
        raised_by=actor,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():  # another writer raised it between the read and here
            session.add(follow_up)
    except IntegrityError:
        found = _open_one(session, account.id, kind, key)
        assert found is not None
        return found
    record.append(
        session,
        account,
        event="follow_up_raised",
        actor=actor,
        note=summary,
        details={"follow_up": follow_up.id, "kind": kind, **({"detail": detail} if detail else {})},
    )
    return follow_up


def open_for(session: Session, account: Account) -> list[FollowUp]:
    """The account's open follow-ups, oldest first."""
    return list(
        session.scalars(
            select(FollowUp)
            .where(FollowUp.account_id == account.id, FollowUp.status == OPEN)
            .order_by(FollowUp.id)
        )
    )


def told_customer(session: Session, account: Account, limit: int = 5) -> list[FollowUp]:
    """What the office told the customer when it closed a follow-up, newest first."""
    return list(
        session.scalars(
            select(FollowUp)
            .where(FollowUp.account_id == account.id, FollowUp.status == CLOSED, FollowUp.told_customer)
            .order_by(FollowUp.closed_at.desc(), FollowUp.id.desc())
            .limit(limit)
        )
    )


def find(session: Session, user: StaffUser, follow_up_id: int) -> FollowUp | None:
    """The follow-up if its account is in the user's scope (else None: a 404)."""
    return session.scalars(
        select(FollowUp)
        .join(Account, Account.id == FollowUp.account_id)
        .where(FollowUp.id == follow_up_id, *access.conditions(user))
    ).first()


def close(
    session: Session, follow_up_id: int, staff: StaffUser, note: str, *, tell_customer: bool = False
) -> FollowUp:
    """Close an open follow-up with what the office did, in the caller's transaction; with
    `tell_customer` the note goes to the customer in the next decisions email."""
    note = note.strip()
    if not access.allows(staff, access.Action.RESOLVE):
        raise FollowUpError("Closing a follow-up is for the office.")
    if not note:
        raise FollowUpError("Say what was done, so the record shows it.")
    if len(note) > NOTE_LIMIT:
        raise FollowUpError(f"Keep the note under {NOTE_LIMIT} characters.")
    follow_up = session.get(FollowUp, follow_up_id, with_for_update={"of": FollowUp})
    if follow_up is None or find(session, staff, follow_up_id) is None:
        raise FollowUpError("That follow-up is not yours to close.")
    session.refresh(follow_up, ["status"])
    if follow_up.status != OPEN:
        raise FollowUpError("That follow-up was closed already.")
    follow_up.status = CLOSED
    follow_up.closing_note = note
    follow_up.closed_by_id = staff.id
    follow_up.closed_at = utcnow()
    follow_up.told_customer = tell_customer
    entry = record.append(
        session,
        follow_up.account,
        event="follow_up_closed",
        actor=f"staff:{staff.id}",
        note=note,
        details={
            "follow_up": follow_up.id,
            "kind": follow_up.kind,
            "summary": follow_up.summary,
            "told_customer": tell_customer,
        },
    )
    if tell_customer:
        decisions.notify(session, follow_up.account, entry)
    return follow_up
