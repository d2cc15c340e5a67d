"""Tests for the local Stripe server, driven by the real ``stripe`` library.

Why: every payment test in the portal trusts this server to look like Stripe
to the library.  These tests prove the library parses its answers into typed
objects, raises the right exception classes, and that the recording, replay
and fault injection the app tests rely on behave as documented.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import stripe

try:  # tests/ may or may not become a package while the repo grows
    from tests.stripe_server import (
        CardDetails,
        StripeServer,
        completed_payment_session,
        completed_setup_session,
        decode_query,
        make_event,
        sign_payload,
        succeeded_payment_intent,
        succeeded_setup_intent,
    )
except ImportError:  # pragma: no cover - depends on how pytest set sys.path
    from stripe_server import (  # type: ignore[no-redef]
        CardDetails,
        StripeServer,
        completed_payment_session,
        completed_setup_session,
        decode_query,
        make_event,
        sign_payload,
        succeeded_payment_intent,
        succeeded_setup_intent,
    )

API_KEY = "sk_test_local"
LINE_ITEMS = [
    {
        "price_data": {"currency": "usd", "unit_amount": 1500, "product_data": {"name": "Pool opening"}},
        "quantity": 2,
    }
]
_GLOBALS = ("api_base", "api_key", "default_http_client", "max_network_retries")


@pytest.fixture
def server() -> Iterator[StripeServer]:
    """A fresh server per test; a handler crash fails the test that caused it."""
    with StripeServer() as srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
def global_stripe(server: StripeServer) -> Iterator[StripeServer]:
    """Point the module-level library at the server, then restore everything."""
    saved = {name: getattr(stripe, name) for name in _GLOBALS}
    http_client = stripe.new_default_http_client(timeout=5)
    stripe.api_base = server.url
    stripe.default_http_client = http_client
    stripe.max_network_retries = 0
    try:
        yield server
    finally:
        http_client.close()
        for name, value in saved.items():
            setattr(stripe, name, value)


def make_client(
    server: StripeServer, *, timeout: float = 5, retries: int = 0, api_key: str = API_KEY
) -> tuple[stripe.StripeClient, Any]:
    """A StripeClient aimed at the server plus its HTTP client (to close)."""
    http_client = stripe.new_default_http_client(timeout=timeout)
    client = stripe.StripeClient(
        api_key, base_addresses={"api": server.url}, http_client=http_client, max_network_retries=retries
    )
    return client, http_client


@pytest.fixture
def client(server: StripeServer) -> Iterator[stripe.StripeClient]:
    sc, http_client = make_client(server)
    yield sc
    http_client.close()


def create_session(client: stripe.StripeClient, **extra: Any) -> stripe.checkout.Session:
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": LINE_ITEMS,
        "success_url": "https://portal.test/done?s={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://portal.test/cancel",
        **extra,
    }
    return client.v1.checkout.sessions.create(params=params)  # type: ignore[arg-type]


# ---- encoding ---------------------------------------------------------------


def test_form_decoding_rebuilds_nested_params() -> None:
    body = (
        "metadata[account_id]=5&line_items[0][price_data][unit_amount]=100"
        "&line_items[1][quantity]=2&expand[]=a&expand[]=b&off_session=true&empty="
    )
    assert decode_query(body) == {
        "metadata": {"account_id": "5"},
        "line_items": [{"price_data": {"unit_amount": "100"}}, {"quantity": "2"}],
        "expand": ["a", "b"],
        "off_session": "true",
        "empty": "",
    }


# ---- objects ----------------------------------------------------------------


def test_global_style_customer_is_typed_fixture_with_overlay(global_stripe: StripeServer) -> None:
    customer = stripe.Customer.create(
        api_key=API_KEY, email="ann@pool.test", name="Ann", metadata={"account_id": 5}
    )
    assert isinstance(customer, stripe.Customer)
    assert customer.id.startswith("cus_")
    assert (customer.email, customer.name) == ("ann@pool.test", "Ann")
    assert customer.metadata["account_id"] == "5"
    assert customer.invoice_settings.default_payment_method is None  # fixture field
    fetched = stripe.Customer.retrieve(customer.id, api_key=API_KEY)
    assert fetched.to_dict() == customer.to_dict()


def test_client_style_checkout_session_overlay_and_record(
    client: stripe.StripeClient, server: StripeServer
) -> None:
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": LINE_ITEMS,  # type: ignore[typeddict-item]
            "success_url": "https://portal.test/ok",
            "cancel_url": "https://portal.test/no",
            "client_reference_id": "handoff-7",
            "metadata": {"handoff_id": 7},
            "payment_intent_data": {"metadata": {"handoff_id": 7}},
            "expand": ["payment_intent"],
        },
        options={"idempotency_key": "idem-cs-1"},
    )
    assert isinstance(session, stripe.checkout.Session)
    assert session.id.startswith("cs_test_")
    assert session.url == f"{server.url}/checkout/{session.id}"
    assert (session.amount_total, session.currency) == (3000, "usd")
    assert (session.status, session.payment_status) == ("open", "unpaid")
    assert (session.client_reference_id, session.metadata["handoff_id"]) == ("handoff-7", "7")
    assert session.payment_method_types == ["card"]  # straight from the fixture

    [req] = server.requests_to("post", "/v1/checkout/sessions")
    assert req.idempotency_key == "idem-cs-1"
    assert req.headers["authorization"] == f"Bearer {API_KEY}"
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert req.form["line_items"][0] == {
        "price_data": {"currency": "usd", "unit_amount": "1500", "product_data": {"name": "Pool opening"}},
        "quantity": "2",
    }
    assert req.form["metadata"] == {"handoff_id": "7"}
    assert req.form["payment_intent_data"] == {"metadata": {"handoff_id": "7"}}
    assert req.form["expand"] == ["payment_intent"]
    assert req.status == 200 and req.response["id"] == session.id

    again = client.v1.checkout.sessions.retrieve(session.id)
    assert again.to_dict() == session.to_dict()
    assert server.requests_to("GET", "/v1/checkout/sessions")[0].query == {}


def test_setup_session_completion_creates_intent_and_card(
    client: stripe.StripeClient, server: StripeServer
) -> None:
    customer = client.v1.customers.create(params={"email": "bob@pool.test"})
    session = create_session(
        client,
        mode="setup",
        customer=customer.id,
        line_items=None,
        setup_intent_data={"metadata": {"h": "3"}},
    )
    assert session.payment_status == "no_payment_required"
    assert session.amount_total is None

    event = server.complete_session(session.id)
    assert event["type"] == "checkout.session.completed"
    done = client.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["setup_intent.payment_method"]}
    )
    assert done.status == "complete"
    intent = done.setup_intent
    assert isinstance(intent, stripe.SetupIntent)
    assert (intent.status, intent.customer, intent.metadata["h"]) == ("succeeded", customer.id, "3")
    assert isinstance(intent.payment_method, stripe.PaymentMethod)

    by_customer = client.v1.customers.payment_methods.list(customer.id)
    by_query = client.v1.payment_methods.list(params={"customer": customer.id})
    assert [pm.id for pm in by_customer.data] == [intent.payment_method.id]
    assert [pm.id for pm in by_query.data] == [intent.payment_method.id]


def test_payment_method_defaults_and_configured_card(
    client: stripe.StripeClient, server: StripeServer
) -> None:
    card = client.v1.payment_methods.retrieve("pm_fromhostedcheckout").card
    assert (card.brand, card.last4, card.exp_month, card.exp_year) == ("visa", "4242", 12, 2028)
    server.card = CardDetails(brand="mastercard", last4="4444", exp_month=1, exp_year=2031)
    card = client.v1.payment_methods.retrieve("pm_other").card
    assert (card.brand, card.last4, card.exp_month, card.exp_year) == ("mastercard", "4444", 1, 2031)


def test_idempotent_replay_returns_stored_response(client: stripe.StripeClient, server: StripeServer) -> None:
    opts: Any = {"idempotency_key": "same-key"}
    first = client.v1.customers.create(params={"email": "c@pool.test"}, options=opts)
    second = client.v1.customers.create(params={"email": "c@pool.test"}, options=opts)
    assert second.id == first.id
    first_req, second_req = server.requests_to("POST", "/v1/customers")
    assert (first_req.replayed, second_req.replayed) == (False, True)
    assert second_req.idempotency_key == "same-key"
    assert second.last_response.headers["Idempotent-Replayed"] == "true"

    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create(params={"email": "other@pool.test"}, options=opts)


def test_missing_object_and_unknown_path_are_404(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.customers.retrieve("cus_nope")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.invoices.retrieve("in_123")
    assert "Unrecognized request URL" in str(unknown.value.user_message)
    assert unknown.value.json_body["error"]["type"] == "invalid_request_error"


def test_wrong_api_key_is_401(server: StripeServer) -> None:
    server.api_key = API_KEY
    sc, http_client = make_client(server, api_key="sk_test_wrong")
    try:
        with pytest.raises(stripe.AuthenticationError):
            sc.v1.customers.create()
    finally:
        http_client.close()


# ---- payment intents and faults ---------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        ("card_declined", "requires_payment_method"),
        ("authentication_required", "requires_action"),
    ],
)
def test_off_session_failures_are_card_errors_with_intent(
    client: stripe.StripeClient, server: StripeServer, outcome: str, status: str
) -> None:
    customer = client.v1.customers.create()
    pm = server.add_payment_method(customer=customer.id)
    server.payment_outcome = outcome
    with pytest.raises(stripe.CardError) as exc:
        client.v1.payment_intents.create(
            params={
                "amount": 4200,
                "currency": "usd",
                "customer": customer.id,
                "payment_method": pm["id"],
                "off_session": True,
                "confirm": True,
            }
        )
    err = exc.value
    assert (err.http_status, err.code) == (402, outcome)
    assert err.error is not None and err.error.payment_intent is not None
    intent = err.error.payment_intent
    assert isinstance(intent, stripe.PaymentIntent)
    assert (intent.status, intent.amount) == (status, 4200)
    assert client.v1.payment_intents.retrieve(intent.id).status == status
    [req] = server.requests_to("POST", "/v1/payment_intents")
    assert (req.form["off_session"], req.form["confirm"]) == ("true", "true")


def test_off_session_success_has_charge(client: stripe.StripeClient, server: StripeServer) -> None:
    customer = client.v1.customers.create()
    pm = server.add_payment_method(customer=customer.id)
    intent = client.v1.payment_intents.create(
        params={
            "amount": 4200,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": pm["id"],
            "off_session": True,
            "confirm": True,
            "metadata": {"handoff_id": "9"},
            "expand": ["latest_charge"],
        }
    )
    assert (intent.status, intent.amount_received) == ("succeeded", 4200)
    assert intent.metadata["handoff_id"] == "9"
    assert isinstance(intent.latest_charge, stripe.Charge)
    assert intent.latest_charge.amount == 4200


def test_injected_402_becomes_card_error_with_decline_code(
    client: stripe.StripeClient, server: StripeServer
) -> None:
    server.fail_next(
        402,
        decline_code="insufficient_funds",
        message="Your card has insufficient funds.",
        path_prefix="/v1/payment",
    )
    client.v1.customers.create()  # prefix does not match: not consumed
    with pytest.raises(stripe.CardError) as exc:
        client.v1.payment_intents.create(params={"amount": 100, "currency": "usd"})
    assert exc.value.code == "card_declined"
    assert exc.value.error is not None
    assert exc.value.error.decline_code == "insufficient_funds"
    assert exc.value.user_message == "Your card has insufficient funds."
    assert str(exc.value.request_id).startswith("req_")
    assert (
        client.v1.payment_intents.create(params={"amount": 100, "currency": "usd"}).status
        == "requires_payment_method"
    )


def test_injected_500_becomes_api_error_and_retry_reuses_key(
    client: stripe.StripeClient, server: StripeServer
) -> None:
    server.fail_next(500)
    with pytest.raises(stripe.APIError) as exc:
        client.v1.customers.create()
    assert exc.value.http_status == 500

    retrying, http_client = make_client(server, retries=1)
    try:
        server.fail_next(500, times=1)
        customer = retrying.v1.customers.create(params={"email": "r@pool.test"})
    finally:
        http_client.close()
    failed, succeeded = server.requests_to("POST", "/v1/customers")[-2:]
    assert (failed.status, succeeded.status) == (500, 200)
    assert failed.idempotency_key == succeeded.idempotency_key
    assert server.get_object(customer.id) is not None


def test_hang_with_client_timeout_raises_connection_error(server: StripeServer) -> None:
    sc, http_client = make_client(server, timeout=0.5)
    server.hang_next(5, path_prefix="/v1/customers")
    started = time.monotonic()
    try:
        with pytest.raises(stripe.APIConnectionError):
            sc.v1.customers.create(params={"email": "slow@pool.test"})
    finally:
        http_client.close()
    assert time.monotonic() - started < 4
    assert len(server.requests_to("POST", "/v1/customers")) == 1


def test_hang_with_global_client_timeout(global_stripe: StripeServer) -> None:
    global_stripe.hang_next(5)
    timed = stripe.new_default_http_client(timeout=0.5)
    stripe.default_http_client = timed  # restored by the fixture
    try:
        with pytest.raises(stripe.APIConnectionError):
            stripe.Customer.retrieve("cus_any", api_key=API_KEY)
    finally:
        timed.close()


# ---- events and webhooks ----------------------------------------------------


def test_events_listing_filters_on_delivery_success(
    global_stripe: StripeServer, client: stripe.StripeClient
) -> None:
    server = global_stripe
    ok = server.add_event(
        make_event("customer.created", {"id": "cus_1", "object": "customer"}, created=100), delivered=True
    )
    missed = [
        server.add_event(
            make_event("checkout.session.completed", completed_setup_session(), created=t), delivered=False
        )
        for t in (200, 300)
    ]
    listed = stripe.Event.list(api_key=API_KEY, delivery_success=False)
    assert [e.id for e in listed.data] == [missed[1]["id"], missed[0]["id"]]  # newest first
    assert isinstance(listed.data[0].data.object, stripe.checkout.Session)
    assert server.requests_to("GET", "/v1/events")[0].query == {"delivery_success": "false"}

    delivered = client.v1.events.list(params={"delivery_success": True})
    assert [e.id for e in delivered.data] == [ok["id"]]
    page = client.v1.events.list(params={"limit": 1})
    assert page.has_more and len(page.data) == 1
    assert [e.id for e in page.auto_paging_iter()] == [missed[1]["id"], missed[0]["id"], ok["id"]]
    assert client.v1.events.retrieve(ok["id"]).type == "customer.created"


def test_signed_payload_verifies_and_tampering_fails() -> None:
    secret = "whsec_test_secret"
    session = completed_payment_session(amount_total=5000, customer="cus_9", metadata={"handoff_id": "12"})
    payload = json.dumps(make_event("checkout.session.completed", session))
    header = sign_payload(payload, secret)

    event = stripe.Webhook.construct_event(payload, header, secret)
    assert event.type == "checkout.session.completed"
    obj = event.data.object
    assert isinstance(obj, stripe.checkout.Session)
    assert (obj.status, obj.payment_status, obj.amount_total) == ("complete", "paid", 5000)
    assert obj.payment_intent.startswith("pi_")

    tampered = payload.replace("5000", "5001", 1)  # one byte
    assert len(tampered) == len(payload) and tampered != payload
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(tampered, header, secret)


def test_signature_matches_stripe_scheme() -> None:
    expected = hmac.new(b"whsec_x", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign_payload("{}", "whsec_x", timestamp=1700000000) == (f"t=1700000000,v1={expected}")


def test_intent_builders_parse_as_typed_objects() -> None:
    pi = stripe.PaymentIntent.construct_from(
        succeeded_payment_intent(amount=700, customer="cus_1", metadata={"k": "v"}), API_KEY
    )
    si = stripe.SetupIntent.construct_from(
        succeeded_setup_intent(customer="cus_1", payment_method="pm_1"), API_KEY
    )
    assert (pi.status, pi.amount_received, pi.metadata["k"]) == ("succeeded", 700, "v")
    assert pi.latest_charge.startswith("ch_") and pi.last_payment_error is None
    assert (si.status, si.payment_method, si.usage) == ("succeeded", "pm_1", "off_session")
    assert completed_setup_session(customer="cus_1")["setup_intent"].startswith("seti_")


# ---- hosted checkout stand-in -----------------------------------------------


def test_checkout_page_completion_redirects_to_success(
    client: stripe.StripeClient, server: StripeServer
) -> None:
    session = create_session(client)
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", f"/checkout/{session.id}/complete")
        resp = conn.getresponse()
        resp.read()
    finally:
        conn.close()
    assert resp.status == 303
    assert resp.getheader("Location") == f"https://portal.test/done?s={session.id}"
    done = client.v1.checkout.sessions.retrieve(session.id)
    assert (done.status, done.payment_status) == ("complete", "paid")
    assert server.events[-1]["data"]["object"]["id"] == session.id
