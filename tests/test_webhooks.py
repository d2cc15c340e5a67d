"""POST /stripe/webhook: signatures on the raw body, each event once (also when two deliveries
race), out-of-order events, unknown types, delayed payment methods, failures that Stripe must
retry, and `reconcile-stripe` for deliveries that never arrived."""

from __future__ import annotations

import json
import threading
import time

import pytest

from portal.extensions import csrf
from portal.models import Account, Invoice, StripeEvent
from portal.payments import invoices as invoice_service
from tests.conftest import count_rows
from tests.stripe_server import (
    completed_payment_session,
    completed_setup_session,
    make_event,
    sign_payload,
    succeeded_payment_intent,
    succeeded_setup_intent,
)
from tests.test_payments_support import (  # noqa: F401  (fixtures)
    WEBHOOK_SECRET,
    deliver,
    emails,
    entries,
    fresh,
    live_settings,
    make_invoice,
    post_event,
    snapshot,
    stripe_server,
)


@pytest.fixture(autouse=True)
def live(live_settings, stripe_server):
    return stripe_server


@pytest.fixture
def billed(db, make_account):
    """An account with one open invoice of $165.00; returns (account, invoice)."""
    account = make_account()
    invoice, _ = make_invoice(db, account)
    return account, invoice


def paid_session(account, invoice, **overrides):
    meta = {"invoice_id": str(invoice.id), "account_id": str(account.id), "invoice_number": invoice.number}
    overrides.setdefault("amount_total", invoice.total_cents)
    return completed_payment_session(metadata=meta, **overrides)


def paid_intent(account, invoice, intent_id=None, **overrides):
    meta = {"invoice_id": str(invoice.id), "account_id": str(account.id)}
    return succeeded_payment_intent(
        amount=invoice.total_cents, metadata=meta, intent_id=intent_id, **overrides
    )


def effects(db, account, invoice):
    """What paying changes: (invoice status, receipts, invoice_paid entries)."""
    return (
        fresh(db, Invoice, invoice.id).status,
        len(emails(db, "receipt")),
        len(entries(db, account.id, "invoice_paid")),
    )


# --- Signatures -------------------------------------------------------------------------


def test_bad_signature_is_400_and_changes_nothing(client, db, billed):
    account, invoice = billed
    event = make_event("checkout.session.completed", paid_session(account, invoice))
    before = snapshot(db)
    response = post_event(client, event, secret="whsec_someone_else")
    assert response.status_code == 400 and response.is_json
    assert snapshot(db) == before and fresh(db, Invoice, invoice.id).status == "open"


def test_stale_timestamp_is_400_and_changes_nothing(client, db, billed):
    account, invoice = billed
    event = make_event("checkout.session.completed", paid_session(account, invoice))
    before = snapshot(db)
    response = post_event(client, event, timestamp=int(time.time()) - 301)
    assert response.status_code == 400 and snapshot(db) == before
    assert post_event(client, event, timestamp=int(time.time()) - 200).status_code == 200  # within 300 s


def test_future_timestamp_is_400_and_changes_nothing(client, db, billed):
    # The library only checks the past; a header signed for later would stay replayable.
    account, invoice = billed
    event = make_event("checkout.session.completed", paid_session(account, invoice))
    before = snapshot(db)
    response = post_event(client, event, timestamp=int(time.time()) + 301)
    assert response.status_code == 400 and response.get_json() == {"error": "invalid signature"}
    assert snapshot(db) == before and fresh(db, Invoice, invoice.id).status == "open"
    assert post_event(client, event, timestamp=int(time.time()) + 200).status_code == 200  # clock skew


def test_one_changed_byte_or_a_reserialised_body_fails_verification(client, db, billed):
    account, invoice = billed
    event = make_event("checkout.session.completed", paid_session(account, invoice))
    payload = json.dumps(event)
    header = sign_payload(payload, WEBHOOK_SECRET)
    before = snapshot(db)
    tampered = payload.replace('"amount_total": 16500', '"amount_total": 16501', 1)
    assert tampered != payload
    reserialised = json.dumps(event, indent=1)
    for body in (tampered, reserialised):
        response = client.post(
            "/stripe/webhook",
            data=body,
            content_type="application/json",
            headers={"Stripe-Signature": header},
        )
        assert response.status_code == 400
    assert snapshot(db) == before
    ok = client.post(
        "/stripe/webhook", data=payload, content_type="application/json", headers={"Stripe-Signature": header}
    )
    assert ok.status_code == 200


