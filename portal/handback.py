"""Service takes over from sales: the office acknowledges each handoff before the first visit,
or sends a question back to the salesperson, who answers in the app; the office may also mark
an account cancelled, with a reason. Every step is a service record entry.

The caller checks the policy (access.Action.ACKNOWLEDGE / CANCEL, access.may_answer) and
commits: one unit of work per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import access, keyset, record
from portal.db import utcnow
from portal.handoffs import staff_actor
from portal.models import Account, HandoffQuestion, RecordEntry, StaffUser

# How near a first visit must be for an unacknowledged handoff to show on the dashboard.
ACKNOWLEDGE_WITHIN_DAYS = 3
QUESTION_MAX = 2000
ANSWER_MAX = 2000
REASON_MAX = 500
GOAL_MAX = 1000


class HandbackError(ValueError):
    """A step refused, with the words to show; nothing was written."""


def _text(value: str, limit: int, missing: str, what: str) -> str:
    text = (value or "").strip()
    if not text:
        raise HandbackError(missing)
    if len(text) > limit:
        raise HandbackError(f"Keep the {what} under {limit:,} characters (it has {len(text):,}).")
    return text


def acknowledge(session: Session, account: Account, staff: StaffUser, note: str = "") -> None:
    """Service has read the handoff and takes it from here."""
    if account.cancelled_at is not None:
        raise HandbackError("This account is cancelled.")
    if account.acknowledged_at is not None:
        raise HandbackError("This handoff was acknowledged already.")
    note = (note or "").strip()
    if len(note) > QUESTION_MAX:
        raise HandbackError(f"Keep the note under {QUESTION_MAX:,} characters.")
    account.acknowledged_at = utcnow()
    record.append(session, account, event="handoff_acknowledged", actor=staff_actor(staff), note=note)


def ask(session: Session, account: Account, staff: StaffUser, question: str) -> HandoffQuestion:
    """A question back to the account's salesperson; it waits on their dashboard."""
    text = _text(question, QUESTION_MAX, "Write the question for the salesperson.", "question")
    if account.salesperson_id is None:
        raise HandbackError("This handoff has no salesperson to ask.")
    asked = HandoffQuestion(account_id=account.id, question=text, asked_by_id=staff.id)
    session.add(asked)
    session.flush()
    record.append(
        session,
        account,
        event="handoff_question",
        actor=staff_actor(staff),
        note=text,
        details={"question_id": asked.id},
    )
    return asked


def answer(session: Session, question: HandoffQuestion, staff: StaffUser, text: str) -> None:
    """The salesperson's answer, once."""
    reply = _text(text, ANSWER_MAX, "Write your answer.", "answer")
    if question.answered_at is not None:
        raise HandbackError("That question was answered already.")
    question.answer = reply
    question.answered_by_id = staff.id
    question.answered_at = utcnow()
    record.append(
        session,
        question.account,
        event="handoff_answer",
        actor=staff_actor(staff),
        note=reply,
        details={"question_id": question.id},
    )


def cancel(session: Session, account: Account, staff: StaffUser, reason: str) -> None:
    """The customer left: the account leaves the day list and the inbox, and the reports
    count it as early churn when it was within 90 days of the sale."""
    text = _text(reason, REASON_MAX, "Say why the account is cancelled.", "reason")
    if account.cancelled_at is not None:
        raise HandbackError("This account is cancelled already.")
    account.cancelled_at = utcnow()
    account.cancel_reason = text
    record.append(session, account, event="account_cancelled", actor=staff_actor(staff), note=text)


def questions_for(session: Session, account: Account) -> list[HandoffQuestion]:
    return list(
        session.scalars(
            select(HandoffQuestion)
            .where(HandoffQuestion.account_id == account.id)
            .order_by(HandoffQuestion.id)
        )
    )


def find_question(session: Session, account: Account, question_id: int) -> HandoffQuestion | None:
    """The question, if it belongs to this account (another account's id finds nothing)."""
    return session.scalars(
        select(HandoffQuestion).where(
            HandoffQuestion.id == question_id, HandoffQuestion.account_id == account.id
        )
    ).first()


def waiting_for(session: Session, user: StaffUser, limit: int = 20) -> list[HandoffQuestion]:
    """Questions the office asked `user` about handoffs they sold, oldest first."""
    return list(
        session.scalars(
            select(HandoffQuestion)
            .join(Account, Account.id == HandoffQuestion.account_id)
            .where(
                HandoffQuestion.answered_at.is_(None),
                Account.salesperson_id == user.id,
                *access.in_service(user),
            )
            .order_by(HandoffQuestion.asked_at, HandoffQuestion.id)
            .limit(limit)
        )
    )


@dataclass(frozen=True)
class Unacknowledged:
    count: int  # capped (keyset.capped_count): shown with the count_text filter
    accounts: list[Account]
    within_days: int


def unacknowledged_soon(session: Session, user: StaffUser, today: date, limit: int = 20) -> Unacknowledged:
    """Handoffs not yet acknowledged whose first visit is today or within the next
    ACKNOWLEDGE_WITHIN_DAYS days, soonest first: a range of ix_accounts_unacknowledged, so
    both the capped count and the list stay small at any number of accounts."""
    last = today + timedelta(days=ACKNOWLEDGE_WITHIN_DAYS)
    near = (
        Account.acknowledged_at.is_(None),
        Account.first_visit >= today,
        Account.first_visit <= last,
        *access.in_service(user),
    )
    count = keyset.capped_count(session, select(Account.id).where(*near))
    accounts = list(
        session.scalars(select(Account).where(*near).order_by(Account.first_visit, Account.id).limit(limit))
    )
    return Unacknowledged(count, accounts, ACKNOWLEDGE_WITHIN_DAYS)


@dataclass(frozen=True)
class Review:
    """Where the handoff's review stands, for the account page."""

    acknowledged_by: str  # a name, "" while not acknowledged
    acknowledged_note: str
    questions: list[HandoffQuestion]
    names: dict[int, str]  # staff id -> name, for who asked and who answered


def review(session: Session, account: Account) -> Review:
    """Who acknowledged the handoff (from its record entry) and every question on it."""
    questions = questions_for(session, account)
    entry = session.scalars(
        select(RecordEntry)
        .where(RecordEntry.account_id == account.id, RecordEntry.event == "handoff_acknowledged")
        .order_by(RecordEntry.seq.desc())
        .limit(1)
    ).first()
    ids = {q.asked_by_id for q in questions} | {q.answered_by_id for q in questions}
    actor_id = entry.actor.partition(":")[2] if entry is not None else ""
    if actor_id.isdigit():
        ids.add(int(actor_id))
    wanted = [i for i in ids if i is not None]
    names = (
        {u.id: u.display_name for u in session.scalars(select(StaffUser).where(StaffUser.id.in_(wanted)))}
        if wanted
        else {}
    )
    by = (
        names.get(int(actor_id), "a former colleague")
        if actor_id.isdigit()
        else ("the portal" if entry else "")
    )
    return Review(by, entry.note if entry is not None else "", questions, names)
