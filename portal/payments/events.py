"""Stripe events: verified, stored, applied exactly once.

`handle_delivery` is what `POST /stripe/webhook` and the demo buttons both call: it verifies the
signature on the raw body (Stripe's scheme, 300 s tolerance either side of now) and hands the
event to `receive`.
`receive` is also what `reconcile-stripe` calls for events fetched from the API.

Exactly once: the event id is inserted into `stripe_events` (primary key) first, in the same
transaction that applies the event. A second delivery finds the row, or, when it races the first,
fails its insert once the first commits; either way it is answered "already processed". When
applying fails, the whole transaction (the id included) rolls back and the delivery gets a 500,
so Stripe retries it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import stripe
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.db import get_db, unit_of_work, utcnow
from portal.models import Invoice, StripeEvent
from portal.payments import adjustments, cards, checkout, invoices
from portal.payments.gateway import Gateway, get_gateway, webhook_secret

log = logging.getLogger(__name__)

TOLERANCE = 300  # seconds, Stripe's default
DUPLICATE, IGNORED = "already processed", "ignored"


class BadDelivery(Exception):
    """Signature missing, wrong or stale, or a body that is not an event: answer 400."""


def signed_at(signature: str) -> int | None:
    """The `t=` timestamp of a Stripe-Signature header."""
    for item in signature.split(","):
        key, _, value = item.partition("=")
        if key.strip() == "t":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def verify(payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """The event, if `signature` is Stripe's for exactly these bytes and signed within
    TOLERANCE of now, either side."""
    try:
        stripe.Webhook.construct_event(payload, signature, secret, tolerance=TOLERANCE)
        event = json.loads(payload)
    except stripe.SignatureVerificationError as exc:
        raise BadDelivery("invalid signature") from exc
    except (ValueError, AttributeError, TypeError, KeyError) as exc:  # not UTF-8, JSON, an event
        raise BadDelivery("body is not a JSON event") from exc
    # The library refuses only old timestamps: a header signed for a later time (a clock far
    # ahead, or one made to be replayed later) would otherwise stay valid for as long as it says.
    timestamp = signed_at(str(signature))
    if timestamp is None or timestamp > time.time() + TOLERANCE:
        raise BadDelivery("invalid signature")
    data = event.get("data") if isinstance(event, dict) else None
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
        or not isinstance(data, dict)
        or not isinstance(data.get("object"), dict)
    ):
        raise BadDelivery("body is not a Stripe event")
    return event


@dataclass(frozen=True)
class Delivery:
    status: int
    message: str


def handle_delivery(payload: bytes, signature: str | None) -> Delivery:
    """Verify and apply one delivery; the HTTP status to answer Stripe with."""
    secret = webhook_secret()
    if not secret:
        log.error("STRIPE_WEBHOOK_SECRET is not set; Stripe events cannot be verified")
        return Delivery(500, "webhook secret not configured")
    try:
        event = verify(payload, signature, secret)
    except BadDelivery as refused:
        log.info("webhook refused: %s", refused)
        return Delivery(400, str(refused))
    try:
        outcome = receive(get_db(), event, get_gateway())
    except Exception:  # noqa: BLE001 - answered 500 so Stripe retries; logged with the traceback
        log.exception("Stripe event %s (%s) failed; rolled back", event["id"], event["type"])
        return Delivery(500, "processing failed; it will be retried")
    return Delivery(200, outcome)


@dataclass(frozen=True)
class Context:
    session: Session
    event: dict[str, Any]
    gateway: Gateway

    @property
    def facts(self) -> invoices.StripeFacts:
        return invoices.StripeFacts(self.event["id"], self.event["type"])

    @property
    def created(self) -> int:
        return int(self.event.get("created") or 0)


def receive(session: Session, event: dict[str, Any], gateway: Gateway) -> str:
    """Store the event id and apply the event in one unit of work, once. On failure it rolls
    back and raises."""
    try:
        with unit_of_work(session):
            if session.get(StripeEvent, event["id"]) is not None:
                return DUPLICATE
            row = StripeEvent(
                id=event["id"],
                type=event["type"][:100],
                created=int(event.get("created") or 0),
                payload=event,
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError:  # a concurrent delivery of the same event committed first
                raise _Duplicate() from None
            handler = HANDLERS.get(event["type"])
            outcome = (
                handler(Context(session, event, gateway), event["data"]["object"]) if handler else IGNORED
            )
            row.processed_at = utcnow()
            return outcome
    except _Duplicate:
        return DUPLICATE


class _Duplicate(Exception):
    """The event's row was taken by a concurrent delivery: roll back and say so."""


