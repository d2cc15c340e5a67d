"""Consents: electronic records (E-SIGN), service texts and marketing texts (TCPA).

Each consent given or withdrawn is a service record entry (the one append path), carrying the
disclosure version and the SHA-256 of its exact words, the number it names, the time (the
entry's), and how it came: IP address, user agent and page, or the SMS webhook. The state of a
consent is its latest entry."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import links, record
from portal.access import scoped
from portal.company import get_company
from portal.mail import queue_email
from portal.models import Account, Customer, RecordEntry, StaffUser

E_RECORDS, SMS_SERVICE, SMS_MARKETING = "e_records", "sms_service", "sms_marketing"
KINDS = (E_RECORDS, SMS_SERVICE, SMS_MARKETING)
NAMES = {
    E_RECORDS: "Electronic records",
    SMS_SERVICE: "Service text messages",
    SMS_MARKETING: "Marketing text messages",
}
GIVEN, WITHDRAWN = "consent_given", "consent_withdrawn"
EVENTS = (GIVEN, WITHDRAWN)


@dataclass(frozen=True)
class Channel:
    """Where a consent or withdrawal came from."""

    page: str  # e.g. "welcome/review", "welcome/service", "sms"
    ip_address: str = ""
    user_agent: str = ""

    def details(self) -> dict[str, Any]:
        return {"page": self.page, "ip": self.ip_address, "user_agent": self.user_agent[:500]}


def give(
    session: Session,
    account: Account,
    kind: str,
    *,
    version: str,
    text_sha256: str,
    channel: Channel,
    phone: str = "",
    actor: str = "customer",
) -> RecordEntry:
    return record.append(
        session,
        account,
        event=GIVEN,
        actor=actor,
        confirmed_value=phone or None,
        note=f"{NAMES[kind]}: consent given",
        details={
            "consent": kind,
            "version": version,
            "text_sha256": text_sha256,
            "phone": phone,
            **channel.details(),
        },
    )


def withdraw(
    session: Session,
    account: Account,
    kind: str,
    *,
    channel: Channel,
    actor: str = "customer",
    words: str = "",
) -> RecordEntry | None:
    """Withdraw a consent in force; None (nothing recorded) when it is not in force."""
    latest = state(session, account).get(kind)
    if latest is None or latest.event != GIVEN:
        return None
    phone = str(latest.details.get("phone") or "")
    return record.append(
        session,
        account,
        event=WITHDRAWN,
        actor=actor,
        confirmed_value=phone or None,
        note=f"{NAMES[kind]}: consent withdrawn" + (f" (“{words}”)" if words else ""),
        details={"consent": kind, "phone": phone, "words": words, **channel.details()},
    )


def withdraw_and_tell(
    session: Session, account: Account, kind: str, *, channel: Channel, how: str, words: str = ""
) -> RecordEntry | None:
    """A customer's withdrawal (My service, or an opt-out text): recorded, and the office told,
    for electronic records that paper must be sent from now on."""
    entry = withdraw(session, account, kind, channel=channel, words=words)
    if entry is None:
        return None
    company = get_company()
    # As for difference alerts: the office, and the salesperson who knows the customer.
    seller = account.salesperson.email if account.salesperson else ""
    for address in sorted({a for a in (company.office_email or company.email, seller) if a}):
        queue_email(
            session,
            template="consent_withdrawn",
            to=address,
            account=account,
            subject=f"{account.customer.name} withdrew consent: {NAMES[kind].lower()}",
            context={
                "account": account,
                "consent": NAMES[kind],
                "paper": kind == E_RECORDS,
                "how": how,
                "account_url": links.public_url("staff.account", account_id=account.id),
            },
        )
    return entry


def state(session: Session, account: Account) -> dict[str, RecordEntry]:
    """Each consent's latest entry (given or withdrawn), by kind."""
    latest: dict[str, RecordEntry] = {}
    for entry in session.scalars(
        select(RecordEntry)
        .where(RecordEntry.account_id == account.id, RecordEntry.event.in_(EVENTS))
        .order_by(RecordEntry.seq)
    ):
        kind = entry.details.get("consent")
        if isinstance(kind, str):
            latest[kind] = entry
    return latest


def in_force(session: Session, account: Account, kind: str) -> bool:
    entry = state(session, account).get(kind)
    return entry is not None and entry.event == GIVEN


EXPORT_HEADER = [
    "time_utc",
    "account_id",
    "customer",
    "consent",
    "action",
    "number",
    "disclosure_version",
    "disclosure_sha256",
    "page",
    "ip",
    "user_agent",
    "words",
    "record_seq",
]


def export_rows(session: Session, user: StaffUser, start: date, end: date) -> Iterator[list[object]]:
    """Every consent given or withdrawn from `start` to `end` (inclusive, UTC days) on the
    accounts `user` may see (portal.access), oldest first: the proof kept for each."""
    since = datetime.combine(start, time.min, tzinfo=timezone.utc)
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=timezone.utc)
    query = scoped(
        select(RecordEntry, Customer.name)
        .join(Account, RecordEntry.account_id == Account.id)
        .join(Customer, Account.customer_id == Customer.id)
        .where(RecordEntry.event.in_(EVENTS), RecordEntry.created_at >= since, RecordEntry.created_at < until)
        .order_by(RecordEntry.created_at, RecordEntry.id),
        user,
    )
    for entry, name in session.execute(query):
        details = entry.details or {}
        yield [
            entry.created_at.astimezone(timezone.utc).isoformat(timespec="seconds"),
            entry.account_id,
            name,
            details.get("consent", ""),
            "given" if entry.event == GIVEN else "withdrawn",
            details.get("phone", ""),
            details.get("version", ""),
            details.get("text_sha256", ""),
            details.get("page", ""),
            details.get("ip", ""),
            details.get("user_agent", ""),
            details.get("words", ""),
            entry.seq,
        ]
