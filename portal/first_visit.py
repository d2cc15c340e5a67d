"""Feedback after the first visit: the day after it, the customer gets one email asking "Did
your first visit match what we agreed?" with two one-tap answers (Yes / Not quite). Each opens
a page with that answer chosen and a comment box; only the page's submit button records it
(email scanners follow links, so a GET changes nothing). The link is signed, carries a nonce
whose hash is kept on the feedback row, and is used up by the answer. "Not quite" lands in the
office inbox as a follow-up. One feedback row (and email) per account, ever: the database's
unique account_id holds that, also for two workers at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal import follow_ups, links, record, technicians
from portal.company import company_today, get_company
from portal.db import get_db, unit_of_work, utcnow
from portal.mail import queue_email
from portal.models import Account, AccountStatus, FirstVisitFeedback
from portal.outbox import ISO_DATETIME

PURPOSE = "first-visit-feedback"
YES, NOT_QUITE = "yes", "not_quite"
ANSWERS = {YES: "Yes", NOT_QUITE: "Not quite"}
COMMENT_MAX = 1000
FOLLOW_UP_KIND = "first_visit_feedback"
# A first visit further back than this gets no email: after a worker outage, or when feedback
# is first deployed, nobody is asked about a visit weeks ago.
LATEST_DAYS_AFTER = 7


class FeedbackError(ValueError):
    """The answer was refused, with the words to show; nothing was written."""


class AlreadyAnswered(FeedbackError):
    """The link was used: the first answer stands."""


def link_max_age() -> timedelta:
    return timedelta(days=current_app.config.get("FEEDBACK_LINK_MAX_AGE_DAYS", 30))


def feedback_url(token: str, answer: str) -> str:
    return links.public_url("feedback.question", token=token, answer=answer)


def due_account_ids(session: Session, today: datetime | None = None) -> list[int]:
    """Accounts whose first visit was yesterday (or up to LATEST_DAYS_AFTER days ago), live,
    not cancelled, past draft, and never asked: a range of the first-visit index."""
    day = company_today(today)
    return list(
        session.scalars(
            select(Account.id)
            .where(
                Account.first_visit <= day - timedelta(days=1),
                Account.first_visit >= day - timedelta(days=LATEST_DAYS_AFTER),
                Account.deleted_at.is_(None),
                Account.cancelled_at.is_(None),
                Account.status != AccountStatus.DRAFT.value,
                ~select(FirstVisitFeedback.id).where(FirstVisitFeedback.account_id == Account.id).exists(),
            )
            .order_by(Account.first_visit, Account.id)
        )
    )


def ask(session: Session, account: Account) -> FirstVisitFeedback:
    """Queue the one feedback email and record it. The caller commits; a second ask for the
    same account fails on the unique account_id."""
    nonce = secrets.token_urlsafe(24)
    feedback = FirstVisitFeedback(
        account_id=account.id,
        nonce_hash=links.hash_nonce(nonce),
        technician_id=technicians.technician_of(session, account),
    )
    session.add(feedback)
    session.flush()
    token = links.serializer(PURPOSE).dumps({"a": account.id, "n": nonce})
    email = queue_email(
        session,
        template="first_visit_feedback",
        to=account.customer.email,
        subject=f"{get_company().name}: did your first visit match what we agreed?",
        context={
            "account": account,
            "yes_url": feedback_url(token, YES),
            "not_quite_url": feedback_url(token, NOT_QUITE),
            "expires_days": link_max_age().days,
        },
        account=account,
    )
    record.append(
        session,
        account,
        event="first_visit_feedback_sent",
        actor="system",
        details={"email_id": email.id},
    )
    return feedback


def send_due(session: Session, *, now: datetime | None = None) -> list[int]:
    """Ask every account that is due, one transaction each; the ids asked. Commits as it goes:
    call it with no transaction of your own open. Two runs at once ask each account once (the
    loser's insert hits the unique account_id and is rolled back)."""
    asked: list[int] = []
    for account_id in due_account_ids(session, now):
        try:
            with unit_of_work(session):
                account = session.get(Account, account_id)
                if account is not None:
                    ask(session, account)
                    asked.append(account_id)
        except IntegrityError:
            continue  # another run asked it first
    return asked


@dataclass(frozen=True)
class FeedbackLink:
    status: links.LinkStatus
    feedback: FirstVisitFeedback | None = None


def check(session: Session, token: str) -> FeedbackLink:
    """The feedback row a link opens, or why not (expired; invalid: tampered, another purpose,
    unknown or deleted account, not this account's nonce)."""
    payload = links.load_payload(token, PURPOSE, link_max_age(), a=int, n=str)
    if isinstance(payload, links.LinkStatus):
        return FeedbackLink(payload)
    feedback = session.scalars(
        select(FirstVisitFeedback).where(FirstVisitFeedback.account_id == payload["a"])
    ).first()
    if (
        feedback is None
        or feedback.account.deleted_at is not None
        or not secrets.compare_digest(feedback.nonce_hash, links.hash_nonce(payload["n"]))
    ):
        return FeedbackLink(links.LinkStatus.INVALID)
    return FeedbackLink(links.LinkStatus.OK, feedback)


def answer(session: Session, feedback: FirstVisitFeedback, choice: str, comment: str) -> None:
    """Record the customer's answer, once. "Not quite" raises a follow-up in the office inbox."""
    if feedback.answered_at is not None:
        raise AlreadyAnswered("You have answered already: thank you.")
    if choice not in ANSWERS:
        raise FeedbackError("Choose Yes or Not quite.")
    comment = (comment or "").strip()
    if len(comment) > COMMENT_MAX:
        raise FeedbackError(f"Please keep the comment under {COMMENT_MAX:,} characters.")
    feedback.answer = choice
    feedback.comment = comment
    feedback.answered_at = utcnow()
    account = feedback.account
    record.append(
        session,
        account,
        event="first_visit_feedback",
        actor="customer",
        confirmed_value=ANSWERS[choice],
        note=comment,
        details={"answer": choice},
    )
    if choice == NOT_QUITE:
        follow_ups.raise_follow_up(
            session,
            account,
            FOLLOW_UP_KIND,
            "The first visit did not quite match what was agreed",
            detail=comment,
            key=f"feedback:{feedback.id}",
            actor="customer",
        )


@click.command("send-feedback-requests")
@click.option(
    "--now",
    type=ISO_DATETIME,
    default=None,
    help="Pretend it is this time (ISO 8601, UTC without an offset); for testing.",
)
@with_appcontext
def send_feedback_command(now: datetime | None) -> None:
    """Queue the "did your first visit match what we agreed?" email for every account whose
    first visit was yesterday (up to a week back), once per account ever. The worker runs it
    daily; `outbox send` delivers the emails."""
    asked = send_due(get_db(), now=now)
    click.echo(f"Queued {len(asked)} first-visit feedback email(s).")


COMMANDS: list[click.Command] = [send_feedback_command]