@pytest.mark.parametrize(
    "headers, body",
    [
        ({}, None),
        ({"Stripe-Signature": "nonsense"}, None),
        ({"Stripe-Signature": "t=1,v1=abc"}, None),
        (None, b"\xff\xfe not utf-8"),
        (None, b"[1, 2, 3]"),
    ],
)
def test_missing_or_garbled_signatures_and_bodies_are_400(client, db, billed, headers, body):
    account, invoice = billed
    before = snapshot(db)
    if body is None:
        payload = json.dumps(make_event("checkout.session.completed", paid_session(account, invoice)))
        response = client.post(
            "/stripe/webhook", data=payload, content_type="application/json", headers=headers
        )
    else:
        text = body.decode("latin-1")
        header = sign_payload(text, WEBHOOK_SECRET) if body.isascii() else "t=1,v1=0"
        response = client.post(
            "/stripe/webhook",
            data=body,
            content_type="application/json",
            headers={"Stripe-Signature": header},
        )
    assert response.status_code == 400 and snapshot(db) == before


@pytest.mark.csrf
def test_the_webhook_is_the_only_csrf_exempt_view_and_needs_no_token(app, client, db, billed):
    account, invoice = billed
    deliver(client, "checkout.session.completed", paid_session(account, invoice))
    assert fresh(db, Invoice, invoice.id).status == "paid"
    exempt = {view for view in csrf._exempt_views if not view.startswith(("portal.api.", "portal.core."))}
    # Bearer-token API aside, the signed webhooks are the only ones: Stripe's and Twilio's.
    assert exempt == {"portal.payments.routes.stripe_webhook", "portal.sms_webhook.routes.inbound"}
    assert not csrf._exempt_blueprints


def test_without_a_webhook_secret_events_are_refused_with_500_so_stripe_retries(app, client, db, billed):
    account, invoice = billed
    app.config["STRIPE_WEBHOOK_SECRET"] = None
    response = post_event(client, make_event("checkout.session.completed", paid_session(account, invoice)))
    assert response.status_code == 500 and count_rows(db, StripeEvent) == 0


# --- Exactly once -----------------------------------------------------------------------


def test_an_event_delivered_twice_takes_effect_once(client, db, billed):
    account, invoice = billed
    event = make_event("checkout.session.completed", paid_session(account, invoice))
    first, second = post_event(client, event), post_event(client, event)
    assert first.status_code == second.status_code == 200
    assert first.get_json()["result"] == "paid" and second.get_json()["result"] == "already processed"
    assert effects(db, account, invoice) == ("paid", 1, 1)
    stored = db.get(StripeEvent, event["id"])
    assert stored.processed_at is not None and stored.type == "checkout.session.completed"


