"""Each account's technician: the office assigns one (or nobody yet) on the account page, and
the record says so. One rule for "the account's technician" everywhere (the day list, the brief,
the reports): the assigned one; only an account nobody was assigned to falls back on the
technician who last wrote to its record (what the portal went by before assignments).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal import record
from portal.handoffs import staff_actor
from portal.models import Account, RecordEntry, Role, StaffUser

NOBODY_YET = "Nobody yet"
REFUSED = "Choose an active technician, or nobody yet."


class TechnicianError(ValueError):
    """The chosen person may not be an account's technician; nothing was changed."""


def active_technicians(session: Session) -> list[StaffUser]:
    """Who may be assigned, by name: the choices on the account page."""
    return list(
        session.scalars(
            select(StaffUser)
            .where(StaffUser.active.is_(True), StaffUser.role == Role.TECHNICIAN.value)
            .order_by(StaffUser.name, StaffUser.email)
        )
    )


def chosen(raw: str) -> int | None:
    """The id posted by the account page's select ("" is nobody yet)."""
    if not raw.strip():
        return None
    if not raw.strip().isdigit():
        raise TechnicianError(REFUSED)
    return int(raw)


def assign(session: Session, account: Account, technician_id: int | None, staff: StaffUser) -> bool:
    """Set (or, with None, clear) the account's technician and record it; False when it was
    already so (nothing recorded). Refuses anyone but an active technician. The caller commits."""
    technician = None
    if technician_id is not None:
        technician = session.get(StaffUser, technician_id)
        if technician is None or not technician.active or technician.role != Role.TECHNICIAN.value:
            raise TechnicianError(REFUSED)
    if account.technician_id == technician_id:
        return False
    account.technician = technician
    record.append(
        session,
        account,
        event="technician_assigned",
        actor=staff_actor(staff),
        confirmed_value=technician.display_name if technician is not None else NOBODY_YET,
        details={"technician_id": technician_id},
    )
    return True


def _last_technician_to_write(session: Session, account_id: int) -> int | None:
    technicians = select(StaffUser.id).where(StaffUser.role == Role.TECHNICIAN.value)
    actors = [f"staff:{staff_id}" for staff_id in session.scalars(technicians)]
    if not actors:
        return None
    actor = session.scalar(
        select(RecordEntry.actor)
        .where(RecordEntry.account_id == account_id, RecordEntry.actor.in_(actors))
        .order_by(RecordEntry.seq.desc())
        .limit(1)
    )
    return int(actor.partition(":")[2]) if actor else None


def technician_of(session: Session, account: Account) -> int | None:
    """The account's technician: the assigned one, else who last wrote to its record."""
    if account.technician_id is not None:
        return account.technician_id
    return _last_technician_to_write(session, account.id)


def assigned_or(fallback: Any) -> Any:
    """The same rule inside a report's query (joined to accounts): the assigned technician,
    else `fallback`, the report's own guess for an account nobody was assigned to."""
    return func.coalesce(Account.technician_id, fallback)
