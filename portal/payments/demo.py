"""Demo mode (no STRIPE_SECRET_KEY, outside production): payments work end to end without Stripe
and without imitating a card form. In production without keys online payment is off instead
(`gateway.payments_mode`), and none of this runs.

"Checkout" is a clearly labelled page under /pay/demo/ with buttons only. Its buttons build the
Stripe-shaped events Stripe would send, sign them exactly as Stripe does with a secret derived from
SECRET_KEY, and pass them to `events.handle_delivery`: the same verification and processing as a
real webhook. Nothing here sets a card or a paid state directly.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from datetime import date, datetime, timedelta, timezone
from typing import Any

import stripe
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.models import Account, RecordEntry
from portal.payments import checkout as checkout_service
from portal.payments.events import Delivery, handle_delivery
from portal.payments.gateway import CheckoutStarted, demo_webhook_secret
from portal.payments.invoices import customer_invoice

MAX_AGE = timedelta(hours=24)
API_VERSION = "2026-10-28.endive"
STARTED = {"payment_started": "payment", "card_setup_started": "setup"}


def _suffix(length: int = 24) -> str:
    return secrets.token_hex(length // 2)


def start_checkout(params: dict[str, Any]) -> CheckoutStarted:
    """A demo 'Checkout Session'. Its page's URL carries only the random session id (an address
    bar, history and logs are no place for an email address); `read_checkout` finds the rest
    from the record entry that `checkout` writes when it starts the session."""
    session_id = f"cs_demo_{_suffix()}"
    expires = datetime.fromtimestamp(int(time.time()) + 3600, timezone.utc)
    return CheckoutStarted(session_id, f"/pay/demo/checkout/{session_id}", expires)


def read_checkout(session: Session, account: Account, session_id: str) -> dict[str, Any] | None:
    """The demo session `account` started in the last MAX_AGE, rebuilt from the service record
    and the invoice; None for any other id (another account's, an old or a made-up one)."""
    started = session.scalars(
        select(RecordEntry)
        .where(
            RecordEntry.account_id == account.id,
            RecordEntry.event.in_(tuple(STARTED)),
            RecordEntry.created_at >= utcnow() - MAX_AGE,
        )
        .order_by(RecordEntry.seq.desc())
    ).all()
    entry = next((e for e in started if e.details.get("checkout_session") == session_id), None)
    if entry is None:
        return None
    checkout: dict[str, Any] = {
        "id": session_id,
        "mode": STARTED[entry.event],
        "customer": account.stripe_customer_id,
        "amount": None,
        "currency": None,
    }
    if checkout["mode"] == "setup":
        checkout["metadata"] = checkout_service.card_setup_metadata(account)
        checkout["success"], checkout["cancel"] = checkout_service.return_paths()
        return checkout
    if isinstance(ids := entry.details.get("invoice_ids"), list):  # the balance, several invoices
        found = [customer_invoice(session, account, int(i)) for i in ids]
        invoices = [invoice for invoice in found if invoice is not None]
        if not invoices or len(invoices) != len(ids):
            return None
        checkout.update(
            metadata=checkout_service.balance_metadata(account, invoices),
            amount=sum(invoice.total_cents for invoice in invoices),
            currency=invoices[0].currency.lower(),
            invoices=invoices,
        )
        checkout["success"], checkout["cancel"] = checkout_service.balance_paths()
        return checkout
    invoice = customer_invoice(session, account, int(entry.details.get("invoice_id") or 0))
    if invoice is None:
        return None
    checkout.update(
        metadata=checkout_service.invoice_metadata(account, invoice),
        amount=invoice.total_cents,
        currency=invoice.currency.lower(),
        invoice=invoice,
    )
    checkout["success"], checkout["cancel"] = checkout_service.return_paths(invoice.id)
    return checkout


# --- Stripe-shaped objects -----------------------------------------------------------------


def _card(payment_method_id: str, customer: str | None) -> dict[str, Any]:
    year = date.today().year + 2
    return {
        "id": payment_method_id,
        "object": "payment_method",
        "type": "card",
        "customer": customer,
        "created": int(time.time()),
        "livemode": False,
        "metadata": {},
        "card": {
            "brand": "visa",
            "display_brand": "visa",
            "last4": "4242",
            "exp_month": 12,
            "exp_year": year,
            "funding": "credit",
            "country": "US",
        },
    }


def _payment_intent(
    checkout: dict[str, Any], status: str, intent_id: str, error: dict[str, Any] | None = None
) -> dict[str, Any]:
    amount = int(checkout.get("amount") or 0)
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if status == "succeeded" else 0,
        "currency": checkout.get("currency") or "usd",
        "customer": checkout.get("customer"),
        "metadata": dict(checkout["metadata"]),
        "status": status,
        "livemode": False,
        "created": int(time.time()),
        "last_payment_error": error,
    }


