"""Decisions after the customer has spoken: change requests, the office's answers to them,
staff changes to an agreed value, and the one email per account that tells the customer.

Every decision is a service record entry (through portal.record) plus a DecisionNotice; the
worker (`send_due_decision_emails`) sends all of an account's waiting notices as one email once
the oldest is DECISION_EMAIL_DELAY_SECONDS old, so three decisions in a minute are one email.
A difference's resolution (portal.differences) is a decision too and leaves a notice the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal import access, access_card, deliverables, links, record
from portal.company import company_today, get_company
from portal.db import utcnow
from portal.handoffs import display_value
from portal.mail import queue_email
from portal.models import (
    Account,
    AccountStatus,
    ChangeRequest,
    ChangeRequestStatus,
    DecisionNotice,
    Outcome,
    PromiseItem,
    PromiseKind,
    RecordEntry,
    StaffUser,
)
from portal.record_story import DECISION_EVENTS, told_customer
from portal.secret_codes import ACCESS_LABEL, BLANKED, HIDDEN_LEFT, blank_codes, is_secret, mailed_value
from portal.validation import normalise_weekdays

OPEN = ChangeRequestStatus.OPEN.value


class DecisionError(ValueError):
    """The decision cannot be made as asked (decided already, not allowed, a bad value)."""


def notify(session: Session, account: Account, entry: RecordEntry) -> None:
    """The customer hears of this decision in the next batch email."""
    session.add(DecisionNotice(account_id=account.id, entry_id=entry.id))


# -- the customer asks ---------------------------------------------------------------------------


def open_request(
    session: Session,
    account: Account,
    item: PromiseItem | None,
    requested: str,
    effective: date | None,
) -> ChangeRequest:
    """A signed customer's request to change one promise (or "something else"): an open row
    for the inbox and its record entry, in the caller's transaction."""
    change = ChangeRequest(
        account_id=account.id,
        item_id=item.id if item is not None else None,
        requested_value=requested,
        effective_date=effective,
    )
    session.add(change)
    record.append(
        session,
        account,
        event="change_requested",
        actor="customer",
        item=item,
        promised_value=item.promised_value if item else None,
        note=requested,
        details={
            "requested": requested,
            **({"effective_date": effective.isoformat()} if effective else {}),
        },
    )
    return change


# -- the office decides --------------------------------------------------------------------------


def find_request(session: Session, user: StaffUser, request_id: int) -> ChangeRequest | None:
    """The change request if its account is in the user's scope (else None: a 404)."""
    return session.scalars(
        select(ChangeRequest)
        .join(Account, Account.id == ChangeRequest.account_id)
        .where(ChangeRequest.id == request_id, *access.conditions(user))
    ).first()


def _open_for_decision(session: Session, user: StaffUser, request_id: int) -> ChangeRequest:
    if not access.allows(user, access.Action.RESOLVE):
        raise DecisionError("Deciding a change request is for the office.")
    change = session.get(ChangeRequest, request_id, with_for_update={"of": ChangeRequest})
    if change is None or find_request(session, user, request_id) is None:
        raise DecisionError("That change request is not yours to decide.")
    session.refresh(change, ["status"])
    if change.status != OPEN:
        raise DecisionError("That change request was decided already.")
    return change


def agreed_value(kind: str, value: str) -> str:
    """A value as the promise keeps it: visit days as weekday names, a first visit as a date."""
    value = value.strip()
    if not value:
        raise DecisionError("Enter the value you agreed with the customer.")
    if BLANKED in value:
        raise DecisionError(HIDDEN_LEFT)
    if kind == PromiseKind.VISIT_DAY.value:
        days = normalise_weekdays(value)
        if days is None:
            raise DecisionError("Enter the visit day(s) as weekday names, like Tuesday.")
        return days
    if kind == PromiseKind.START_DATE.value:
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise DecisionError("Enter the first visit as a date (YYYY-MM-DD).") from None
    return value


def _set_value(
    session: Session,
    account: Account,
    item: PromiseItem,
    staff: StaffUser,
    *,
    event: str,
    value: str,
    note: str,
    effective: date | None,
    details: dict[str, object],
) -> RecordEntry:
    """The one way an agreed value changes after signing: a record entry that is the item's
    new state, dated when the change starts later than today."""
    state = next(s for s in record.item_states(session, account) if s.item.id == item.id)
    later = effective is not None and effective > company_today()
    if item.kind == PromiseKind.START_DATE.value:
        account.first_visit = date.fromisoformat(value)
        deliverables.plan_account(session, account)  # first-visit promises move with it
    entry = record.append(
        session,
        account,
        event=event,
        actor=f"staff:{staff.id}",
        item=item,
        promised_value=item.promised_value,
        confirmed_value=value,
        outcome=Outcome.AGREED.value,
        note=note,
        details={
            **details,
            "previous_value": state.current_value,
            **({"effective_from": effective.isoformat()} if later and effective else {}),
        },
    )
    if item.kind == PromiseKind.GATE_ACCESS.value and state.current_value:
        access_card.agree_gate(
            session,
            item,
            state.current_value,
            value,
            effective if later and effective else company_today(),
            actor=f"staff:{staff.id}",
        )
    notify(session, account, entry)
    return entry


