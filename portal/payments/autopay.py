"""`charge-autopay`: charge open invoices of autopay accounts to the saved card, off-session.

Each invoice is charged in its own transaction, under a row lock. The idempotency key names the
invoice and the attempt, and the attempt counter only moves once Stripe has answered, so a run
that timed out (Stripe may or may not have charged) repeats the same key next time and Stripe
answers with the first result instead of charging twice.

Outcomes: Stripe accepted the charge -> the invoice is "processing" until the verified
`payment_intent.succeeded` event marks it paid (and sends the receipt); declined or needing the
customer's authentication -> an email with a pay link and a record entry, and autopay leaves the
invoice alone until the customer pays or saves a new card; a Stripe error or timeout -> a
`stripe_error` entry, the invoice untouched, and a non-zero exit so the scheduler notices.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import record
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


def candidates(session: Session) -> list[int]:
    """Open invoices of accounts with a saved card whose billing choice is card autopay."""
    rows = session.execute(
        select(Invoice.id, Invoice.account_id)
        .join(Account, Account.id == Invoice.account_id)
        .where(
            Invoice.status == OPEN,
            Invoice.autopay_failed_at.is_(None),
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
    if invoice is None or invoice.status != OPEN or invoice.autopay_failed_at is not None:
        return Charged(str(invoice_id), "skipped", "no longer open")
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
    """Stripe answered: the card was declined or needs the customer. Tell them, never silently."""
    outcome = "authentication_required" if declined.needs_authentication else "declined"
    invoice.autopay_attempts = attempt
    invoice.autopay_failed_at = now
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
    )
    record.append(
        session,
        account,
        event="autopay_failed",
        actor="system",
        note=f"{invoice.number}: {reason} The customer was emailed a pay link.",
        details={
            "invoice_id": invoice.id,
            "number": invoice.number,
            "attempt": attempt,
            "email_id": email.id,
            **declined.details,
        },
    )
    return Charged(invoice.number, outcome, declined.details.get("message") or reason)
