"""Reports that close the loop between sales and service: where promises and confirmations
part ways, by kind and by salesperson; how long onboarding takes; where customers drop off."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import QueryableAttribute, Session

from portal import access, technicians
from portal.handoffs import KIND_LABELS
from portal.models import (
    DIFFERENT,
    Account,
    AccountStatus,
    FirstVisitFeedback,
    PromiseItem,
    RecordEntry,
    StaffUser,
)


@dataclass(frozen=True)
class Rate:
    label: str
    answered: int
    differed: int

    @property
    def percent(self) -> float:
        return round(100 * self.differed / self.answered, 1) if self.answered else 0.0


def _answered_and_differed(
    session: Session, user: StaffUser, group: QueryableAttribute[Any]
) -> tuple[dict[Any, int], dict[Any, int]]:
    """Items the customer answered, and those they changed or disputed, per group: 2 queries."""
    base = (
        select(group, func.count(distinct(RecordEntry.item_id)))
        .join(PromiseItem, PromiseItem.id == RecordEntry.item_id)
        .join(Account, Account.id == PromiseItem.account_id)
        .where(RecordEntry.event == "answered", *access.conditions(user))
        .group_by(group)
    )
    answered: dict[Any, int] = dict(session.execute(base).all())
    differed: dict[Any, int] = dict(session.execute(base.where(RecordEntry.outcome.in_(DIFFERENT))).all())
    return answered, differed


def rates_by_kind(session: Session, user: StaffUser) -> list[Rate]:
    answered, differed = _answered_and_differed(session, user, PromiseItem.kind)
    return [
        Rate(KIND_LABELS[kind], answered.get(kind, 0), differed.get(kind, 0))
        for kind in KIND_LABELS
        if answered.get(kind)
    ]


def rates_by_salesperson(session: Session, user: StaffUser) -> list[Rate]:
    answered, differed = _answered_and_differed(session, user, Account.salesperson_id)
    names = {
        user.id: user.display_name
        for user in session.scalars(
            select(StaffUser).where(StaffUser.id.in_([k for k in answered if k is not None]))
        )
    }
    rates = [
        Rate(names.get(person, "Unassigned") if person else "Unassigned", n, differed.get(person, 0))
        for person, n in answered.items()
    ]
    return sorted(rates, key=lambda rate: (-rate.percent, rate.label))


def median_days_to_sign(session: Session, user: StaffUser) -> tuple[float | None, int]:
    """Median days from the first welcome link to signing, over every signed account: the same
    accounts the funnel and the dashboard count as signed. An account whose link went out with
    no `link_sent` entry (the demo link `make run` prints, links issued before entries existed)
    counts from its handoff, rather than dropping out of the median."""
    first_sent = (
        select(RecordEntry.account_id, func.min(RecordEntry.created_at).label("sent"))
        .where(RecordEntry.event == "link_sent")
        .group_by(RecordEntry.account_id)
        .subquery()
    )
    rows = session.execute(
        access.scoped(select(Account.signed_at, first_sent.c.sent, Account.created_at), user)
        .outerjoin(first_sent, first_sent.c.account_id == Account.id)
        .where(Account.status == AccountStatus.SIGNED.value)
    ).all()
    days = [
        (_aware(signed) - _aware(sent if sent is not None else created)).total_seconds() / 86400
        for signed, sent, created in rows
        if signed is not None
    ]
    return (round(statistics.median(days), 1) if days else None), len(rows)


def _aware(value: datetime | str) -> datetime:
    # func.min() hands SQLite's stored text back through the column type only on some versions.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


FUNNEL = (
    ("Handed off", tuple(s.value for s in AccountStatus)),
    ("Link sent", ("link_sent", "opened", "in_progress", "signed")),
    ("Opened", ("opened", "in_progress", "signed")),
    ("In progress", ("in_progress", "signed")),
    ("Signed", ("signed",)),
)


def funnel(session: Session, user: StaffUser) -> list[tuple[str, int]]:
    by_status = dict(
        session.execute(
            access.scoped(select(Account.status, func.count()), user).group_by(Account.status)
        ).all()
    )
    return [(stage, sum(by_status.get(status, 0) for status in statuses)) for stage, statuses in FUNNEL]


# -- issue 18: handback reports (first-visit feedback, time to acknowledge, early churn) --------


def _names(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    return {u.id: u.display_name for u in session.scalars(select(StaffUser).where(StaffUser.id.in_(wanted)))}


@dataclass(frozen=True)
class FeedbackCounts:
    label: str
    yes: int
    not_quite: int
    no_answer: int

    @property
    def asked(self) -> int:
        return self.yes + self.not_quite + self.no_answer

    @property
    def answered(self) -> int:
        return self.yes + self.not_quite

    @property
    def yes_percent(self) -> float:
        """Of the answers given (an email not answered yet says nothing either way)."""
        return round(100 * self.yes / self.answered, 1) if self.answered else 0.0


def first_visit_feedback(session: Session, user: StaffUser, by: str) -> list[FeedbackCounts]:
    """Answers to "Did your first visit match what we agreed?" (yes / not quite / no answer
    yet) over every feedback email sent, by salesperson or by technician ("by": "salesperson"
    or "technician"): one grouped query."""
    # The technician assigned now, else the one the feedback row kept when it was sent.
    group = (
        Account.salesperson_id
        if by == "salesperson"
        else technicians.assigned_or(FirstVisitFeedback.technician_id)
    )
    rows = session.execute(
        select(group, FirstVisitFeedback.answer, func.count())
        .join(Account, Account.id == FirstVisitFeedback.account_id)
        .where(*access.conditions(user))
        .group_by(group, FirstVisitFeedback.answer)
    ).all()
    counts: dict[int | None, dict[str | None, int]] = {}
    for who, answer, n in rows:
        counts.setdefault(who, {})[answer] = n
    names = _names(session, counts)
    missing = "Not recorded" if by == "technician" else "Unassigned"
    found = [
        FeedbackCounts(
            names.get(who, missing) if who is not None else missing,
            by_answer.get("yes", 0),
            by_answer.get("not_quite", 0),
            by_answer.get(None, 0),
        )
        for who, by_answer in counts.items()
    ]
    return sorted(found, key=lambda c: (c.yes_percent, c.label))


@dataclass(frozen=True)
class Median:
    label: str
    days: float
    count: int


def days_to_acknowledge(session: Session, user: StaffUser) -> tuple[Median | None, list[Median]]:
    """Median days from the sale (the handoff) to service acknowledging it: overall and by
    salesperson, over every acknowledged account."""
    rows = session.execute(
        access.scoped(
            select(Account.salesperson_id, Account.created_at, Account.acknowledged_at), user
        ).where(Account.acknowledged_at.is_not(None))
    ).all()
    spans: dict[int | None, list[float]] = {}
    for who, sold, acknowledged in rows:
        if acknowledged is None:
            continue
        spans.setdefault(who, []).append((_aware(acknowledged) - _aware(sold)).total_seconds() / 86400)
    names = _names(session, spans)
    every = [d for days in spans.values() for d in days]
    overall = Median("Everyone", round(statistics.median(every), 1), len(every)) if every else None
    per_person = [
        Median(names.get(who, "Unassigned") if who else "Unassigned", round(statistics.median(d), 1), len(d))
        for who, d in spans.items()
    ]
    return overall, sorted(per_person, key=lambda m: (-m.days, m.label))


EARLY_CHURN_DAYS = 90


@dataclass(frozen=True)
class Churned:
    account_id: int
    customer: str
    salesperson: str
    days: int  # from the sale to the cancellation
    reason: str


def early_churn(session: Session, user: StaffUser) -> tuple[list[Churned], list[tuple[str, int]]]:
    """Accounts cancelled within EARLY_CHURN_DAYS of the sale, newest first, with their
    reasons; and how many per salesperson (most first)."""
    cancelled = session.scalars(
        access.scoped(select(Account), user)
        .where(Account.cancelled_at.is_not(None))
        .order_by(Account.cancelled_at.desc(), Account.id.desc())
    ).all()
    churned = []
    for account in cancelled:
        assert account.cancelled_at is not None
        days = (_aware(account.cancelled_at) - _aware(account.created_at)).days
        if days <= EARLY_CHURN_DAYS:
            seller = account.salesperson.display_name if account.salesperson else "Unassigned"
            churned.append(Churned(account.id, account.customer.name, seller, days, account.cancel_reason))
    per_person: dict[str, int] = {}
    for row in churned:
        per_person[row.salesperson] = per_person.get(row.salesperson, 0) + 1
    return churned, sorted(per_person.items(), key=lambda pair: (-pair[1], pair[0]))