def accept_request(
    session: Session, request_id: int, staff: StaffUser, value: str | None = None, note: str = ""
) -> RecordEntry:
    """The requested value (or the value the office agreed with the customer, when they worded
    it loosely) becomes the agreed value from the customer's date, or now."""
    change = _open_for_decision(session, staff, request_id)
    account = change.account
    entry: RecordEntry
    if change.item is None:
        entry = record.append(
            session,
            account,
            event="change_accepted",
            actor=f"staff:{staff.id}",
            note=note.strip(),
            details={"request_id": change.id, "requested": change.requested_value},
        )
        notify(session, account, entry)
    else:
        agreed = agreed_value(change.item.kind, value if value is not None else change.requested_value)
        entry = _set_value(
            session,
            account,
            change.item,
            staff,
            event="change_accepted",
            value=agreed,
            note=note.strip(),
            effective=change.effective_date,
            details={"request_id": change.id, "requested": change.requested_value},
        )
    _decided(change, ChangeRequestStatus.ACCEPTED, staff, note)
    return entry


def decline_request(session: Session, request_id: int, staff: StaffUser, note: str) -> RecordEntry:
    """Keep what is agreed; the note tells the customer why."""
    if not note.strip():
        raise DecisionError("Say why, in words the customer will read.")
    change = _open_for_decision(session, staff, request_id)
    account, item = change.account, change.item
    kept = None
    if item is not None:
        kept = next(s for s in record.item_states(session, account) if s.item.id == item.id).current_value
    entry = record.append(
        session,
        account,
        event="change_declined",
        actor=f"staff:{staff.id}",
        item=item,
        promised_value=item.promised_value if item else None,
        note=note.strip(),
        details={
            "request_id": change.id,
            "requested": change.requested_value,
            **({"previous_value": kept} if kept is not None else {}),
        },
    )
    notify(session, account, entry)
    _decided(change, ChangeRequestStatus.DECLINED, staff, note)
    return entry


def _decided(change: ChangeRequest, status: ChangeRequestStatus, staff: StaffUser, note: str) -> None:
    change.status = status.value
    change.staff_note = note.strip()
    change.decided_by_id = staff.id
    change.decided_at = utcnow()


def change_agreed(
    session: Session,
    account: Account,
    item_id: int,
    staff: StaffUser,
    value: str,
    note: str,
    effective: date | None = None,
) -> RecordEntry:
    """After signing, the office changes an agreed value itself (the customer is told)."""
    if not access.may(staff, access.Action.RESOLVE, account):
        raise DecisionError("Changing an agreed value is for the office.")
    if account.status != AccountStatus.SIGNED.value:
        raise DecisionError("Before signing, edit the handoff instead.")
    if not note.strip():
        raise DecisionError("Say why, in words the customer will read.")
    item = next((i for i in account.items if i.id == item_id), None)
    if item is None:
        raise DecisionError("That promise is not part of this account.")
    agreed = agreed_value(item.kind, value)
    return _set_value(
        session,
        account,
        item,
        staff,
        event="staff_changed",
        value=agreed,
        note=note.strip(),
        effective=effective,
        details={},
    )


# -- what the customer sees ----------------------------------------------------------------------


@dataclass(frozen=True)
class AgreedLine:
    """One promise on My service: what is agreed now, and how it came to be, in words."""

    label: str
    agreed: str
    story: str
    later: str = ""  # "Side gate, code 9911 from Thursday, December 10, 2026"
    waiting: bool = False  # the customer's answer waits for the office
    kept: str = ""  # a deliverable's state: "Done on April 28, 2027. Next: July 2027"


@dataclass(frozen=True)
class OpenRequest:
    label: str
    requested: str
    effective: date | None
    created_at: datetime


