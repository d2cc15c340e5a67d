"""Follow-through: each occurrence of a deliverable promise is a task due on a date.

- `plan` keeps an item's one open task in step with its occasion (portal/occasions.py) and the
  account's first visit; handoffs, edits and a moved first visit call it. A repeating promise
  has one open occurrence at a time: closing it creates the next, so nothing is generated
  ahead without bound.
- The technician marks a task done (with a note) or "couldn't do" (with a reason) from the
  brief; each is a record entry. "Couldn't do" leaves the task open: it stays on the list and,
  once past due, reaches the office like any other overdue task.
- `raise_overdue` (the worker's periodic job) puts each overdue task in the office inbox once.
- The customer sees each deliverable's state on My service, and an email when a one-time
  promise is done.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import case, or_, select
from sqlalchemy.orm import Session

from portal import access, follow_ups, links, record, technicians
from portal.company import get_company
from portal.db import utcnow
from portal.deliverables import DONE, OPEN, occasion_of, plan
from portal.handoffs import KIND_LABELS, staff_actor
from portal.mail import queue_email
from portal.models import Account, PromiseItem, PromiseTask, StaffUser
from portal.occasions import OWNERS, TECHNICIAN, long_date
from portal.secret_codes import blank_codes

OVERDUE_KIND = "task_overdue"
MAX_NOTE = 1000


class TaskError(ValueError):
    """The task cannot be closed as asked (done already, no reason given)."""


# -- what is due ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DueTask:
    """A task as the brief and day list show it."""

    task: PromiseTask
    label: str
    value: str
    when: str  # the occasion in words
    overdue: bool

    @property
    def id(self) -> int:
        return self.task.id

    @property
    def owner(self) -> str:
        return OWNERS.get(self.task.owner, self.task.owner)


def due_by_account(
    session: Session, account_ids: list[int], day: date, today: date, owner: str | None = None
) -> dict[int, list[DueTask]]:
    """Open tasks due on or before `day` (a visit) for these accounts, in one query; only
    `owner`'s when given (the technician's day list leaves the office's out)."""
    if not account_ids:
        return {}
    query = (
        select(PromiseTask)
        .where(PromiseTask.account_id.in_(account_ids), PromiseTask.status == OPEN, PromiseTask.due_on <= day)
        .order_by(PromiseTask.due_on, PromiseTask.id)
    )
    if owner is not None:
        query = query.where(PromiseTask.owner == owner)
    found: dict[int, list[DueTask]] = defaultdict(list)
    first_visits = dict(
        session.execute(select(Account.id, Account.first_visit).where(Account.id.in_(account_ids))).all()
    )
    for task in session.scalars(query).unique():
        item = task.item
        found[task.account_id].append(
            DueTask(
                task,
                item.label,
                item.promised_value,
                occasion_of(item).words(first_visits.get(task.account_id)),
                task.due_on < today,
            )
        )
    return dict(found)


def due_for_visit(session: Session, account: Account, day: date, today: date) -> list[DueTask]:
    return due_by_account(session, [account.id], day, today).get(account.id, [])


def technician_due(
    session: Session, account_ids: list[int], day: date, today: date
) -> dict[int, list[DueTask]]:
    return due_by_account(session, account_ids, day, today, owner=TECHNICIAN)


ROUTINE_LIMIT = 50


def routine_work_on(
    session: Session, user: StaffUser, day: date, today: date, besides: Iterable[int]
) -> list[Account]:
    """Accounts (not among `besides`, the day's first visits) whose route technician has
    promised work due on `day` (today: due by today, still open): routine visits the first-visit
    list does not carry, nearest address first, at most ROUTINE_LIMIT."""
    due = PromiseTask.due_on <= day if day == today else PromiseTask.due_on == day
    with_work = select(PromiseTask.account_id).where(
        PromiseTask.status == OPEN, PromiseTask.owner == TECHNICIAN, due
    )
    return list(
        session.scalars(
            select(Account)
            .where(*access.in_service(user), Account.id.in_(with_work), Account.id.not_in(list(besides)))
            .order_by(Account.service_address, Account.id)
            .limit(ROUTINE_LIMIT)
        )
    )


