"""Reports that close the loop between sales and service: where promises and confirmations
part ways, by kind and by salesperson; how long onboarding takes; where customers drop off."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import QueryableAttribute, Session

from portal import access
from portal.handoffs import KIND_LABELS
from portal.models import DIFFERENT, Account, AccountStatus, PromiseItem, RecordEntry, StaffUser


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
