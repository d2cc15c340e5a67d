"""`charge-autopay`: charge open invoices of autopay accounts to the saved card, off-session.

Each invoice is charged in its own transaction, under a row lock. The idempotency key names the
invoice and the attempt, and the attempt counter only moves once Stripe has answered, so a run
that timed out (Stripe may or may not have charged) repeats the same key next time and Stripe
answers with the first result instead of charging twice.

Outcomes: Stripe accepted the charge -> the invoice is "processing" until the verified
`payment_intent.succeeded` event marks it paid (and sends the receipt); declined or needing the
customer's authentication -> an email with a pay link and a link to update the card, and a
record entry; a Stripe error or timeout -> a `stripe_error` entry, the invoice untouched, and a
non-zero exit so the scheduler notices.

A declined invoice is tried again on the company's retry days (Settings, "3,5,7": days after
the first decline), each try by this same path with the next attempt's key; a new card starts
afresh. When the last retry fails too, the office gets a `payment_failed` follow-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from portal import follow_ups, record
from portal.company import DEFAULT_RETRY_DAYS, get_company, parse_retry_days
from portal.db import unit_of_work, utcnow
from portal.models import Account, Invoice
from portal.money import format_money
from portal.payments import invoices as invoice_service
from portal.payments.billing import CARD, OPEN, PROCESSING, billing_choice, card_text
from portal.payments.cards import lock_account
from portal.payments.gateway import CardDeclined, Gateway, PaymentProviderError


@dataclass(frozen=True)
class Charged:
    invoice_number: str
    outcome: str  # submitted, declined, authentication_required, stripe_error, skipped
    message: str = ""
    payment_intent: dict[str, Any] | None = None


def retry_days() -> tuple[int, ...]:
    try:
        saved = get_company().autopay_retry_days
        return DEFAULT_RETRY_DAYS if saved is None else parse_retry_days(saved)
    except ValueError:  # saved before the form checked it
        return DEFAULT_RETRY_DAYS


def run(session: Session, gateway: Gateway, now: datetime | None = None) -> list[Charged]:
    """Charge every candidate, each in its own unit of work: what `charge-autopay` does."""
    moment = now or utcnow()
    return [charge(session, invoice_id, gateway, moment) for invoice_id in candidates(session, moment)]


def candidates(session: Session, now: datetime | None = None) -> list[int]:
    """Open invoices of accounts with a saved card whose billing choice is card autopay: never
    tried, or declined and due for a retry."""
    moment = now or utcnow()
    rows = session.execute(
        select(Invoice.id, Invoice.account_id)
        .join(Account, Account.id == Invoice.account_id)
        .where(
            Invoice.status == OPEN,
            Invoice.total_cents > 0,  # a plan invoice a promotion made free: nothing to charge
            or_(Invoice.autopay_failed_at.is_(None), Invoice.autopay_retry_at <= moment),
            Account.deleted_at.is_(None),
            Account.stripe_customer_id.is_not(None),
            Account.stripe_payment_method_id.is_not(None),
        )
        .order_by(Invoice.due_date, Invoice.id)
    ).all()
    autopay: dict[int, bool] = {}
    chosen = []
    for invoice_id, account_id in rows:
        if account_id not in autopay:
            account = session.get(Account, account_id)
            autopay[account_id] = account is not None and billing_choice(session, account) == CARD
        if autopay[account_id]:
            chosen.append(invoice_id)
    return chosen


def idempotency_key(invoice: Invoice, attempt: int) -> str:
    # The creation time keeps keys apart across installations sharing one Stripe account.
    return f"autopay-{invoice.id}-{invoice.created_at:%Y%m%d%H%M%S%f}-{attempt}"


class _StripeFailed(Exception):
    def __init__(self, account: Account, invoice: Invoice, error: PaymentProviderError) -> None:
        super().__init__(error.message)
        self.account, self.invoice, self.error = account, invoice, error


def charge(session: Session, invoice_id: int, gateway: Gateway, now: datetime | None = None) -> Charged:
    """One invoice charged in a unit of work of its own; a Stripe error rolls it back (the next
    run repeats the same key) and is recorded for staff in another."""
    try:
        with unit_of_work(session):
            return _charge(session, invoice_id, gateway, now or utcnow())
    except _StripeFailed as failed:
        number = failed.invoice.number
        with unit_of_work(session):
            invoice_service.record_stripe_error(session, failed.account, failed.error, invoice=failed.invoice)
        return Charged(number, "stripe_error", failed.error.details.get("message", failed.error.message))


def _charge(session: Session, invoice_id: int, gateway: Gateway, now: datetime) -> Charged:
    invoice = invoice_service.lock_invoice(session, invoice_id)
    if invoice is None or invoice.status != OPEN:
        return Charged(str(invoice_id), "skipped", "no longer open")
    if invoice.autopay_failed_at is not None and (
        invoice.autopay_retry_at is None or invoice.autopay_retry_at > now
    ):
        return Charged(invoice.number, "skipped", "declined; no retry due")
    if invoice.checkout_expires_at is not None and invoice.checkout_expires_at > now:
        return Charged(invoice.number, "skipped", "the customer has a payment page open")
    account = lock_account(session, invoice.account_id)
    assert account is not None
    attempt = invoice.autopay_attempts + 1
    metadata = {
        "invoice_id": str(invoice.id),
        "account_id": str(account.id),
        "invoice_number": invoice.number,
        "autopay_attempt": str(attempt),
    }
    try:
        intent = gateway.charge_off_session(
            {
                "amount": invoice.total_cents,
                "currency": invoice.currency.lower(),
                "customer": account.stripe_customer_id,
                "payment_method": account.stripe_payment_method_id,
                "off_session": True,
                "confirm": True,
                "description": f"Invoice {invoice.number}",
                "metadata": metadata,
            },
            idempotency_key(invoice, attempt),
        )
    except CardDeclined as declined:
        return _declined(session, account, invoice, attempt, declined, now)
    except PaymentProviderError as error:
        raise _StripeFailed(account, invoice, error) from error
    invoice.autopay_attempts = attempt
    invoice.autopay_retry_at = None
    invoice.stripe_payment_intent_id = intent["id"]
    status = intent.get("status")
    if status in ("succeeded", "processing"):
        invoice.status = PROCESSING  # paid only when the verified event says so
    record.append(
        session,
        account,
        event="autopay_submitted",
        actor="system",
        confirmed_value=f"{invoice.number}: {format_money(invoice.total_cents, invoice.currency)}",
        note=f"Charged {card_text(account) or 'the saved card'}; Stripe says {status}.",
        details={
            "invoice_id": invoice.id,
            "number": invoice.number,
            "payment_intent": intent["id"],
            "status": status,
            "attempt": attempt,
        },
    )
    return Charged(invoice.number, "submitted", f"Stripe says {status}", intent)


def _declined(
    session: Session, account: Account, invoice: Invoice, attempt: int, declined: CardDeclined, now: datetime
) -> Charged:
    """Stripe answered: the card was declined or needs the customer. Tell them, never silently;
    schedule the next try, or after the last one hand the invoice to the office."""
    outcome = "authentication_required" if declined.needs_authentication else "declined"
    invoice.autopay_attempts = attempt
    if invoice.autopay_failed_at is None:
        invoice.autopay_failed_at = now
        invoice.autopay_failures = 0
    invoice.autopay_failures += 1
    days = retry_days()
    invoice.autopay_retry_at = (
        invoice.autopay_failed_at + timedelta(days=days[invoice.autopay_failures - 1])
        if invoice.autopay_failures <= len(days)
        else None
    )
    if declined.payment_intent_id:
        invoice.stripe_payment_intent_id = declined.payment_intent_id
    reason = (
        "Your bank asked for you to confirm this payment yourself."
        if declined.needs_authentication
        else "Your card was declined."
    )
    email = invoice_service.send_payment_failed(
        session,
        account,
        invoice,
        reason=reason,
        code="authentication_required" if declined.needs_authentication else declined.code,
        retry_at=invoice.autopay_retry_at,
        final=invoice.autopay_retry_at is None,
    )
    retry = (
        f"; next try {invoice.autopay_retry_at:%Y-%m-%d}" if invoice.autopay_retry_at else "; no more tries"
    )
    record.append(
        session,
        account,
        event="autopay_failed",
        actor="system",
        note=f"{invoice.number}: {reason} The customer was emailed a pay link{retry}.",
        details={
            "invoice_id": invoice.id,
            "number": invoice.number,
            "attempt": attempt,
            "failures": invoice.autopay_failures,
            "retry_at": invoice.autopay_retry_at.isoformat() if invoice.autopay_retry_at else None,
            "email_id": email.id,
            **declined.details,
        },
    )
    if invoice.autopay_retry_at is None:
        follow_ups.raise_follow_up(
            session,
            account,
            "payment_failed",
            f"Autopay failed {invoice.autopay_failures} times for {invoice.number} "
            f"({format_money(invoice.total_cents, invoice.currency)})",
            detail=f"Last answer from the bank: {declined.details.get('message') or reason} "
            "The customer was emailed a pay link each time; call them or agree another way to pay.",
            key=f"invoice:{invoice.id}",
        )
    return Charged(invoice.number, outcome, declined.details.get("message") or reason)
