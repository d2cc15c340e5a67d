"""Staff notes: a line in the service record, on an account or one of its promises. A note
never changes an item's state (it carries no outcome); deciding a difference is a resolution."""

from __future__ import annotations

from sqlalchemy.orm import Session

from portal import record
from portal.handoffs import staff_actor
from portal.models import Account, PromiseItem, RecordEntry, StaffUser


def add_note(
    session: Session, account: Account, staff: StaffUser, note: str, item: PromiseItem | None = None
) -> RecordEntry:
    """The caller checks the policy (access.Action.NOTE) and commits."""
    return record.append(session, account, event="note", actor=staff_actor(staff), item=item, note=note)