# -- closing a task -------------------------------------------------------------------------------


def find_task(session: Session, task_id: int) -> PromiseTask | None:
    return session.get(PromiseTask, task_id)


def _clean_note(note: str) -> str:
    return note.replace("\r\n", "\n").replace("\r", "\n").strip()[:MAX_NOTE]


def _locked(session: Session, task: PromiseTask) -> PromiseTask:
    """The task as stored, with its account's row locked: two closes of one task queue up."""
    record.lock_account(session, task.account_id)
    session.refresh(task)
    return task


def mark_done(
    session: Session, task: PromiseTask, staff: StaffUser, note: str, today: date
) -> PromiseTask | None:
    """Close the task as done today; a record entry, the customer's email for a one-time
    promise, and a repeating promise's next occurrence (returned)."""
    task = _locked(session, task)
    if task.status != OPEN:
        raise TaskError("This was marked done already.")
    account, item = session.get_one(Account, task.account_id), task.item
    note = _clean_note(note)
    task.status, task.done_on, task.by_id, task.note = DONE, today, staff.id, note
    on_time = today <= task.due_on
    record.append(
        session,
        account,
        event="task_done",
        actor=staff_actor(staff),
        item=item,
        promised_value=item.promised_value,
        note=note,
        details={
            "task": task.id,
            "due": task.due_on.isoformat(),
            "done_on": today.isoformat(),
            "occurrence": task.occurrence,
            "on_time": on_time,
        },
    )
    session.flush()
    occasion = occasion_of(item)
    if occasion.one_time:
        _email_customer(session, account, item, today)
        return None
    return plan(session, account, item, after=today)


def mark_missed(session: Session, task: PromiseTask, staff: StaffUser, reason: str, today: date) -> None:
    """ "Couldn't do": the reason is a record entry and stays on the task, which stays open."""
    reason = _clean_note(reason)
    if not reason:
        raise TaskError("Say why it couldn't be done, so the office can sort it out.")
    task = _locked(session, task)
    if task.status != OPEN:
        raise TaskError("This was marked done already.")
    account, item = session.get_one(Account, task.account_id), task.item
    task.missed_on, task.by_id, task.note = today, staff.id, reason
    record.append(
        session,
        account,
        event="task_missed",
        actor=staff_actor(staff),
        item=item,
        promised_value=item.promised_value,
        note=reason,
        details={"task": task.id, "due": task.due_on.isoformat(), "occurrence": task.occurrence},
    )


def _email_customer(session: Session, account: Account, item: PromiseItem, today: date) -> None:
    company = get_company()
    queue_email(
        session,
        template="promise_kept",
        to=account.customer.email,
        account=account,
        subject=f"{company.name}: {item.label.lower()} done",
        context={
            "account": account,
            "label": item.label,
            "promise": blank_codes(item.promised_value),
            "done_on": long_date(today),
            "service_url": links.public_url("welcome.my_service"),
        },
    )


# -- overdue: the office inbox --------------------------------------------------------------------


def raise_overdue(session: Session, today: date, now: datetime | None = None) -> int:
    """Put each open task past its due date in the office inbox, once per task. The caller
    commits. Returns how many were raised."""
    raised = 0
    overdue = session.scalars(
        select(PromiseTask)
        .join(Account, Account.id == PromiseTask.account_id)
        .where(
            PromiseTask.status == OPEN,
            PromiseTask.due_on < today,
            PromiseTask.overdue_raised_at.is_(None),
            Account.deleted_at.is_(None),
        )
        .order_by(PromiseTask.due_on, PromiseTask.id)
        .with_for_update(skip_locked=True, of=PromiseTask)
    ).unique()
    for task in list(overdue):
        account, item = session.get_one(Account, task.account_id), task.item
        detail = f"Due {long_date(task.due_on)} ({OWNERS.get(task.owner, task.owner).lower()})."
        if task.missed_on is not None:
            detail += f" Couldn't do on {long_date(task.missed_on)}: {task.note}"
        follow_ups.raise_follow_up(
            session,
            account,
            OVERDUE_KIND,
            f"{item.label}: {item.promised_value}"[:200],
            detail=detail,
            key=f"task:{task.id}",
        )
        task.overdue_raised_at = now or utcnow()
        raised += 1
    session.flush()
    return raised


