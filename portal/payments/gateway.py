"""The one place that talks to Stripe, and its demo stand-in.

`get_gateway()` gives `StripeGateway` when `STRIPE_SECRET_KEY` is set. Without it, development
gets `DemoGateway` (demo mode) and production gets `OffGateway`: online payment is off, because a
live portal must never take simulated payments.

Every Stripe call carries an idempotency key and the `STRIPE_TIMEOUT`; a Stripe error or network
failure becomes a `PaymentProviderError` with a message for the customer and details for
staff (never a logged-and-swallowed `None`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NoReturn, TypeVar

import stripe
from flask import current_app

T = TypeVar("T")

UNREACHABLE = (
    "We could not reach our payment provider just now, so nothing was charged or saved. "
    "Please try again in a few minutes."
)
PROVIDER_DOWN = (
    "Our payment provider had a problem, so nothing was charged or saved. Please try again in a few minutes."
)
REFUSED = (
    "We could not start the payment, so nothing was charged or saved. Our office has been "
    "told and will be in touch."
)
DECLINED = "Your card was declined, so nothing was charged."
PAYMENTS_OFF = "Online payment is not available, so nothing was charged or saved."


class PaymentProviderError(Exception):
    """Stripe refused or could not be reached. `message` is for the customer; `details` go into
    the service record for staff; `http_status` is what the customer's page answers with."""

    def __init__(self, message: str, *, http_status: int, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.details = details


class CardDeclined(PaymentProviderError):
    """A card error (402): declined, or the bank wants the customer to authenticate."""

    @property
    def code(self) -> str:
        return str(self.details.get("code") or "card_declined")

    @property
    def needs_authentication(self) -> bool:
        return "authentication_required" in (self.details.get("code"), self.details.get("decline_code"))

    @property
    def payment_intent_id(self) -> str | None:
        return self.details.get("payment_intent")


def _field(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def translate(exc: stripe.StripeError, operation: str) -> PaymentProviderError:
    """Turn the library's exception into our error, keeping what staff need to follow it up."""
    details: dict[str, Any] = {
        "operation": operation,
        "error": type(exc).__name__,
        "http_status": exc.http_status,
        "code": exc.code,
        "request_id": exc.request_id,
        "message": str(exc.user_message or exc)[:300],
    }
    if isinstance(exc, stripe.CardError):
        error = exc.error
        details["decline_code"] = _field(error, "decline_code")
        intent = _field(error, "payment_intent")
        details["payment_intent"] = intent if isinstance(intent, str) else _field(intent, "id")
        message = DECLINED
        if details["decline_code"] == "authentication_required" or exc.code == "authentication_required":
            message = "Your bank asks you to confirm this payment yourself, so nothing was charged."
        return CardDeclined(message, http_status=402, details=details)
    if isinstance(exc, stripe.APIConnectionError):
        return PaymentProviderError(UNREACHABLE, http_status=504, details=details)
    if isinstance(exc, (stripe.APIError, stripe.RateLimitError)):
        return PaymentProviderError(PROVIDER_DOWN, http_status=502, details=details)
    return PaymentProviderError(REFUSED, http_status=502, details=details)


@dataclass(frozen=True)
class CheckoutStarted:
    id: str
    url: str
    expires_at: datetime | None


def _timestamp(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), timezone.utc) if value else None


class StripeGateway:
    """Stripe through the official library (`StripeClient`, one per call, closed after it)."""

    demo = False
    off = False

    def __init__(self, config: dict[str, Any]) -> None:
        self.key: str = config["STRIPE_SECRET_KEY"]
        self.base: str | None = config.get("STRIPE_API_BASE")
        self.timeout: float = float(config.get("STRIPE_TIMEOUT") or 10)
        self.retries: int = int(config.get("STRIPE_MAX_NETWORK_RETRIES") or 0)

    @contextmanager
    def _client(self) -> Iterator[stripe.StripeClient]:
        http_client = stripe.new_default_http_client(timeout=self.timeout)
        options: dict[str, Any] = {"http_client": http_client, "max_network_retries": self.retries}
        if self.base:
            options["base_addresses"] = {"api": self.base}
        try:
            yield stripe.StripeClient(self.key, **options)
        finally:
            http_client.close()  # type: ignore[no-untyped-call]  # stripe leaves close() unannotated

    def _call(self, operation: str, call: Callable[[stripe.StripeClient], T]) -> T:
        try:
            with self._client() as client:
                return call(client)
        except stripe.StripeError as exc:
            raise translate(exc, operation) from exc

    def create_customer(self, params: dict[str, Any], idempotency_key: str) -> str:
        customer = self._call(
            "create customer",
            lambda c: c.v1.customers.create(
                # Our params are plain dicts, built per call; Stripe types them as TypedDicts. The
                # Stripe-shaped test server checks what is sent.
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            ),
        )
        return customer.id

    def create_checkout_session(self, params: dict[str, Any], idempotency_key: str) -> CheckoutStarted:
        created = self._call(
            "create Checkout Session",
            lambda c: c.v1.checkout.sessions.create(
                params=params,  # type: ignore[arg-type]  # a plain dict: see create_customer
                options={"idempotency_key": idempotency_key},
            ),
        )
        if not created.url:
            raise PaymentProviderError(
                REFUSED,
                http_status=502,
                details={
                    "operation": "create Checkout Session",
                    "message": "Stripe returned no URL",
                    "checkout_session": created.id,
                },
            )
        return CheckoutStarted(created.id, created.url, _timestamp(created.expires_at))

    def setup_intent(self, setup_intent_id: str) -> dict[str, Any]:
        """The SetupIntent with its PaymentMethod expanded (the card's brand, last 4, expiry)."""
        intent = self._call(
            "retrieve SetupIntent",
            lambda c: c.v1.setup_intents.retrieve(setup_intent_id, params={"expand": ["payment_method"]}),
        )
        return intent.to_dict(for_json=True)

    def payment_method(self, payment_method_id: str) -> dict[str, Any]:
        method = self._call(
            "retrieve PaymentMethod", lambda c: c.v1.payment_methods.retrieve(payment_method_id)
        )
        return method.to_dict(for_json=True)

    def charge_off_session(self, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        intent = self._call(
            "charge saved card",
            lambda c: c.v1.payment_intents.create(
                params=params,  # type: ignore[arg-type]  # a plain dict: see create_customer
                options={"idempotency_key": idempotency_key},
            ),
        )
        return intent.to_dict(for_json=True)

    def create_refund(self, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        refund = self._call(
            "refund payment",
            lambda c: c.v1.refunds.create(
                params=params,  # type: ignore[arg-type]  # a plain dict: see create_customer
                options={"idempotency_key": idempotency_key},
            ),
        )
        return refund.to_dict(for_json=True)

    def undelivered_events(self, since: int) -> Iterator[dict[str, Any]]:
        """Events Stripe could not deliver to us since `since` (newest first, every page)."""
        try:
            with self._client() as client:
                page = client.v1.events.list(
                    params={
                        "delivery_success": False,
                        "created": {"gte": since},
                        "limit": 100,
                    }
                )
                for event in page.auto_paging_iter():
                    yield event.to_dict(for_json=True)
        except stripe.StripeError as exc:
            raise translate(exc, "list undelivered events") from exc


@dataclass
class DemoGateway:
    """Demo mode: no Stripe account. Checkout becomes the labelled demo page under /pay/demo/,
    whose buttons send signed, Stripe-shaped events through the real webhook handler."""

    demo = True
    off = False
    calls: list[str] = field(default_factory=list)

    def create_customer(self, params: dict[str, Any], idempotency_key: str) -> str:
        return "cus_demo_" + secrets.token_hex(7)

    def create_checkout_session(self, params: dict[str, Any], idempotency_key: str) -> CheckoutStarted:
        from portal.payments import demo

        return demo.start_checkout(params)

    def setup_intent(self, setup_intent_id: str) -> dict[str, Any]:
        raise PaymentProviderError(
            REFUSED,
            http_status=502,
            details={"operation": "retrieve SetupIntent", "message": "demo events carry their card"},
        )

    def payment_method(self, payment_method_id: str) -> dict[str, Any]:
        return self.setup_intent(payment_method_id)

    def charge_off_session(self, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        from portal.payments import demo

        return demo.payment_intent(params, idempotency_key)

    def create_refund(self, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        from portal.payments import demo

        return demo.refund(params, idempotency_key)

    def undelivered_events(self, since: int) -> Iterator[dict[str, Any]]:
        return iter(())


class OffGateway:
    """Production without STRIPE_SECRET_KEY: every call is refused, so nothing can be charged,
    saved or simulated. Pages do not offer payment in this mode; this is the backstop."""

    demo = False
    off = True

    def _refuse(self, operation: str) -> NoReturn:
        raise PaymentProviderError(
            PAYMENTS_OFF,
            http_status=503,
            details={
                "operation": operation,
                "message": "online payment is off: STRIPE_SECRET_KEY is not set",
            },
        )

    def create_customer(self, params: dict[str, Any], idempotency_key: str) -> str:
        self._refuse("create customer")

    def create_checkout_session(self, params: dict[str, Any], idempotency_key: str) -> CheckoutStarted:
        self._refuse("create Checkout Session")

    def setup_intent(self, setup_intent_id: str) -> dict[str, Any]:
        self._refuse("retrieve SetupIntent")

    def payment_method(self, payment_method_id: str) -> dict[str, Any]:
        self._refuse("retrieve PaymentMethod")

    def charge_off_session(self, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        self._refuse("charge saved card")

    def create_refund(self, params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        self._refuse("refund payment")

    def undelivered_events(self, since: int) -> Iterator[dict[str, Any]]:
        self._refuse("list undelivered events")


Gateway = StripeGateway | DemoGateway | OffGateway

STRIPE, DEMO, OFF = "stripe", "demo", "off"


def payments_mode(config: Mapping[str, Any] | None = None) -> str:
    """stripe (a secret key is set), demo (none, outside production) or off (none, production)."""
    config = current_app.config if config is None else config
    if config.get("STRIPE_SECRET_KEY"):
        return STRIPE
    return OFF if config.get("ENV_NAME") == "production" else DEMO


def demo_mode() -> bool:
    return payments_mode() == DEMO


def payments_off() -> bool:
    return payments_mode() == OFF


def get_gateway() -> Gateway:
    mode = payments_mode()
    if mode == DEMO:
        return DemoGateway()
    if mode == OFF:
        return OffGateway()
    return StripeGateway(current_app.config)


def warn_if_payments_off(config: Mapping[str, Any]) -> None:
    """At start-up: say loudly that customers cannot pay online, and why."""
    if payments_mode(config) == OFF:
        logging.getLogger("portal.payments").warning(
            "STRIPE_SECRET_KEY is not set: online payment is OFF. Customers cannot pay invoices or "
            "save a card; pay pages show the company's phone and email instead. The demo checkout "
            "never runs in production. Set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET to take payments."
        )


def demo_webhook_secret() -> str:
    """Demo events are signed like Stripe's, with a secret derived from SECRET_KEY (never shown)."""
    digest = hmac.new(
        current_app.config["SECRET_KEY"].encode(), b"handoff-portal.demo-webhook.v1", hashlib.sha256
    ).hexdigest()
    return f"whsec_demo_{digest}"


def webhook_secret() -> str | None:
    if demo_mode():
        return demo_webhook_secret()
    return current_app.config.get("STRIPE_WEBHOOK_SECRET") or None