# --- Handlers ------------------------------------------------------------------------------


def _id(value: Any) -> str | None:
    return cards.object_id(value)


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _invoice(ctx: Context, obj: dict[str, Any]) -> Invoice | None:
    """The invoice named in our metadata, locked, if the account matches too."""
    metadata = _metadata(obj)
    invoice_id, account_id = (
        cards.as_int(metadata.get("invoice_id")),
        cards.as_int(metadata.get("account_id")),
    )
    if invoice_id is None:
        return None
    invoice = invoices.lock_invoice(ctx.session, invoice_id)
    if invoice is None or invoice.account_id != account_id:
        log.warning(
            "event %s names invoice %s of account %s: no such invoice; ignored",
            ctx.event["id"],
            invoice_id,
            account_id,
        )
        return None
    return invoice


def _invoices(ctx: Context, obj: dict[str, Any]) -> list[Invoice]:
    """The invoices a payment is for: the several of a balance payment (`invoice_ids`), all of
    the named account or none, or the one of `_invoice`."""
    metadata = _metadata(obj)
    listed = metadata.get("invoice_ids")
    if not isinstance(listed, str) or not listed:
        invoice = _invoice(ctx, obj)
        return [invoice] if invoice is not None else []
    ids = [cards.as_int(part) for part in listed.split(",")][: checkout.MAX_BALANCE_INVOICES]
    account_id = cards.as_int(metadata.get("account_id"))
    found = []
    for invoice_id in sorted({i for i in ids if i is not None}):  # one lock order for every event
        invoice = invoices.lock_invoice(ctx.session, invoice_id)
        if invoice is None or invoice.account_id != account_id:
            log.warning(
                "event %s names invoice %s of account %s: no such invoice; all ignored",
                ctx.event["id"],
                invoice_id,
                account_id,
            )
            return []
        found.append(invoice)
    return found


def checkout_completed(ctx: Context, obj: dict[str, Any]) -> str:
    if obj.get("mode") == "setup":
        return _setup_completed(ctx, obj)
    if obj.get("mode") != "payment":
        return IGNORED
    found = _invoices(ctx, obj)
    if not found:
        return IGNORED
    intent = _id(obj.get("payment_intent"))
    if obj.get("payment_status") == "paid":
        return invoices.mark_paid(
            ctx.session,
            found,
            ctx.facts,
            payment_intent=intent,
            amount=obj.get("amount_total"),
            currency=obj.get("currency"),
        )
    if obj.get("payment_status") == "unpaid":  # a delayed method: async_payment_* follows
        return _each(
            found, lambda i: invoices.mark_processing(ctx.session, i, ctx.facts, payment_intent=intent)
        )
    return IGNORED


def _each(found: list[Invoice], apply: Callable[[Invoice], str]) -> str:
    return "; ".join(apply(invoice) for invoice in found)


def checkout_async_succeeded(ctx: Context, obj: dict[str, Any]) -> str:
    found = _invoices(ctx, obj) if obj.get("mode") == "payment" else []
    if not found:
        return IGNORED
    return invoices.mark_paid(
        ctx.session,
        found,
        ctx.facts,
        payment_intent=_id(obj.get("payment_intent")),
        amount=obj.get("amount_total"),
        currency=obj.get("currency"),
    )


def checkout_async_failed(ctx: Context, obj: dict[str, Any]) -> str:
    found = _invoices(ctx, obj) if obj.get("mode") == "payment" else []
    return (
        _each(
            found,
            lambda invoice: invoices.payment_failed(
                ctx.session,
                invoice,
                ctx.facts,
                payment_intent=_id(obj.get("payment_intent")),
                reason="Your bank did not complete the payment.",
                code="async_payment_failed",
            ),
        )
        or IGNORED
    )


def payment_intent_succeeded(ctx: Context, obj: dict[str, Any]) -> str:
    found = _invoices(ctx, obj)
    if not found:
        return IGNORED
    return invoices.mark_paid(
        ctx.session,
        found,
        ctx.facts,
        payment_intent=_id(obj),
        amount=obj.get("amount_received", obj.get("amount")),
        currency=obj.get("currency"),
    )


