"""The dashboard: where every onboarding stands, and which accounts need someone now."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVarTuple

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.access import scoped
from portal.links import max_age
from portal.models import DIFFERENT, Account, AccountStatus, OutboxEmail, PromiseItem, StaffUser

Columns = TypeVarTuple("Columns")

WAITING = (AccountStatus.LINK_SENT.value, AccountStatus.OPENED.value, AccountStatus.IN_PROGRESS.value)


@dataclass(frozen=True)
class Pipeline:
    by_status: dict[str, int]
    link_expired: int
    not_opened: int
    not_opened_days: int


def pipeline(session: Session, user: StaffUser, now: datetime) -> Pipeline:
    """Counts by status plus the two that need a nudge: three queries."""
    by_status = dict(session.execute(
        scoped(select(Account.status, func.count()), user).group_by(Account.status)).all())
    expired = session.scalar(scoped(select(func.count()).select_from(Account), user).where(
        Account.status.in_(WAITING), Account.link_sent_at < now - max_age())) or 0
    days = current_app.config["REMINDER_NOT_OPENED_DAYS"]
    not_opened = session.scalar(scoped(select(func.count()).select_from(Account), user).where(
        Account.status == AccountStatus.LINK_SENT.value,
        Account.link_sent_at < now - timedelta(days=days))) or 0
    return Pipeline({status.value: by_status.get(status.value, 0) for status in AccountStatus},
                    expired, not_opened, days)


@dataclass(frozen=True)
class Attention:
    account: Account
    open_differences: int


def needing_attention(session: Session, user: StaffUser, limit: int = 20) -> list[Attention]:
    """Accounts with unresolved differences, the soonest first visit first: one query that walks
    accounts in first-visit order and stops at `limit`, rather than counting every difference."""
    open_items = (PromiseItem.account_id == Account.id) & PromiseItem.current_outcome.in_(DIFFERENT) \
        & PromiseItem.withdrawn_at.is_(None)
    count = select(func.count()).where(open_items).correlate(Account).scalar_subquery()
    query = (scoped(select(Account, count), user)
             .where(select(PromiseItem.id).where(open_items).exists())
             .order_by(Account.first_visit.asc().nulls_last(), Account.id).limit(limit))
    return [Attention(account, n) for account, n in session.execute(query).all()]


def undelivered(session: Session, user: StaffUser, limit: int = 10) -> list[tuple[Account, OutboxEmail]]:
    with_emails = select(Account, OutboxEmail).join(OutboxEmail, OutboxEmail.account_id == Account.id)
    query = (scoped(with_emails, user)
             .where(OutboxEmail.status == "failed").order_by(OutboxEmail.id.desc()).limit(limit))
    return [(account, email) for account, email in session.execute(query).all()]


def recent(session: Session, user: StaffUser, limit: int = 10) -> list[Account]:
    return list(session.scalars(scoped(select(Account), user)
                                .order_by(Account.created_at.desc(), Account.id.desc()).limit(limit)))
