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
from portal.occasions import NONE, OWNERS, Occasion, long_date

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


# -- what the customer sees -----------------------------------------------------------------------


def _month(day: date) -> str:
    return day.strftime("%B %Y")


def customer_states(session: Session, account: Account, today: date) -> dict[int, str]:
    """Each deliverable's state in a sentence, by item id: "Salt cell check done on April 28,
    2027", "Next: March 2027". Two queries."""
    items = {item.id: item for item in account.items if item.occasion != NONE}
    if not items:
        return {}
    tasks = session.scalars(
        select(PromiseTask).where(PromiseTask.item_id.in_(list(items))).order_by(PromiseTask.occurrence)
    ).unique()
    done: dict[int, PromiseTask] = {}
    open_: dict[int, PromiseTask] = {}
    for task in tasks:
        (done if task.status == DONE else open_)[task.item_id] = task
    states = {}
    for item_id, item in items.items():
        last, upcoming = done.get(item_id), open_.get(item_id)
        parts = []
        if last is not None and last.done_on is not None:
            parts.append(f"Done on {long_date(last.done_on)}")
        if upcoming is not None:
            if occasion_of(item).one_time:
                parts.append(
                    f"Due by {long_date(upcoming.due_on)}"
                    if upcoming.due_on >= today
                    else f"Late: it was due by {long_date(upcoming.due_on)}; we are on it"
                )
            else:
                parts.append(f"Next: {_month(upcoming.due_on)}")
        elif last is None:
            words = occasion_of(item).words(account.first_visit)
            if words:
                parts.append(words)
        states[item_id] = ". ".join(parts)
    return states


CUSTOMER_OWNER = {"technician": "your technician", "office": "our office"}


def when_for_customer(item: PromiseItem, first_visit: date | None) -> str:
    """A deliverable's occasion and owner as the welcome steps put them beside the promise:
    "By May 31, 2027, by your technician"; empty for a standing fact."""
    occasion = occasion_of(item)
    words = occasion.words(first_visit)
    if not words:
        return ""
    return f"{words}, by {CUSTOMER_OWNER.get(occasion.owner, 'us')}"
