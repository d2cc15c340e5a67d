"""The dashboard: where every onboarding stands, and which accounts need someone now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVarTuple

from flask import current_app
from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.orm import Session

from portal import keyset
from portal.access import in_service, own_accounts_only, scoped
from portal.links import max_age
from portal.models import (
    DIFFERENT,
    Account,
    AccountCount,
    AccountStatus,
    ChangeRequest,
    ChangeRequestStatus,
    FollowUp,
    FollowUpStatus,
    OutboxEmail,
    PromiseItem,
    StaffUser,
)

Columns = TypeVarTuple("Columns")

OPEN_CHANGE = ChangeRequestStatus.OPEN.value
OPEN_FOLLOW_UP = FollowUpStatus.OPEN.value
WAITING = (AccountStatus.LINK_SENT.value, AccountStatus.OPENED.value, AccountStatus.IN_PROGRESS.value)


@dataclass(frozen=True)
class Pipeline:
    by_status: dict[str, int]
    link_expired: int  # both from keyset.capped_count: shown with the count_text filter
    not_opened: int
    not_opened_days: int


def pipeline(session: Session, user: StaffUser, now: datetime) -> Pipeline:
    """Counts by status (from the summary the database keeps, a few rows) plus the two that need
    a nudge, read from one covering index and capped (keyset.capped_count): these depend on the
    clock, so no summary can keep them, and uncapped they read every waiting account (20,000
    index entries at 100,000 accounts). Three queries, each of bounded cost."""
    totals = select(AccountCount.status, func.sum(AccountCount.accounts)).group_by(AccountCount.status)
    if (own := own_accounts_only(user)) is not None:
        totals = totals.where(AccountCount.salesperson_id == own)
    by_status = {status: int(n or 0) for status, n in session.execute(totals).all()}
    waiting = scoped(select(Account.id), user)
    expired = keyset.capped_count(
        session, waiting.where(Account.status.in_(WAITING), Account.link_sent_at < now - max_age())
    )
    days = current_app.config["REMINDER_NOT_OPENED_DAYS"]
    not_opened = keyset.capped_count(
        session,
        waiting.where(
            Account.status == AccountStatus.LINK_SENT.value,
            Account.link_sent_at < now - timedelta(days=days),
        ),
    )
    return Pipeline(
        {status.value: by_status.get(status.value, 0) for status in AccountStatus}, expired, not_opened, days
    )


@dataclass(frozen=True)
class Attention:
    account: Account
    open_differences: int  # open differences, change requests and follow-ups: the inbox's rows


def needing_attention(session: Session, user: StaffUser, limit: int = 20) -> list[Attention]:
    """Accounts with open decisions (unresolved differences, change requests, follow-ups), the soonest
    first visit first: one query that walks
    accounts in first-visit order and stops at `limit`, rather than counting every difference."""
    open_items = (
        (PromiseItem.account_id == Account.id)
        & PromiseItem.current_outcome.in_(DIFFERENT)
        & PromiseItem.withdrawn_at.is_(None)
    )
    open_changes = (ChangeRequest.account_id == Account.id) & (ChangeRequest.status == OPEN_CHANGE)
    open_follow_ups = (FollowUp.account_id == Account.id) & (FollowUp.status == OPEN_FOLLOW_UP)
    count = (
        select(func.count()).where(open_items).correlate(Account).scalar_subquery()
        + select(func.count()).where(open_changes).correlate(Account).scalar_subquery()
        + select(func.count()).where(open_follow_ups).correlate(Account).scalar_subquery()
    )
    query = (
        select(Account, count)
        .where(*in_service(user))  # a cancelled account leaves the inbox, and so this list
        .where(
            or_(
                select(PromiseItem.id).where(open_items).exists(),
                select(ChangeRequest.id).where(open_changes).exists(),
                select(FollowUp.id).where(open_follow_ups).exists(),
            )
        )
        .order_by(Account.first_visit.asc().nulls_last(), Account.id)
        .limit(limit)
    )
    return [Attention(account, n) for account, n in session.execute(query).all()]


def undelivered(session: Session, user: StaffUser, limit: int = 10) -> list[tuple[Account, OutboxEmail]]:
    with_emails = select(Account, OutboxEmail).join(OutboxEmail, OutboxEmail.account_id == Account.id)
    query = (
        scoped(with_emails, user)
        .where(OutboxEmail.status == "failed")
        .order_by(OutboxEmail.id.desc())
        .limit(limit)
    )
    return [(account, email) for account, email in session.execute(query).all()]


def recent(session: Session, user: StaffUser, limit: int = 10) -> list[Account]:
    return list(
        session.scalars(
            scoped(select(Account), user).order_by(Account.created_at.desc(), Account.id.desc()).limit(limit)
        )
    )


def recount(session: Session) -> None:
    """Rebuild the pipeline counts from the accounts, as migration 0009 first filled them. The
    database's triggers keep them from then on; only a bulk load made with triggers switched
    off (PostgreSQL's replica mode in bench/staff_scale.py) needs this afterwards."""
    session.execute(delete(AccountCount))
    live = Account.deleted_at.is_(None)
    who = func.coalesce(Account.salesperson_id, 0)
    session.execute(
        insert(AccountCount).from_select(
            ["salesperson_id", "status", "accounts"],
            select(who, Account.status, func.count()).where(live).group_by(who, Account.status),
        )
    )