# -- the report: promises kept on time ------------------------------------------------------------


@dataclass(frozen=True)
class Kept:
    label: str
    due: int
    on_time: int

    @property
    def percent(self) -> float:
        return round(100 * self.on_time / self.due, 1) if self.due else 0.0


@dataclass(frozen=True)
class KeptReport:
    by_kind: list[Kept]
    by_salesperson: list[Kept]
    by_technician: list[Kept]


def _tally(rows: Iterable[tuple[str, bool]]) -> list[Kept]:
    due: dict[str, int] = defaultdict(int)
    on_time: dict[str, int] = defaultdict(int)
    for label, kept in rows:
        due[label] += 1
        on_time[label] += int(kept)
    return sorted(
        (Kept(label, due[label], on_time[label]) for label in due), key=lambda k: (-k.percent, k.label)
    )


NOBODY = "Not done yet"
UNASSIGNED = "Unassigned"


def kept_on_time(session: Session, user: StaffUser, today: date) -> KeptReport:
    """Tasks due by today (or done early), kept on time = done on or before the due date; by
    promise kind, by the account's salesperson and by technician (the account's assigned one
    for a technician's task, else who did or last tried it). One query for the tasks in
    `user`'s scope, one for the names."""
    rows = session.execute(
        select(
            PromiseItem.kind,
            Account.salesperson_id,
            # A technician's task counts for the account's assigned technician; an office task,
            # or one on an account nobody was assigned to, for who did (or last tried) it.
            case(
                (PromiseTask.owner == TECHNICIAN, technicians.assigned_or(PromiseTask.by_id)),
                else_=PromiseTask.by_id,
            ).label("technician_id"),
            PromiseTask.status,
            PromiseTask.done_on,
            PromiseTask.due_on,
        )
        .join(PromiseItem, PromiseItem.id == PromiseTask.item_id)
        .join(Account, Account.id == PromiseTask.account_id)
        .where(*access.conditions(user), or_(PromiseTask.due_on <= today, PromiseTask.status == DONE))
    ).all()
    people = {row.salesperson_id for row in rows} | {row.technician_id for row in rows}
    names = {
        person.id: person.display_name
        for person in session.scalars(select(StaffUser).where(StaffUser.id.in_([p for p in people if p])))
    }
    kept = [
        (row, row.status == DONE and row.done_on is not None and row.done_on <= row.due_on) for row in rows
    ]
    return KeptReport(
        by_kind=_tally((KIND_LABELS.get(row.kind, row.kind), ok) for row, ok in kept),
        by_salesperson=_tally(
            (names.get(row.salesperson_id, UNASSIGNED) if row.salesperson_id else UNASSIGNED, ok)
            for row, ok in kept
        ),
        by_technician=_tally(
            (names.get(row.technician_id, NOBODY) if row.technician_id else NOBODY, ok) for row, ok in kept
        ),
    )


KEPT_SECTIONS = (
    ("kept_by_kind", "by_kind"),
    ("kept_by_salesperson", "by_salesperson"),
    ("kept_by_technician", "by_technician"),
)


def kept_bars(report: KeptReport) -> dict[str, list[tuple[str, float, str]]]:
    """The report page's bars: (label, percent, "3 of 4 (75.0 %)")."""
    return {
        section: [
            (kept.label, kept.percent, f"{kept.on_time} of {kept.due} ({kept.percent} %)")
            for kept in getattr(report, name)
        ]
        for section, name in KEPT_SECTIONS
    }


def kept_csv_rows(report: KeptReport) -> list[list[object]]:
    """The CSV's rows for promises kept on time, in its five columns: section, label, tasks
    due, kept on time, percent kept on time (docs/reports.md)."""
    return [
        [section, kept.label, kept.due, kept.on_time, kept.percent]
        for section, name in KEPT_SECTIONS
        for kept in getattr(report, name)
    ]
