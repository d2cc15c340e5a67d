"""Demo mode (no STRIPE_SECRET_KEY): payments work end to end without Stripe and without
imitating a card form.

"Checkout" is a clearly labelled page under /pay/demo/ with buttons only. Its buttons build the
Stripe-shaped events Stripe would send, sign them exactly as Stripe does with a secret derived from
SECRET_KEY, and pass them to `events.handle_delivery`: the same verification and processing as a
real webhook. Nothing here sets a card or a paid state directly.
"""
from __future__ import annotations

import json
import secrets
import time
from datetime import date, datetime, timezone
from typing import Any

import stripe
from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

from portal.payments.events import Delivery, handle_delivery
from portal.payments.gateway import CheckoutStarted, demo_webhook_secret

SALT = "handoff-portal.demo-checkout.v1"
MAX_AGE = 24 * 3600
API_VERSION = "2026-10-28.endive"


def _serializer() -> URLSafeTimedSerializer:
    keys = [*current_app.config.get("SECRET_KEY_FALLBACKS", []), current_app.config["SECRET_KEY"]]
    return URLSafeTimedSerializer(keys, salt=SALT)


def _suffix(length: int = 24) -> str:
    return secrets.token_hex(length // 2)


def start_checkout(params: dict[str, Any]) -> CheckoutStarted:
    """A demo 'Checkout Session': what it is for travels signed in its page's URL."""
    session_id = f"cs_demo_{_suffix()}"
    metadata = {str(k): str(v) for k, v in (params.get("metadata") or {}).items()}
    amount = sum(int(item["price_data"]["unit_amount"]) * int(item.get("quantity", 1))
                 for item in params.get("line_items") or [])
    currency = next((item["price_data"]["currency"] for item in params.get("line_items") or []), None)
    token = _serializer().dumps({
        "id": session_id, "mode": params["mode"], "customer": params.get("customer"),
        "email": params.get("customer_email"), "metadata": metadata,
        "amount": amount if params["mode"] == "payment" else None, "currency": currency,
        "success": params["success_url"], "cancel": params["cancel_url"],
    })
    expires = datetime.fromtimestamp(int(time.time()) + 3600, timezone.utc)
    return CheckoutStarted(session_id, f"/pay/demo/checkout/{token}", expires)


def read_checkout(token: str) -> dict[str, Any] | None:
    try:
        data = _serializer().loads(token, max_age=MAX_AGE)
    except BadSignature:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("metadata"), dict) else None


def local_path(url: str) -> str:
    """Success and cancel URLs are absolute (Stripe needs them so); the demo stays on this site."""
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    return url[len(base):] if url.startswith(base) else "/pay/invoices"


# --- Stripe-shaped objects -----------------------------------------------------------------

def _card(payment_method_id: str, customer: str | None) -> dict[str, Any]:
    year = date.today().year + 2
    return {"id": payment_method_id, "object": "payment_method", "type": "card", "customer": customer,
            "created": int(time.time()), "livemode": False, "metadata": {},
            "card": {"brand": "visa", "display_brand": "visa", "last4": "4242", "exp_month": 12,
                     "exp_year": year, "funding": "credit", "country": "US"}}


def _payment_intent(checkout: dict[str, Any], status: str, intent_id: str,
                    error: dict[str, Any] | None = None) -> dict[str, Any]:
    amount = int(checkout.get("amount") or 0)
    return {"id": intent_id, "object": "payment_intent", "amount": amount,
            "amount_received": amount if status == "succeeded" else 0,
            "currency": checkout.get("currency") or "usd", "customer": checkout.get("customer"),
            "metadata": dict(checkout["metadata"]), "status": status, "livemode": False,
            "created": int(time.time()), "last_payment_error": error}


def _event(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {"id": event_id or f"evt_demo_{_suffix()}", "object": "event", "type": event_type,
            "api_version": API_VERSION, "created": int(time.time()), "livemode": False,
            "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
            "data": {"object": obj}}


DECLINE = {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
           "message": "Your card was declined. (Demo mode: no card was involved.)"}


def success_events(checkout: dict[str, Any]) -> list[dict[str, Any]]:
    """What Stripe sends when the customer finishes Checkout. Ids derive from the session, so
    pressing the button again repeats the same events (and changes nothing)."""
    session_id = checkout["id"]
    tail = session_id.removeprefix("cs_demo_")
    completed = {"id": session_id, "object": "checkout.session", "mode": checkout["mode"],
                 "status": "complete", "customer": checkout.get("customer"),
                 "metadata": dict(checkout["metadata"]), "livemode": False, "created": int(time.time())}
    if checkout["mode"] == "setup":
        intent = {"id": f"seti_demo_{tail}", "object": "setup_intent", "status": "succeeded",
                  "usage": "off_session", "customer": checkout.get("customer"),
                  "metadata": dict(checkout["metadata"]), "created": int(time.time()),
                  "payment_method": _card(f"pm_demo_{tail}", checkout.get("customer"))}
        completed.update(payment_status="no_payment_required", setup_intent=intent)
        return [_event("checkout.session.completed", completed, f"evt_demo_{tail}_completed")]
    intent_id = f"pi_demo_{tail}"
    completed.update(payment_status="paid", payment_intent=intent_id,
                     amount_total=checkout.get("amount"), currency=checkout.get("currency"))
    return [_event("checkout.session.completed", completed, f"evt_demo_{tail}_completed"),
            _event("payment_intent.succeeded", _payment_intent(checkout, "succeeded", intent_id),
                   f"evt_demo_{tail}_succeeded")]


def decline_events(checkout: dict[str, Any]) -> list[dict[str, Any]]:
    """What Stripe sends when a card is declined inside Checkout (the session stays open)."""
    tail = checkout["id"].removeprefix("cs_demo_")
    if checkout["mode"] == "setup":
        intent = {"id": f"seti_demo_{tail}", "object": "setup_intent", "status": "requires_payment_method",
                  "customer": checkout.get("customer"), "metadata": dict(checkout["metadata"]),
                  "created": int(time.time()), "last_setup_error": DECLINE, "payment_method": None}
        return [_event("setup_intent.setup_failed", intent)]
    intent = _payment_intent(checkout, "requires_payment_method", f"pi_demo_{tail}", DECLINE)
    return [_event("payment_intent.payment_failed", intent)]


def payment_intent(params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
    """An off-session charge in demo mode always succeeds; its event follows (`deliver`)."""
    checkout = {"amount": params["amount"], "currency": params["currency"],
                "customer": params.get("customer"), "metadata": dict(params.get("metadata") or {})}
    return _payment_intent(checkout, "succeeded", f"pi_demo_{_suffix()}")


def autopay_events(intent: dict[str, Any]) -> list[dict[str, Any]]:
    return [_event("payment_intent.succeeded", intent, f"evt_demo_{intent['id']}")]


def deliver(events: list[dict[str, Any]]) -> list[Delivery]:
    """Sign each event as Stripe would and hand it to the webhook handler."""
    results = []
    for event in events:
        payload = json.dumps(event, separators=(",", ":"))
        header = stripe.WebhookSignature.generate_signature_header(
            payload, demo_webhook_secret(), timestamp=int(time.time()))
        results.append(handle_delivery(payload.encode(), header))
    return results
