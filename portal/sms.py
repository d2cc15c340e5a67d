"""Text-message consent (TCPA and the carriers' 10DLC rules): the two disclosures the contact
step shows, phone numbers in one form, and what an inbound text means: an opt-out word withdraws
every text consent given for that number, HELP is answered.

Sending texts is not built; the consent records are the point (portal.consents)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import consents
from portal.models import Account, CompanySettings, RecordEntry

SERVICE_VERSION, MARKETING_VERSION = "sms-service-1", "sms-marketing-1"
VERSIONS = {consents.SMS_SERVICE: SERVICE_VERSION, consents.SMS_MARKETING: MARKETING_VERSION}
SMS_KINDS = (consents.SMS_SERVICE, consents.SMS_MARKETING)
# Any reasonable opt-out is honoured (FCC 2024: stop, quit, end, revoke, opt out, cancel,
# unsubscribe), alone or as the first words of the reply, with the carriers' usual STOPALL.
OPT_OUT_WORDS = (
    "stop",
    "stopall",
    "stop all",
    "quit",
    "end",
    "revoke",
    "opt out",
    "optout",
    "cancel",
    "unsubscribe",
)
HELP_WORDS = ("help", "info")


def service_disclosure(company: CompanySettings, phone: str) -> str:
    number = phone or "the number above"
    return (
        f"Service texts: I agree to receive text messages from {company.name} at {number} about my "
        "pool service: visit reminders and \u201con my way\u201d messages. Up to 8 msgs/month. Msg & data "
        "rates may apply. Reply STOP to opt out, HELP for help. See the Terms and Privacy links below."
    )


def marketing_disclosure(company: CompanySettings, phone: str) -> str:
    number = phone or "the number above"
    return (
        f"Marketing texts: I agree to receive marketing text messages (offers, seasonal tips) from "
        f"{company.name} at {number}, which may be sent by automated means. Consent is not a "
        "condition of purchase. Up to 4 msgs/month. Msg & data rates may apply. Reply STOP to opt "
        "out, HELP for help. See the Terms and Privacy links below."
    )


def disclosure(kind: str, company: CompanySettings, phone: str) -> str:
    return (service_disclosure if kind == consents.SMS_SERVICE else marketing_disclosure)(company, phone)


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def e164(phone: str) -> str:
    """A North American number however it is typed, as +1NXXNXXXXXX; other numbers as + and
    their digits. Empty when there are no digits."""
    digits = re.sub(r"\D", "", phone or "")
    if not digits:
        return ""
    if len(digits) == 10:
        digits = "1" + digits
    return "+" + digits


def _words(body: str) -> str:
    return " ".join(re.sub(r"[^a-z ]", " ", (body or "").lower()).split())


def is_opt_out(body: str) -> bool:
    words = _words(body)
    return any(words == word or words.startswith(word + " ") for word in OPT_OUT_WORDS)


def is_help(body: str) -> bool:
    return _words(body) in HELP_WORDS


def help_reply(company: CompanySettings) -> str:
    contact = " or ".join(part for part in (company.phone, company.email) if part) or "our office"
    return (
        f"{company.name}: pool service texts. For help, contact {contact}. Msg & data rates may apply. "
        "Reply STOP to opt out."
    )


def opt_out_reply(company: CompanySettings) -> str:
    return f"{company.name}: you will get no more text messages from us at this number."


def give(
    session: Session,
    account: Account,
    kind: str,
    phone: str,
    company: CompanySettings,
    channel: consents.Channel,
) -> RecordEntry:
    """A text consent, with the exact words shown for that number."""
    return consents.give(
        session,
        account,
        kind,
        version=VERSIONS[kind],
        text_sha256=text_sha256(disclosure(kind, company, phone)),
        channel=channel,
        phone=e164(phone),
    )


@dataclass(frozen=True)
class Inbound:
    """What an inbound text did: the withdrawals recorded, and the reply (may be empty)."""

    withdrawn: list[RecordEntry]
    reply: str


def accounts_with_number(session: Session, number: str) -> list[Account]:
    """Accounts that were ever given a text consent for this number."""
    if not number:
        return []
    ids = session.scalars(
        select(RecordEntry.account_id)
        .distinct()
        .where(RecordEntry.event == consents.GIVEN, RecordEntry.confirmed_value == number)
    ).all()
    return [account for account in (session.get(Account, i) for i in sorted(ids)) if account is not None]


def handle_inbound(session: Session, sender: str, body: str, company: CompanySettings) -> Inbound:
    """An inbound text (already verified as Twilio's): an opt-out word withdraws every text
    consent in force for the sender's number, on every account; HELP gets the help reply."""
    if is_help(body):
        return Inbound([], help_reply(company))
    if not is_opt_out(body):
        return Inbound([], "")
    number = e164(sender)
    channel = consents.Channel("sms")
    withdrawn = []
    for account in accounts_with_number(session, number):
        current = consents.state(session, account)
        for kind in SMS_KINDS:
            entry = current.get(kind)
            if entry is None or entry.event != consents.GIVEN or entry.confirmed_value != number:
                continue
            done = consents.withdraw_and_tell(
                session,
                account,
                kind,
                channel=channel,
                how=f"texted \u201c{body.strip()[:40]}\u201d",
                words=body.strip()[:160],
            )
            if done is not None:
                withdrawn.append(done)
    return Inbound(withdrawn, opt_out_reply(company))