def _event(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_demo_{_suffix()}",
        "object": "event",
        "type": event_type,
        "api_version": API_VERSION,
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": obj},
    }


DECLINE = {
    "type": "card_error",
    "code": "card_declined",
    "decline_code": "generic_decline",
    "message": "Your card was declined. (Demo mode: no card was involved.)",
}


def success_events(checkout: dict[str, Any]) -> list[dict[str, Any]]:
    """What Stripe sends when the customer finishes Checkout. Ids derive from the session, so
    pressing the button again repeats the same events (and changes nothing)."""
    session_id = checkout["id"]
    tail = session_id.removeprefix("cs_demo_")
    completed = {
        "id": session_id,
        "object": "checkout.session",
        "mode": checkout["mode"],
        "status": "complete",
        "customer": checkout.get("customer"),
        "metadata": dict(checkout["metadata"]),
        "livemode": False,
        "created": int(time.time()),
    }
    if checkout["mode"] == "setup":
        intent = {
            "id": f"seti_demo_{tail}",
            "object": "setup_intent",
            "status": "succeeded",
            "usage": "off_session",
            "customer": checkout.get("customer"),
            "metadata": dict(checkout["metadata"]),
            "created": int(time.time()),
            "payment_method": _card(f"pm_demo_{tail}", checkout.get("customer")),
        }
        completed.update(payment_status="no_payment_required", setup_intent=intent)
        return [_event("checkout.session.completed", completed, f"evt_demo_{tail}_completed")]
    intent_id = f"pi_demo_{tail}"
    completed.update(
        payment_status="paid",
        payment_intent=intent_id,
        amount_total=checkout.get("amount"),
        currency=checkout.get("currency"),
    )
    return [
        _event("checkout.session.completed", completed, f"evt_demo_{tail}_completed"),
        _event(
            "payment_intent.succeeded",
            _payment_intent(checkout, "succeeded", intent_id),
            f"evt_demo_{tail}_succeeded",
        ),
    ]


def decline_events(checkout: dict[str, Any]) -> list[dict[str, Any]]:
    """What Stripe sends when a card is declined inside Checkout (the session stays open)."""
    tail = checkout["id"].removeprefix("cs_demo_")
    if checkout["mode"] == "setup":
        intent = {
            "id": f"seti_demo_{tail}",
            "object": "setup_intent",
            "status": "requires_payment_method",
            "customer": checkout.get("customer"),
            "metadata": dict(checkout["metadata"]),
            "created": int(time.time()),
            "last_setup_error": DECLINE,
            "payment_method": None,
        }
        return [_event("setup_intent.setup_failed", intent)]
    intent = _payment_intent(checkout, "requires_payment_method", f"pi_demo_{tail}", DECLINE)
    return [_event("payment_intent.payment_failed", intent)]


def payment_intent(params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
    """An off-session charge in demo mode always succeeds; its event follows (`deliver`)."""
    checkout = {
        "amount": params["amount"],
        "currency": params["currency"],
        "customer": params.get("customer"),
        "metadata": dict(params.get("metadata") or {}),
    }
    return _payment_intent(checkout, "succeeded", f"pi_demo_{_suffix()}")


def refund(params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
    """A demo refund, settled at once by `refund_events` (there is no Stripe to send it)."""
    return {
        "id": f"re_demo_{hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]}",
        "object": "refund",
        "amount": int(params["amount"]),
        "currency": "usd",
        "payment_intent": params.get("payment_intent"),
        "metadata": dict(params.get("metadata") or {}),
        "status": "succeeded",
        "created": int(time.time()),
    }


def refund_events(refund: dict[str, Any]) -> list[dict[str, Any]]:
    return [_event("refund.updated", refund, f"evt_demo_{refund['id']}")]


def autopay_events(intent: dict[str, Any]) -> list[dict[str, Any]]:
    return [_event("payment_intent.succeeded", intent, f"evt_demo_{intent['id']}")]


def deliver(events: list[dict[str, Any]]) -> list[Delivery]:
    """Sign each event as Stripe would and hand it to the webhook handler."""
    results = []
    for event in events:
        payload = json.dumps(event, separators=(",", ":"))
        header = stripe.WebhookSignature.generate_signature_header(
            payload, demo_webhook_secret(), timestamp=int(time.time())
        )
        results.append(handle_delivery(payload.encode(), header))
    return results
