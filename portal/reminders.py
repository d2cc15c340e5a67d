"""Reminders for customers who have not opened their link, or have not finished, after some days.

A reminder is a fresh link (which revokes the previous one), an outbox email and a service record
entry, written together in one transaction per account; `outbox send` delivers the email. An
account gets at most REMINDER_MAX reminders; signed, draft and deleted accounts get none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from portal import links, record
from portal.company import get_company
from portal.db import get_db, unit_of_work, utcnow
from portal.mail import queue_email
from portal.models import Account, AccountStatus
from portal.outbox import ISO_DATETIME

NOT_OPENED, NOT_FINISHED = "not_opened", "not_finished"
UNFINISHED = (AccountStatus.OPENED.value, AccountStatus.IN_PROGRESS.value)


@dataclass(frozen=True)
class ReminderPolicy:
    not_opened_after: timedelta
    not_finished_after: timedelta
    max_reminders: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ReminderPolicy:
        return cls(
            timedelta(days=config["REMINDER_NOT_OPENED_DAYS"]),
            timedelta(days=config["REMINDER_NOT_FINISHED_DAYS"]),
            config["REMINDER_MAX"],
        )


@dataclass(frozen=True)
class ReminderSent:
    account_id: int
    to: str
    number: int
    reason: str
    email_id: int


def reminder_due(account: Account, now: datetime, policy: ReminderPolicy) -> str | None:
    """Why `account` should be reminded at `now` (not_opened / not_finished), or None."""
    if (
        account.deleted_at is not None
        or account.link_sent_at is None
        or account.reminders_sent >= policy.max_reminders
    ):
        return None
    if account.status == AccountStatus.LINK_SENT.value and account.link_opened_at is None:
        reason, wait = NOT_OPENED, policy.not_opened_after
    elif account.status in UNFINISHED:
        reason, wait = NOT_FINISHED, policy.not_finished_after
    else:
        return None
    # Counted from the latest nudge: a link (re-)sent, a reminder, or the customer opening it.
    since = max(
        t
        for t in (
            account.link_sent_at,
            account.last_reminder_at,
            account.link_opened_at if reason == NOT_FINISHED else None,
        )
        if t
    )
    return reason if now - since >= wait else None


def candidate_ids(session: Session, now: datetime, policy: ReminderPolicy) -> list[int]:
    """Accounts that might be due; `reminder_due` decides. Narrowed in SQL so a daily run reads
    only the few accounts still onboarding whose last nudge is older than the shorter wait."""
    cutoff = now - min(policy.not_opened_after, policy.not_finished_after)
    return list(
        session.scalars(
            select(Account.id)
            .where(
                Account.deleted_at.is_(None),
                Account.status.in_([AccountStatus.LINK_SENT.value, *UNFINISHED]),
                Account.reminders_sent < policy.max_reminders,
                Account.link_sent_at <= cutoff,
                or_(Account.last_reminder_at.is_(None), Account.last_reminder_at <= cutoff),
            )
            .order_by(Account.id)
        )
    )


def send_reminder(session: Session, account: Account, reason: str, now: datetime) -> ReminderSent:
    """Rotate the link, queue the reminder and record it. The caller commits."""
    number = account.reminders_sent + 1
    url = links.issue_welcome_link(account)
    email = queue_email(
        session,
        template="reminder",
        to=account.customer.email,
        subject=_subject(reason),
        context={"account": account, "url": url, "reason": reason, "expires_days": links.max_age().days},
        account=account,
    )
    account.reminders_sent = number
    account.last_reminder_at = now
    session.flush()
    record.append(
        session,
        account,
        event="reminder_sent",
        actor="system",
        details={"number": number, "reason": reason, "email_id": email.id},
    )
    return ReminderSent(account.id, email.to_address, number, reason, email.id)


def _subject(reason: str) -> str:
    company = get_company().name
    if reason == NOT_OPENED:
        return f"{company}: a reminder to confirm your pool service"
    return f"{company}: please finish confirming your pool service"


def send_due_reminders(session: Session, *, now: datetime | None = None) -> list[ReminderSent]:
    """Remind every account that is due, one transaction each; `now` lets tests move time.

    Commits as it goes: call it with no transaction of your own open. Each account is locked
    and checked again before it is reminded, so two runs at once remind it once.
    """
    now = now or utcnow()
    policy = ReminderPolicy.from_config(current_app.config)
    sent: list[ReminderSent] = []
    for account_id in candidate_ids(session, now, policy):
        with unit_of_work(session):
            account = _locked_account(session, account_id)
            reason = reminder_due(account, now, policy) if account is not None else None
            if account is not None and reason is not None:
                sent.append(send_reminder(session, account, reason, now))
    return sent


def _locked_account(session: Session, account_id: int) -> Account | None:
    # Lock the bare row: FOR UPDATE cannot cover the outer joins the Account mapper adds.
    session.execute(select(Account.id).where(Account.id == account_id).with_for_update())
    return session.get(Account, account_id, populate_existing=True)


@click.command("send-reminders")
@click.option(
    "--now",
    type=ISO_DATETIME,
    default=None,
    help="Pretend it is this time (ISO 8601, UTC without an offset); for testing.",
)
@with_appcontext
def send_reminders_command(now: datetime | None) -> None:
    """Queue reminder emails for customers who have not opened their link after
    REMINDER_NOT_OPENED_DAYS, or not finished after REMINDER_NOT_FINISHED_DAYS (at most
    REMINDER_MAX each). Each reminder carries a new link; the old one stops working.
    Run it daily; `outbox send` delivers the emails."""
    sent = send_due_reminders(get_db(), now=now)
    for reminder in sent:
        click.echo(
            f"reminder {reminder.number} ({reminder.reason}) for account "
            f"{reminder.account_id} to {reminder.to}"
        )
    click.echo(f"Queued {len(sent)} reminder(s).")


COMMANDS: list[click.Command] = [send_reminders_command]