def test_two_concurrent_deliveries_of_one_event_take_effect_once(app, db, billed, monkeypatch):
    account, invoice = billed
    event = make_event("checkout.session.completed", paid_session(account, invoice))
    real_mark_paid = invoice_service.mark_paid

    def slow_mark_paid(*args, **kwargs):
        time.sleep(0.4)  # both deliveries are inside the webhook at once
        return real_mark_paid(*args, **kwargs)

    monkeypatch.setattr(invoice_service, "mark_paid", slow_mark_paid)
    db.commit()
    start = threading.Barrier(2)
    results: list[tuple[int, str]] = []

    def deliver_once():
        browser = app.test_client()
        start.wait()
        response = post_event(browser, event)
        results.append((response.status_code, (response.get_json() or {}).get("result", "")))

    threads = [threading.Thread(target=deliver_once) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(results) == [(200, "already processed"), (200, "paid")]
    assert effects(db, account, invoice) == ("paid", 1, 1)


def test_a_failure_while_applying_rolls_back_answers_500_and_the_retry_applies_it(
    client, db, billed, monkeypatch
):
    account, invoice = billed
    event = make_event("checkout.session.completed", paid_session(account, invoice))
    real_mark_paid = invoice_service.mark_paid
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database hiccup")
        return real_mark_paid(*args, **kwargs)

    monkeypatch.setattr(invoice_service, "mark_paid", flaky)
    before = snapshot(db)
    failed = post_event(client, event)
    assert failed.status_code == 500 and "error" in failed.get_json()
    assert snapshot(db) == before  # not even the event id: Stripe's retry must be applied
    assert post_event(client, event).status_code == 200
    assert effects(db, account, invoice) == ("paid", 1, 1)


# --- Order ------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["intent_first", "session_first"])
def test_out_of_order_events_mark_paid_once_and_never_go_back(client, db, billed, order):
    account, invoice = billed
    intent = paid_intent(account, invoice)
    session = paid_session(account, invoice, payment_intent=intent["id"])
    pairs = [("payment_intent.succeeded", intent), ("checkout.session.completed", session)]
    if order == "session_first":
        pairs.reverse()
    first = deliver(client, *pairs[0])
    assert first.get_json()["result"] == "paid"
    paid_at = fresh(db, Invoice, invoice.id).paid_at
    second = deliver(client, *pairs[1])
    assert second.get_json()["result"] == "already paid"
    assert effects(db, account, invoice) == ("paid", 1, 1)
    assert fresh(db, Invoice, invoice.id).paid_at == paid_at
    # A late "processing" or failure about the same payment does not un-pay it.
    deliver(
        client,
        "checkout.session.completed",
        {**session, "payment_status": "unpaid", "id": session["id"] + "x"},
    )
    deliver(client, "checkout.session.async_payment_failed", session)
    failed_intent = {
        **intent,
        "status": "requires_payment_method",
        "last_payment_error": {"message": "declined", "code": "card_declined"},
    }
    deliver(client, "payment_intent.payment_failed", failed_intent)
    assert effects(db, account, invoice) == ("paid", 1, 1)
    assert emails(db, "payment_failed") == []


def test_a_second_payment_for_a_paid_invoice_is_recorded_for_a_refund(client, db, billed):
    account, invoice = billed
    deliver(client, "payment_intent.succeeded", paid_intent(account, invoice))
    deliver(client, "payment_intent.succeeded", paid_intent(account, invoice))
    assert effects(db, account, invoice) == ("paid", 1, 1)
    [duplicate] = entries(db, account.id, "duplicate_payment")
    assert duplicate.actor == "stripe" and "refund" in duplicate.note


def test_an_amount_below_the_total_leaves_the_invoice_open_for_staff(client, db, billed):
    account, invoice = billed
    deliver(client, "checkout.session.completed", paid_session(account, invoice, amount_total=100))
    assert effects(db, account, invoice) == ("open", 0, 0)
    assert entries(db, account.id, "payment_mismatch")


@pytest.mark.parametrize(
    "event_type, build",
    [
        ("checkout.session.completed", lambda a, i: paid_session(a, i, amount_total=None)),
        ("checkout.session.completed", lambda a, i: paid_session(a, i, currency=None)),
        ("checkout.session.async_payment_succeeded", lambda a, i: paid_session(a, i, amount_total=None)),
        (
            "payment_intent.succeeded",
            lambda a, i: {**paid_intent(a, i), "amount": None, "amount_received": None},
        ),
        (
            "payment_intent.succeeded",
            lambda a, i: {
                k: v for k, v in paid_intent(a, i).items() if k not in ("amount", "amount_received")
            },
        ),
        ("payment_intent.succeeded", lambda a, i: paid_intent(a, i, amount_received="16500")),
    ],
    ids=[
        "session-null-amount",
        "session-null-currency",
        "async-null-amount",
        "intent-null-amounts",
        "intent-no-amount-keys",
        "intent-amount-as-text",
    ],
)
def test_a_signed_event_without_an_amount_and_currency_never_marks_paid(
    client, db, billed, event_type, build
):
    account, invoice = billed
    response = deliver(client, event_type, build(account, invoice))  # acknowledged: not retried
    assert response.status_code == 200
    assert effects(db, account, invoice) == ("open", 0, 0)
    [mismatch] = entries(db, account.id, "payment_mismatch")
    assert mismatch.actor == "stripe" and "left unpaid" in mismatch.note


def test_events_naming_another_accounts_invoice_are_ignored(client, db, billed, make_account):
    account, invoice = billed
    other = make_account(customer_email="other@example.com")
    wrong = {"invoice_id": str(invoice.id), "account_id": str(other.id)}
    deliver(
        client, "checkout.session.completed", completed_payment_session(amount_total=16500, metadata=wrong)
    )
    deliver(client, "payment_intent.succeeded", succeeded_payment_intent(amount=16500, metadata=wrong))
    assert effects(db, account, invoice) == ("open", 0, 0)


def test_unknown_event_types_are_acknowledged_and_ignored(client, db, billed):
    account, invoice = billed
    before = snapshot(db)
    response = deliver(
        client,
        "customer.subscription.updated",
        {"id": "sub_1", "object": "subscription", "metadata": {"invoice_id": str(invoice.id)}},
    )
    assert response.get_json()["result"] == "ignored"
    after = snapshot(db)
    assert after["StripeEvent"] == before["StripeEvent"] + 1
    assert {k: v for k, v in after.items() if k != "StripeEvent"} == {
        k: v for k, v in before.items() if k != "StripeEvent"
    }


# --- Delayed payment methods --------------------------------------------------------------


def test_delayed_payment_processing_then_succeeded(client, db, billed):
    account, invoice = billed
    session = paid_session(account, invoice, payment_status="unpaid")
    assert deliver(client, "checkout.session.completed", session).get_json()["result"] == "processing"
    assert effects(db, account, invoice) == ("processing", 0, 0)
    assert entries(db, account.id, "payment_processing")[0].actor == "stripe"
    deliver(client, "checkout.session.async_payment_succeeded", {**session, "payment_status": "paid"})
    assert effects(db, account, invoice) == ("paid", 1, 1)


def test_delayed_payment_failed_reopens_the_invoice_and_emails_a_pay_link(client, db, billed):
    account, invoice = billed
    session = paid_session(account, invoice, payment_status="unpaid")
    deliver(client, "checkout.session.completed", session)
    deliver(client, "checkout.session.async_payment_failed", session)
    assert effects(db, account, invoice) == ("open", 0, 0)
    [email] = emails(db, "payment_failed")
    assert "/pay/t/" in email.text_body and invoice.number in email.text_body
    [failed] = entries(db, account.id, "payment_failed")
    assert failed.actor == "stripe"
    # A decline inside Checkout (customer still there) is recorded, with no email.
    deliver(
        client,
        "payment_intent.payment_failed",
        {
            **paid_intent(account, invoice),
            "status": "requires_payment_method",
            "last_payment_error": {"message": "Your card was declined.", "code": "card_declined"},
        },
    )
    assert len(entries(db, account.id, "payment_failed")) == 2 and len(emails(db, "payment_failed")) == 1


# --- Cards --------------------------------------------------------------------------------


@pytest.fixture
def customer_account(db, make_account, live):
    account = make_account()
    account.stripe_customer_id = "cus_known"
    db.commit()
    return account


def test_setup_intent_succeeded_saves_the_card_it_names(client, db, customer_account, live):
    pm = live.add_payment_method(customer="cus_known")
    intent = succeeded_setup_intent(
        customer="cus_known", payment_method=pm["id"], metadata={"account_id": str(customer_account.id)}
    )
    deliver(client, "setup_intent.succeeded", intent)
    account = fresh(db, Account, customer_account.id)
    assert account.stripe_payment_method_id == pm["id"] and account.card_last4 == "4242"
    assert live.requests_to("GET", f"/v1/payment_methods/{pm['id']}")


def test_a_late_event_about_an_older_card_keeps_the_newer_one(client, db, customer_account, live):
    from tests.stripe_server import CardDetails

    old_pm = live.add_payment_method(customer="cus_known", card=CardDetails(last4="1111"))
    new_pm = live.add_payment_method(customer="cus_known", card=CardDetails(last4="4444", exp_year=2031))
    meta = {"account_id": str(customer_account.id)}
    now = int(time.time())
    newer = succeeded_setup_intent(
        customer="cus_known", payment_method=new_pm["id"], metadata=meta, created=now
    )
    older = succeeded_setup_intent(
        customer="cus_known", payment_method=old_pm["id"], metadata=meta, created=now - 600
    )
    deliver(client, "setup_intent.succeeded", newer)
    deliver(client, "setup_intent.succeeded", older)
    account = fresh(db, Account, customer_account.id)
    assert (account.card_last4, account.card_exp) == ("4444", "12/2031")
    assert len(entries(db, account.id, "card_saved")) == 1


def test_a_setup_event_for_another_stripe_customer_is_ignored(client, db, customer_account, live):
    pm = live.add_payment_method(customer="cus_stranger")
    intent = succeeded_setup_intent(
        customer="cus_stranger", payment_method=pm["id"], metadata={"account_id": str(customer_account.id)}
    )
    deliver(client, "setup_intent.succeeded", intent)
    assert fresh(db, Account, customer_account.id).stripe_payment_method_id is None


def test_stripe_down_while_fetching_the_card_answers_500_and_the_retry_saves_it(
    client, db, customer_account, live
):
    pm = live.add_payment_method(customer="cus_known")
    intent = live.add_object(succeeded_setup_intent(customer="cus_known", payment_method=pm["id"]))
    session = completed_setup_session(
        customer="cus_known", setup_intent=intent["id"], metadata={"account_id": str(customer_account.id)}
    )
    event = make_event("checkout.session.completed", session)
    live.fail_next(500, path_prefix="/v1/setup_intents")
    before = snapshot(db)
    assert post_event(client, event).status_code == 500
    assert snapshot(db) == before
    assert post_event(client, event).status_code == 200
    assert fresh(db, Account, customer_account.id).card_last4 == "4242"


def test_a_failed_card_setup_is_recorded(client, db, customer_account):
    meta = {"account_id": str(customer_account.id)}
    intent = {
        **succeeded_setup_intent(customer="cus_known", metadata=meta),
        "status": "requires_payment_method",
        "last_setup_error": {"code": "card_declined", "message": "Your card was declined."},
    }
    deliver(client, "setup_intent.setup_failed", intent)
    [failed] = entries(db, customer_account.id, "card_setup_failed")
    assert failed.actor == "stripe" and failed.note == "Your card was declined."
    assert fresh(db, Account, customer_account.id).stripe_payment_method_id is None


# --- Missed deliveries ----------------------------------------------------------------------


def test_reconcile_applies_events_stripe_never_delivered_once(client, db, billed, runner, live):
    account, invoice = billed
    delivered = live.add_event(
        make_event("checkout.session.completed", paid_session(account, invoice)), delivered=True
    )
    missed = live.add_event(
        make_event("payment_intent.succeeded", paid_intent(account, invoice)), delivered=False
    )
    ancient = live.add_event(
        make_event(
            "payment_intent.succeeded", paid_intent(account, invoice), created=int(time.time()) - 40 * 86400
        ),
        delivered=False,
    )

    dry = runner.invoke(args=["reconcile-stripe", "--dry-run"])
    assert dry.exit_code == 0 and f"{missed['id']} payment_intent.succeeded: missing" in dry.output
    assert fresh(db, Invoice, invoice.id).status == "open"
    [listing] = live.requests_to("GET", "/v1/events")
    assert listing.query["delivery_success"] == "false" and "gte" in listing.query["created"]

    result = runner.invoke(args=["reconcile-stripe"])
    assert result.exit_code == 0, result.output
    assert f"{missed['id']} payment_intent.succeeded: paid" in result.output
    assert delivered["id"] not in result.output and ancient["id"] not in result.output
    assert effects(db, account, invoice) == ("paid", 1, 1)
    again = runner.invoke(args=["reconcile-stripe"])
    assert "already processed" in again.output and effects(db, account, invoice) == ("paid", 1, 1)
    # ...and a webhook retry arriving after reconcile changes nothing either.
    assert post_event(client, missed).get_json()["result"] == "already processed"


def test_reconcile_reports_stripe_being_unreachable(db, runner, live):
    live.fail_next(500, path_prefix="/v1/events")
    result = runner.invoke(args=["reconcile-stripe"])
    assert result.exit_code == 1 and "Stripe:" in result.output