def agreed_lines(session: Session, account: Account, today: date) -> list[AgreedLine]:
    """Each promise's agreed value for today, with the story of its latest decision (or the
    customer's own answer when nothing was decided since): two queries."""
    states = record.item_states(session, account)
    decided = _latest_decisions(session, account.id)
    kept = deliverables.customer_states(session, account, today)
    lines = []
    for state in states:
        kind = state.item.kind
        entry = decided.get(state.item.id)
        if entry is None or (state.latest is not None and state.latest.id > entry.id):
            entry = state.latest
        starts = state.effective_from
        later = ""
        if starts is not None and starts > today:
            starting = display_value(starts.isoformat(), "start_date")
            later = f"{display_value(state.current_value, kind)} from {starting}"
        lines.append(
            AgreedLine(
                label=state.item.label,
                agreed=display_value(state.value_on(today), kind),
                story=told_customer(entry, kind) if entry is not None else "",
                later=later,
                waiting=state.outcome in ("changed", "disputed"),
                kept=kept.get(state.item.id, ""),
            )
        )
    return lines


def _latest_decisions(session: Session, account_id: int) -> dict[int, RecordEntry]:
    """The latest decision entry per item (a declined request is not the item's state entry)."""
    latest = (
        select(func.max(RecordEntry.id))
        .where(
            RecordEntry.account_id == account_id,
            RecordEntry.event.in_(DECISION_EVENTS),
            RecordEntry.item_id.is_not(None),
        )
        .group_by(RecordEntry.item_id)
    )
    return {
        entry.item_id: entry
        for entry in session.scalars(select(RecordEntry).where(RecordEntry.id.in_(latest)))
        if entry.item_id is not None
    }


def open_requests(session: Session, account: Account) -> list[OpenRequest]:
    found = session.scalars(
        select(ChangeRequest)
        .where(ChangeRequest.account_id == account.id, ChangeRequest.status == OPEN)
        .order_by(ChangeRequest.id)
    )
    return [
        OpenRequest(
            label=change.item.label if change.item else "Something else",
            requested=change.requested_value,
            effective=change.effective_date,
            created_at=change.created_at,
        )
        for change in found
    ]


# -- one email per account per batch -------------------------------------------------------------


@dataclass(frozen=True)
class MailedDecision:
    """One decision as the email shows it: never a gate, lock or alarm code."""

    label: str
    agreed: str
    sentence: str


def _mailed(entry: RecordEntry, item: PromiseItem | None, agreed_now: str | None) -> MailedDecision:
    if item is None:
        label = "From the office" if entry.event == "follow_up_closed" else "Your request"
        return MailedDecision(label, "", told_customer(entry, "", quoted=blank_codes))
    secret = is_secret(item.kind, item.promised_value) or any(
        is_secret(item.kind, v)
        for v in (entry.confirmed_value, agreed_now, *(str(x) for x in (entry.details or {}).values()))
    )
    return MailedDecision(
        ACCESS_LABEL if secret else item.label,
        mailed_value(agreed_now, item.kind)
        if not secret
        else mailed_value("", PromiseKind.GATE_ACCESS.value),
        told_customer(entry, item.kind, shown=mailed_value, quoted=blank_codes, secret=secret),
    )


def send_due_decision_emails(session: Session, now: datetime | None = None) -> int:
    """Queue one email per account whose oldest unsent decision is older than the delay, with
    every decision waiting for it; the caller commits. Returns how many emails were queued."""
    now = now or utcnow()
    delay = timedelta(seconds=current_app.config["DECISION_EMAIL_DELAY_SECONDS"])
    due = list(
        session.scalars(
            select(DecisionNotice.account_id)
            .where(DecisionNotice.emailed_at.is_(None))
            .group_by(DecisionNotice.account_id)
            .having(func.min(DecisionNotice.created_at) <= now - delay)
        )
    )
    queued = 0
    for account_id in due:
        # Two workers: the second skips what the first holds (PostgreSQL; SQLite writes one at a time).
        notices = list(
            session.scalars(
                select(DecisionNotice)
                .where(DecisionNotice.account_id == account_id, DecisionNotice.emailed_at.is_(None))
                .order_by(DecisionNotice.id)
                .with_for_update(skip_locked=True)
            )
        )
        if not notices:
            continue
        for notice in notices:
            notice.emailed_at = now
        account = session.get(Account, account_id)
        if account is None or account.deleted_at is not None:
            continue
        entries = list(
            session.scalars(
                select(RecordEntry)
                .where(RecordEntry.id.in_([n.entry_id for n in notices]))
                .order_by(RecordEntry.seq)
            )
        )
        states = {state.item.id: state for state in record.item_states(session, account)}
        items = {item.id: item for item in account.all_items}
        decisions = []
        for entry in entries:
            item = items.get(entry.item_id) if entry.item_id is not None else None
            state = states.get(item.id) if item is not None else None
            decisions.append(_mailed(entry, item, state.current_value if state else None))
        company = get_company()
        queue_email(
            session,
            template="decisions",
            to=account.customer.email,
            account=account,
            subject=f"{company.name}: what we decided",
            context={
                "account": account,
                "decisions": decisions,
                "service_url": links.public_url("welcome.my_service"),
            },
        )
        queued += 1
    return queued
