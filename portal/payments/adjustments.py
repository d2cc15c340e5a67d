"""Staff void an unpaid invoice or refund a paid one, each with a reason and a record entry.

Void: an open invoice (not while a payment is under way or the customer has Checkout open)
becomes void at once; the statement credits it. Refund: a paid invoice's payment is refunded
through Stripe's refunds API (the form's one-time id is the idempotency key, and the claim of
that id is in the same transaction, so a double submit makes one refund); the invoice is
"refund pending" until Stripe's verified event (`refund.updated` or `charge.refunded`) says the
refund succeeded, and only then refunded. A failed refund puts it back to paid for staff to
follow up. Every step only moves forward, and a repeated event changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from portal import once, record, webhooks
from portal.db import unit_of_work, utcnow
from portal.models import Account, Invoice
from portal.money import format_money
from portal.payments.billing import OPEN, PAID, REFUND_PENDING, REFUNDED, VOID
from portal.payments.gateway import Gateway
from portal.payments.invoices import STRIPE, StripeFacts, lock_invoice

log = logging.getLogger(__name__)

MAX_REASON = 300


class NotAdjustable(Exception):
    """The invoice is not in a state this may be done in: said to staff, nothing changed."""


@dataclass(frozen=True)
class Adjusted:
    invoice: Invoice
    repeated: bool = False  # the same form posted again: nothing new was done
    refund: dict[str, Any] | None = None


def _amount(invoice: Invoice) -> str:
    return f"{invoice.number}: {format_money(invoice.total_cents, invoice.currency)}"


def _webhook(session: Session, event_type: str, invoice: Invoice, reason: str) -> None:
    webhooks.queue_event(
        session,
        event_type,
        {
            "account_id": invoice.account_id,
            "invoice_id": invoice.id,
            "number": invoice.number,
            "external_id": invoice.external_id,
            "total_cents": invoice.total_cents,
            "currency": invoice.currency,
            "reason": reason,
        },
    )


def void_invoice(
    session: Session,
    account: Account,
    invoice_id: int,
    reason: str,
    actor: str,
    form_id: str,
    result_url: str,
    now: datetime | None = None,
) -> Adjusted:
    """In the caller's unit of work. Raises NotAdjustable. `result_url`: where a repeat of the
    same form is sent."""
    moment = now or utcnow()
    invoice = lock_invoice(session, invoice_id)
    assert invoice is not None and invoice.account_id == account.id
    if once.earlier_result(session, form_id):
        return Adjusted(invoice, repeated=True)
    if invoice.status == VOID:
        raise NotAdjustable(f"{invoice.number} is void already.")
    if invoice.status != OPEN:
        raise NotAdjustable(
            f"{invoice.number} is {invoice.status.replace('_', ' ')}: only an unpaid invoice can be "
            "voided. Refund a paid one instead."
        )
    if invoice.checkout_expires_at is not None and invoice.checkout_expires_at > moment:
        raise NotAdjustable(
            f"The customer has the payment page for {invoice.number} open; try again after it expires."
        )
    claim = once.claim(session, form_id, "void_invoice")
    if claim is None:
        return Adjusted(invoice, repeated=True)
    invoice.status = VOID
    invoice.voided_at = moment
    invoice.adjustment_reason = reason
    invoice.autopay_retry_at = None
    once.keep_result(session, claim, result_url)
    record.append(
        session,
        account,
        event="invoice_voided",
        actor=actor,
        confirmed_value=_amount(invoice),
        note=reason,
        details={"invoice_id": invoice.id, "number": invoice.number, "total_cents": invoice.total_cents},
    )
    _webhook(session, "invoice.voided", invoice, reason)
    return Adjusted(invoice)


def refund_invoice(
    session: Session,
    account: Account,
    invoice_id: int,
    reason: str,
    actor: str,
    form_id: str,
    result_url: str,
    gateway: Gateway,
) -> Adjusted:
    """Ask Stripe to refund the invoice's payment; one unit of work of its own, rolled back
    with the claim when Stripe fails (PaymentProviderError), so the same form can try again
    with the same key. Raises NotAdjustable."""
    with unit_of_work(session):
        invoice = lock_invoice(session, invoice_id)
        assert invoice is not None and invoice.account_id == account.id
        if once.earlier_result(session, form_id):
            return Adjusted(invoice, repeated=True)
        if invoice.status in (REFUND_PENDING, REFUNDED):
            raise NotAdjustable(f"{invoice.number} is {invoice.status.replace('_', ' ')} already.")
        if invoice.status != PAID:
            raise NotAdjustable(
                f"{invoice.number} is not paid: only a paid invoice can be refunded. Void an unpaid one."
            )
        if invoice.total_cents == 0:
            raise NotAdjustable(
                f"{invoice.number} was credited in full: nothing was paid, so nothing to refund."
            )
        if not invoice.stripe_payment_intent_id:
            raise NotAdjustable(f"{invoice.number} has no Stripe payment to refund; refund it in Stripe.")
        claim = once.claim(session, form_id, "refund_invoice")
        if claim is None:
            return Adjusted(invoice, repeated=True)
        refund = gateway.create_refund(
            {
                "payment_intent": invoice.stripe_payment_intent_id,
                # A balance payment covers several invoices: refund this one's share only.
                "amount": invoice.total_cents,
                "reason": "requested_by_customer",
                "metadata": {
                    "invoice_id": str(invoice.id),
                    "account_id": str(account.id),
                    "invoice_number": invoice.number,
                },
            },
            form_id,
        )
        invoice.status = REFUND_PENDING
        invoice.refund_requested_at = utcnow()
        invoice.stripe_refund_id = str(refund["id"])
        invoice.adjustment_reason = reason
        once.keep_result(session, claim, result_url)
        record.append(
            session,
            account,
            event="refund_requested",
            actor=actor,
            confirmed_value=_amount(invoice),
            note=reason,
            details={
                "invoice_id": invoice.id,
                "number": invoice.number,
                "refund": refund["id"],
                "status": refund.get("status"),
            },
        )
        return Adjusted(invoice, refund=refund)


def refund_settled(session: Session, invoice: Invoice, facts: StripeFacts, *, refund: dict[str, Any]) -> str:
    """Stripe's verified word on the refund: succeeded -> refunded (once); failed or canceled ->
    back to paid, recorded for staff. Anything else, or a repeat, changes nothing."""
    status = refund.get("status")
    account = session.get(Account, invoice.account_id)
    assert account is not None
    if invoice.status == REFUNDED:
        return "already refunded"
    if invoice.status != REFUND_PENDING or refund.get("id") != invoice.stripe_refund_id:
        log.warning(
            "refund %s for %s (%s): not the one asked for; ignored",
            refund.get("id"),
            invoice.number,
            invoice.status,
        )
        return "ignored"
    details = {
        "invoice_id": invoice.id,
        "number": invoice.number,
        "refund": refund.get("id"),
        "stripe_event": facts.event_id,
        "event_type": facts.event_type,
    }
    if status == "succeeded":
        amount, currency = refund.get("amount"), refund.get("currency")
        if amount != invoice.total_cents or str(currency).lower() != invoice.currency.lower():
            record.append(
                session,
                account,
                event="payment_mismatch",
                actor=STRIPE,
                note=f"Stripe reported a refund of {amount} {currency} for {invoice.number}; left pending.",
                details=details,
            )
            return "amount mismatch recorded"
        invoice.status = REFUNDED
        invoice.refunded_at = utcnow()
        record.append(
            session,
            account,
            event="invoice_refunded",
            actor=STRIPE,
            confirmed_value=_amount(invoice),
            details=details,
        )
        _webhook(session, "invoice.refunded", invoice, invoice.adjustment_reason)
        return "refunded"
    if status in ("failed", "canceled"):
        invoice.status = PAID
        invoice.stripe_refund_id = None
        record.append(
            session,
            account,
            event="refund_failed",
            actor=STRIPE,
            note=f"Stripe could not refund {invoice.number} ({status}); it is paid again. "
            "Refund it in Stripe.",
            details={**details, "failure_reason": refund.get("failure_reason")},
        )
        return "refund failed"
    return "refund pending"