def payment_intent_failed(ctx: Context, obj: dict[str, Any]) -> str:
    found = _invoices(ctx, obj)
    error = obj.get("last_payment_error") or {}
    code = error.get("decline_code") or error.get("code")
    return (
        _each(
            found,
            lambda invoice: invoices.payment_failed(
                ctx.session,
                invoice,
                ctx.facts,
                payment_intent=_id(obj),
                reason=str(error.get("message") or "The payment did not go through.")[:300],
                code=code,
            ),
        )
        or IGNORED
    )


def _setup_completed(ctx: Context, obj: dict[str, Any]) -> str:
    account = cards.account_for(ctx.session, obj.get("metadata"), obj.get("customer"))
    intent = obj.get("setup_intent")
    if account is None or intent is None:
        return IGNORED
    if not isinstance(intent, dict) or not isinstance(intent.get("payment_method"), dict):
        intent = ctx.gateway.setup_intent(str(_id(intent)))  # the event does not carry the card
    if intent.get("status") != "succeeded":
        return IGNORED
    return _save(ctx, account, intent, checkout_session=_id(obj))


def setup_intent_succeeded(ctx: Context, obj: dict[str, Any]) -> str:
    account = cards.account_for(ctx.session, obj.get("metadata"), obj.get("customer"))
    if account is None:
        return IGNORED
    return _save(ctx, account, obj, checkout_session=None)


def _save(ctx: Context, account: Any, intent: dict[str, Any], checkout_session: str | None) -> str:
    intent_customer = _id(intent.get("customer"))
    if intent_customer and account.stripe_customer_id and intent_customer != account.stripe_customer_id:
        log.warning(
            "SetupIntent %s is for %s, not account %s; ignored", _id(intent), intent_customer, account.id
        )
        return IGNORED
    method = intent.get("payment_method")
    if isinstance(method, str):
        method = ctx.gateway.payment_method(method)
    if not isinstance(method, dict):
        return IGNORED
    return cards.save_card(
        ctx.session,
        account,
        method,
        event_id=ctx.event["id"],
        setup_intent=_id(intent),
        checkout_session=checkout_session,
        source_created=int(intent.get("created") or ctx.created),
    )


def setup_intent_failed(ctx: Context, obj: dict[str, Any]) -> str:
    account = cards.account_for(ctx.session, obj.get("metadata"), obj.get("customer"))
    if account is None:
        return IGNORED
    return cards.setup_failed(ctx.session, account, obj, event_id=ctx.event["id"])


def _refund_invoice(ctx: Context, refund: dict[str, Any]) -> Invoice | None:
    """The invoice whose refund this is: found by the refund id stored when staff asked for it
    (a refund made elsewhere, e.g. in Stripe's dashboard, names none and is ignored)."""
    refund_id = _id(refund)
    if refund_id is None:
        return None
    found = ctx.session.scalar(select(Invoice.id).where(Invoice.stripe_refund_id == refund_id))
    return invoices.lock_invoice(ctx.session, found) if found is not None else None


def refund_updated(ctx: Context, obj: dict[str, Any]) -> str:
    invoice = _refund_invoice(ctx, obj)
    if invoice is None:
        return IGNORED
    return adjustments.refund_settled(ctx.session, invoice, ctx.facts, refund=obj)


def charge_refunded(ctx: Context, obj: dict[str, Any]) -> str:
    """A charge refunded (in part, for one invoice of a balance payment): each of its refunds
    that is ours settles its invoice."""
    refunds = obj.get("refunds")
    listed = refunds.get("data") if isinstance(refunds, dict) else None
    outcomes = []
    for refund in listed if isinstance(listed, list) else []:
        if isinstance(refund, dict) and (invoice := _refund_invoice(ctx, refund)) is not None:
            outcomes.append(adjustments.refund_settled(ctx.session, invoice, ctx.facts, refund=refund))
    return "; ".join(outcomes) or IGNORED


HANDLERS: dict[str, Callable[[Context, dict[str, Any]], str]] = {
    "refund.updated": refund_updated,
    "refund.created": refund_updated,
    "charge.refunded": charge_refunded,
    "checkout.session.completed": checkout_completed,
    "checkout.session.async_payment_succeeded": checkout_async_succeeded,
    "checkout.session.async_payment_failed": checkout_async_failed,
    "payment_intent.succeeded": payment_intent_succeeded,
    "payment_intent.payment_failed": payment_intent_failed,
    "setup_intent.succeeded": setup_intent_succeeded,
    "setup_intent.setup_failed": setup_intent_failed,
}
SUBSCRIBED = tuple(HANDLERS)
