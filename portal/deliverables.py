"""A deliverable promise's occasion on its item, and its one open task kept in step with it.

Handoffs, edits and a moved first visit call `plan`; closing a task (portal/follow_through.py)
calls it for a repeating promise's next occurrence. Kept apart from follow_through so the
handoff service can plan tasks without importing the email and inbox services.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.models import Account, PromiseItem, PromiseTask, TaskStatus
from portal.occasions import NONE, OWNERS, Occasion

OPEN = TaskStatus.OPEN.value
DONE = TaskStatus.DONE.value
# The most occurrences a late close may skip over to reach the next one still ahead.
MAX_SKIP = 1000


def occasion_of(item: PromiseItem) -> Occasion:
    return Occasion(item.occasion or NONE, item.owner, item.occasion_on, item.every, item.every_unit)


def set_occasion(item: PromiseItem, occasion: Occasion) -> bool:
    """Store `occasion` on the item; True when that changed anything."""
    if occasion_of(item) == occasion:
        return False
    item.occasion, item.owner, item.occasion_on = occasion.kind, occasion.owner, occasion.on
    item.every, item.every_unit = occasion.every, occasion.unit
    return True


def _open_task(session: Session, item: PromiseItem) -> PromiseTask | None:
    return session.scalar(
        select(PromiseTask).where(PromiseTask.item_id == item.id, PromiseTask.status == OPEN)
    )


def _last_done(session: Session, item: PromiseItem) -> int | None:
    return session.scalar(
        select(func.max(PromiseTask.occurrence)).where(
            PromiseTask.item_id == item.id, PromiseTask.status == DONE
        )
    )


def plan(
    session: Session, account: Account, item: PromiseItem, after: date | None = None
) -> PromiseTask | None:
    """Make the item's open task match its occasion: created, moved, or removed (a withdrawn or
    untracked promise, a first-visit promise without a first visit). `after`: the next
    occurrence is the first due after this day (a late close skips the ones already past)."""
    task = _open_task(session, item)
    occasion = occasion_of(item)
    last = _last_done(session, item)
    occurrence = 0 if last is None else last + 1
    due = occasion.due(occurrence, account.first_visit) if item.withdrawn_at is None else None
    if after is not None:
        for _ in range(MAX_SKIP):
            if due is None or due > after:
                break
            occurrence += 1
            due = occasion.due(occurrence, account.first_visit)
    if due is None:
        if task is not None:  # its history, if any, is in the record
            session.delete(task)
            session.flush()
        return None
    if task is None:
        task = PromiseTask(account_id=account.id, item_id=item.id, note="")
        session.add(task)
    task.occurrence, task.due_on, task.owner = occurrence, due, occasion.owner
    session.flush()
    return task


def plan_account(session: Session, account: Account) -> None:
    """After the first visit moved: every deliverable of the account follows it."""
    for item in account.all_items:
        if item.occasion != NONE or _open_task(session, item) is not None:
            plan(session, account, item)


def details(occasion: Occasion, first_visit: date | None) -> dict[str, str] | None:
    """A deliverable's when and owner as its record entries keep them."""
    if not occasion.tracked:
        return None
    return {"when": occasion.words(first_visit), "owner": OWNERS[occasion.owner]}
