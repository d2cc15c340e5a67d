"""Issue 21 part B against the local Stripe (the real `stripe` library): declined autopay retried
on the company's days with an email each time and an office follow-up after the last; the
expiring-card email; one balance paid in one Checkout (all covered invoices or none); the
statement's running balance; staff void and refund (webhook-confirmed), and who may do what."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

import pytest
from flask import Flask
from sqlalchemy import select

from portal.db import get_db
from portal.models import Account, CompanySettings, FormSubmission, Invoice, RecordEntry
from portal.payments import autopay, cards
from portal.payments import statement as statement_service
from portal.payments.gateway import get_gateway
from tests.conftest import count_rows, form_fields
from tests.stripe_server import CardDetails, StripeServer
from tests.test_payments import autopay_account, save_card
from tests.test_payments_support import (  # noqa: F401  (fixtures)
    button_form,
    deliver,
    emails,
    entries,
    fresh,
    live_settings,
    make_invoice,
    pay_path,
    post_event,
    refresh,
    sign_up,
    snapshot,
    stripe_server,
)

T0 = datetime(2026, 12, 1, 17, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def live(live_settings, stripe_server):
    return stripe_server


def run_autopay(app: Flask, db, at: datetime) -> list[autopay.Charged]:
    """The autopay run as the worker makes it, at a chosen moment, in a session of its own."""
    refresh(db)
    with app.app_context():
        return autopay.run(get_db(), get_gateway(), now=at)


def charge_requests(server: StripeServer) -> list:
    return server.requests_to("POST", "/v1/payment_intents")


# --- Failed payments: retries, emails, the office follow-up ---------------------------------


def test_a_declined_charge_is_retried_on_days_3_and_5_with_an_email_each_time_then_paid(
    app, client, db, make_account, live
):
    account = autopay_account(client, db, make_account, live)
    invoice, _ = make_invoice(db, account)
    live.queue_payment_outcomes("card_declined", "card_declined", "succeeded")

    [first] = run_autopay(app, db, T0)
    assert first.outcome == "declined"
    invoice = fresh(db, Invoice, invoice.id)
    assert invoice.status == "open" and invoice.autopay_failures == 1
    assert invoice.autopay_retry_at == T0 + timedelta(days=3)
    [email] = emails(db, "payment_failed")
    assert "/pay/t/" in email.text_body and "?next=card" in email.text_body
    assert "try your card on file again on" in email.text_body and "December 4, 2026" in email.text_body

    # Not due yet: nothing is charged on day 2.
    assert run_autopay(app, db, T0 + timedelta(days=2, hours=23)) == []
    assert len(charge_requests(live)) == 1

    [second] = run_autopay(app, db, T0 + timedelta(days=3))
    assert second.outcome == "declined"
    invoice = fresh(db, Invoice, invoice.id)
    assert invoice.autopay_failures == 2 and invoice.autopay_retry_at == T0 + timedelta(days=5)
    assert len(emails(db, "payment_failed")) == 2
    assert "December 6, 2026" in emails(db, "payment_failed")[-1].text_body

    [third] = run_autopay(app, db, T0 + timedelta(days=5))
    assert third.outcome == "submitted"
    keys = [request.idempotency_key for request in charge_requests(live)]
    assert [key.rsplit("-", 1)[1] for key in keys] == ["1", "2", "3"] and len(set(keys)) == 3
    deliver(
        client,
        "payment_intent.succeeded",
        live.get_object(fresh(db, Invoice, invoice.id).stripe_payment_intent_id),
    )
    invoice = fresh(db, Invoice, invoice.id)
    assert invoice.status == "paid" and invoice.autopay_retry_at is None
    assert len(emails(db, "payment_failed")) == 2 and len(emails(db, "receipt")) == 1
    assert entries(db, account.id, "follow_up_raised") == []
    assert run_autopay(app, db, T0 + timedelta(days=7)) == []


def test_after_the_last_retry_fails_the_office_inbox_has_one_follow_up(app, client, db, make_account, live):
    from portal import follow_ups

    account = autopay_account(client, db, make_account, live)
    invoice, _ = make_invoice(db, account)
    live.payment_outcome = "card_declined"
    for day in (0, 3, 5, 7):
        [result] = run_autopay(app, db, T0 + timedelta(days=day, minutes=5))
        assert result.outcome == "declined", day
    invoice = fresh(db, Invoice, invoice.id)
    assert invoice.autopay_failures == 4 and invoice.autopay_retry_at is None and invoice.status == "open"
    sent = emails(db, "payment_failed")
    assert len(sent) == 4
    assert "will not try your card on file again" in sent[-1].text_body
    assert "will not try" not in sent[0].text_body

    [raised] = entries(db, account.id, "follow_up_raised")
    open_ones = follow_ups.open_for(db, fresh(db, Account, account.id))
    assert [(f.kind, f.key) for f in open_ones] == [("payment_failed", f"invoice:{invoice.id}")]
    assert invoice.number in open_ones[0].summary

    # Later runs leave it to the office: no charge, no email, no second follow-up.
    assert run_autopay(app, db, T0 + timedelta(days=30)) == []
    assert len(charge_requests(live)) == 4 and len(emails(db, "payment_failed")) == 4
    assert len(entries(db, account.id, "follow_up_raised")) == 1
    assert raised.actor == "system"


def test_the_retry_days_come_from_settings(app, client, db, make_account, live):
    db.add(CompanySettings(name="Blue Lagoon", autopay_retry_days="2", readiness_checklist=[]))
    db.commit()
    account = autopay_account(client, db, make_account, live)
    invoice, _ = make_invoice(db, account)
    live.payment_outcome = "card_declined"
    run_autopay(app, db, T0)
    assert fresh(db, Invoice, invoice.id).autopay_retry_at == T0 + timedelta(days=2)
    run_autopay(app, db, T0 + timedelta(days=2))
    assert fresh(db, Invoice, invoice.id).autopay_retry_at is None
    assert len(entries(db, account.id, "follow_up_raised")) == 1


def test_settings_refuse_retry_days_out_of_order_and_keep_the_old_ones(client, db, make_staff, staff):
    staff.login(make_staff("admin"))
    page = client.get("/staff/settings").get_data(as_text=True)
    data = {
        **form_fields(page),
        "name": "Blue Lagoon",
        "brand_color": "#0b5cab",
        "currency": "USD",
        "timezone": "America/Phoenix",
        "autopay_retry_days": "7, 3",
    }
    response = client.post("/staff/settings", data=data)
    assert response.status_code == 400
    assert "rising order" in response.get_data(as_text=True)
    refresh(db)
    saved = db.scalars(select(CompanySettings)).first()
    assert saved is None or saved.autopay_retry_days == "3,5,7"
    response = client.post("/staff/settings", data={**data, "autopay_retry_days": "2,4"})
    assert response.status_code in (302, 303), response.get_data(as_text=True)
    refresh(db)
    assert db.scalars(select(CompanySettings)).one().autopay_retry_days == "2, 4"


def test_the_card_link_in_the_failed_payment_email_opens_the_card_page(app, client, db, make_account, live):
    account = autopay_account(client, db, make_account, live)
    make_invoice(db, account)
    live.payment_outcome = "authentication_required"
    run_autopay(app, db, T0)
    [email] = emails(db, "payment_failed")
    link = re.search(r"http://localhost(/pay/t/\S+\?next=card)", email.text_body).group(1)
    other = app.test_client()
    response = other.get(link)
    assert response.status_code == 302 and response.headers["Location"] == "/pay/card"
    assert "Replace my card" in other.get("/pay/card").get_data(as_text=True)
    assert "save a new card" in email.html_body


def test_a_card_expiring_next_month_is_flagged_once_per_card(app, client, db, make_account, live):
    live.card = CardDetails(exp_month=1, exp_year=2027)
    account = autopay_account(client, db, make_account, live)
    other = autopay_account(client, db, make_account, live)
    live.card = CardDetails(exp_month=6, exp_year=2027)
    save_card(client, db, live, other)  # the other customer's card is good till June

    def warn(today: date) -> int:
        refresh(db)
        with app.app_context():
            return len(cards.warn_expiring_cards(get_db(), today=today))

    assert warn(date(2026, 11, 30)) == 0  # two months ahead: not yet
    assert warn(date(2026, 12, 2)) == 1
    assert warn(date(2026, 12, 3)) == 0  # once per card
    [email] = emails(db, "card_expiring")
    assert email.account_id == account.id
    assert "Visa ending 4242, expires 01/27" in email.text_body and "/pay/card" in email.text_body
    [entry] = entries(db, account.id, "card_expiry_notice")
    assert entry.details["payment_method"] == fresh(db, Account, account.id).stripe_payment_method_id

    # A new card with the same expiry is a new card: its own notice.
    live.card = CardDetails(exp_month=1, exp_year=2027)
    save_card(client, db, live, account)
    assert warn(date(2026, 12, 20)) == 1
    assert len(emails(db, "card_expiring")) == 2


def test_the_worker_warns_of_expiring_cards_with_the_daily_autopay_run():
    from datetime import time as clock_time
    from zoneinfo import ZoneInfo

    from portal.worker import build_tasks

    now = datetime(2026, 3, 2, 8, 30, tzinfo=timezone.utc)
    names = [task.name for task in build_tasks(now, 10, None, clock_time(10, 0), ZoneInfo("UTC"))]
    assert names == ["outbox", "overdue work", "autopay", "expiring cards"]


# --- One balance -------------------------------------------------------------------------


def billed_three(client, db, make_account) -> tuple[Account, list[Invoice]]:
    account = make_account()
    sign_up(client, db, account, billing="Invoice")
    account = fresh(db, Account, account.id)
    made = [
        make_invoice(db, account, lines=[(f"Service {n}", cents)])[0]
        for n, cents in ((1, 16500), (2, 2000), (3, 3550))
    ]
    return account, made


def start_balance(client) -> tuple[str, dict[str, str]]:
    page = client.get("/pay/invoices").get_data(as_text=True)
    data = button_form(page, "/pay/balance/checkout")
    response = client.post("/pay/balance/checkout", data=data)
    assert response.status_code == 303, response.get_data(as_text=True)
    return response.headers["Location"], data


def test_paying_the_balance_in_one_checkout_pays_every_covered_invoice(client, db, make_account, live):
    account, made = billed_three(client, db, make_account)
    page = client.get("/pay/invoices").get_data(as_text=True)
    assert "Your balance: <strong>$220.50</strong>" in page
    assert "Pay all 3 invoices: $220.50 now" in page

    location, data = start_balance(client)
    assert location.startswith(f"{live.url}/checkout/")
    again = client.post("/pay/balance/checkout", data=data)  # a double click
    assert again.status_code == 303 and again.headers["Location"] == location
    [request] = live.requests_to("POST", "/v1/checkout/sessions")
    assert request.idempotency_key == data["form_id"]
    assert request.form["metadata"] == {
        "account_id": str(account.id),
        "invoice_ids": ",".join(str(i.id) for i in made),
        "purpose": "balance",
    }
    assert [item["price_data"]["unit_amount"] for item in request.form["line_items"]] == [
        "16500",
        "2000",
        "3550",
    ]
    assert (
        request.form["payment_intent_data"]["metadata"]["invoice_ids"]
        == request.form["metadata"]["invoice_ids"]
    )

    # Back from Checkout before the event: nothing is paid.
    assert "We're confirming your payment" in client.get("/pay/balance/done").get_data(as_text=True)
    assert {fresh(db, Invoice, i.id).status for i in made} == {"open"}

    event = live.complete_session(location.rsplit("/", 1)[1])
    assert post_event(client, event).get_json()["result"] == "paid"
    assert {fresh(db, Invoice, i.id).status for i in made} == {"paid"}
    # One payment, one receipt: every invoice it paid named, and the total.
    [receipt] = emails(db, "receipt")
    paid_entries = entries(db, account.id, "invoice_paid")
    assert len(paid_entries) == 3 and {e.details["email_id"] for e in paid_entries} == {receipt.id}
    assert receipt.subject.endswith(
        f"receipt for invoices {made[0].number}, {made[1].number}, {made[2].number}"
    )
    assert "We received your payment of $220.50 for 3 invoices on" in receipt.text_body
    for invoice, amount in zip(made, ("$165.00", "$20.00", "$35.50"), strict=True):
        assert f"- Invoice {invoice.number}: {amount}" in receipt.text_body
        assert f"Invoice {invoice.number}</td>" in receipt.html_body
    assert "Total paid: $220.50" in receipt.text_body and "$220.50</td>" in receipt.html_body
    assert "Thank you, your payment is confirmed" in client.get("/pay/balance/done").get_data(as_text=True)
    assert "Your balance: <strong>$0.00</strong>" in client.get("/pay/invoices").get_data(as_text=True)

    # A replay, and Stripe's payment_intent.succeeded for the same payment, change nothing.
    assert post_event(client, event).get_json()["result"] == "already processed"
    intent = live.get_object(event["data"]["object"]["payment_intent"])
    assert deliver(client, "payment_intent.succeeded", intent).get_json()["result"] == "already paid"
    assert len(emails(db, "receipt")) == 1 and entries(db, account.id, "duplicate_payment") == []


def test_a_balance_of_one_invoice_gets_that_invoices_own_receipt(client, db, make_account, live):
    account = make_account()
    sign_up(client, db, account, billing="Invoice")
    invoice, _ = make_invoice(db, fresh(db, Account, account.id), lines=[("Service 1", 16500)])
    location, _ = start_balance(client)
    assert (
        post_event(client, live.complete_session(location.rsplit("/", 1)[1])).get_json()["result"] == "paid"
    )
    [receipt] = emails(db, "receipt")
    assert receipt.subject.endswith(f"receipt for invoice {invoice.number}")
    assert "- Service 1: $165.00" in receipt.text_body and "Total paid: $165.00" in receipt.text_body


def test_an_amount_short_of_the_balance_pays_none_of_the_invoices(client, db, make_account, live):
    account, made = billed_three(client, db, make_account)
    location, _ = start_balance(client)
    event = live.complete_session(location.rsplit("/", 1)[1])
    event["data"]["object"]["amount_total"] = 22050 - 1
    before = snapshot(db)
    assert post_event(client, event).get_json()["result"] == "amount mismatch recorded"
    assert {fresh(db, Invoice, i.id).status for i in made} == {"open"}
    assert emails(db, "receipt") == []
    [mismatch] = entries(db, account.id, "payment_mismatch")
    assert all(i.number in mismatch.note for i in made)
    assert snapshot(db)["RecordEntry"] == before["RecordEntry"] + 1


def test_a_balance_event_naming_another_accounts_invoice_pays_nothing(client, db, make_account, live):
    account, made = billed_three(client, db, make_account)
    stranger = make_account(customer_email="stranger@example.com")
    theirs, _ = make_invoice(db, stranger, lines=[("Theirs", 1000)])
    location, _ = start_balance(client)
    event = live.complete_session(location.rsplit("/", 1)[1])
    ids = event["data"]["object"]["metadata"]["invoice_ids"]
    event["data"]["object"]["metadata"]["invoice_ids"] = f"{ids},{theirs.id}"
    event["data"]["object"]["amount_total"] += 1000
    assert post_event(client, event).get_json()["result"] == "ignored"
    assert {fresh(db, Invoice, i.id).status for i in [*made, theirs]} == {"open"}


def test_nothing_open_means_no_balance_button_and_no_checkout(client, db, make_account, live):
    account = make_account()
    sign_up(client, db, account, billing="Invoice")
    page = client.get("/pay/invoices").get_data(as_text=True)
    assert "Nothing to pay right now" in page and "/pay/balance/checkout" not in page
    response = client.post("/pay/balance/checkout", data={"form_id": "z" * 24})
    assert response.status_code == 409 and "nothing to pay" in response.get_data(as_text=True)
    assert live.requests_to("POST", "/v1/checkout/sessions") == []


@pytest.mark.csrf
def test_the_balance_button_needs_the_csrf_token(client, db, make_account, live):
    account = make_account()
    _, url = make_invoice(db, account)
    client.get(pay_path(url))
    data = button_form(client.get("/pay/invoices").get_data(as_text=True), "/pay/balance/checkout")
    data.pop("csrf_token")
    before = snapshot(db)
    assert client.post("/pay/balance/checkout", data=data).status_code == 400
    assert snapshot(db) == before and live.requests_to("POST", "/v1/checkout/sessions") == []


# --- Statement -----------------------------------------------------------------------------


def statement_rows(page: str) -> list[tuple[str, str, str]]:
    body = page[page.index("<tbody>") : page.index("</tbody>")]
    rows = re.findall(r"<tr class=\"line-(\w+)\">(.*?)</tr>", body, re.S)
    found = []
    for kind, row in rows:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        found.append((kind, re.sub(r"<.*", "", cells[1]).strip(), cells[3].strip()))
    return found


def test_the_statement_shows_a_running_balance_over_invoices_payments_and_voids(
    client, db, make_account, make_staff, staff, live
):
    account = make_account()
    a, url = make_invoice(db, account, lines=[("March", 10000)])
    b, _ = make_invoice(db, account, lines=[("Filter", 5000)])
    c, _ = make_invoice(db, account, lines=[("April", 3000)])
    customer = client.application.test_client()
    customer.get(pay_path(url))
    # A is paid through Checkout, B voided by the office, C stays open.
    page = customer.get(f"/pay/invoices/{a.id}").get_data(as_text=True)
    response = customer.post(
        f"/pay/invoices/{a.id}/checkout", data=button_form(page, f"/pay/invoices/{a.id}/checkout")
    )
    post_event(client, live.complete_session(response.headers["Location"].rsplit("/", 1)[1]))
    staff.login(make_staff("office"))
    form = form_fields(client.get(f"/pay/staff/invoices/{b.id}/void").get_data(as_text=True))
    assert (
        client.post(
            f"/pay/staff/invoices/{b.id}/void", data={**form, "reason": "Filter was under warranty"}
        ).status_code
        == 302
    )

    page = customer.get("/pay/statement").get_data(as_text=True)
    assert statement_rows(page) == [
        ("invoice", f"Invoice {a.number}", "$100.00"),
        ("invoice", f"Invoice {b.number}", "$150.00"),
        ("invoice", f"Invoice {c.number}", "$180.00"),
        ("payment", f"Payment for {a.number}, thank you", "$80.00"),
        ("void", f"{b.number} voided", "$30.00"),
    ]
    assert "Filter was under warranty" in page
    assert re.search(r"Balance due</th><td class=\"num\"><strong>\$30.00</strong>", page)
    assert "@media print" in client.get("/static/app.css").get_data(as_text=True)
    refresh(db)
    shown = statement_service.statement(db, fresh(db, Account, account.id))
    assert shown.balance_cents == shown.lines[-1].balance_cents == 3000
    assert [i.id for i in shown.payable] == [c.id]


def test_a_customer_sees_only_their_own_statement_and_invoices(app, db, make_account, live):
    ann = make_account(customer_name="Ann First", customer_email="ann@example.com")
    bob = make_account(customer_name="Bob Second", customer_email="bob@example.com")
    ann_invoice, ann_url = make_invoice(db, ann, lines=[("Ann's service", 1000)])
    bob_invoice, _ = make_invoice(db, bob, lines=[("Bob's service", 2000)])
    browser = app.test_client()
    browser.get(pay_path(ann_url))
    for path in ("/pay/statement", "/pay/invoices", "/pay/balance/done"):
        page = browser.get(path).get_data(as_text=True)
        assert ann_invoice.number in page or path == "/pay/balance/done"
        assert bob_invoice.number not in page and "Bob Second" not in page, path
    assert browser.get(f"/pay/invoices/{bob_invoice.id}").status_code == 404
    browser.post(
        "/pay/balance/checkout",
        data=button_form(browser.get("/pay/invoices").get_data(as_text=True), "/pay/balance/checkout"),
    )
    [request] = live.requests_to("POST", "/v1/checkout/sessions")
    assert request.form["metadata"]["invoice_ids"] == str(ann_invoice.id)


# --- Void and refund ------------------------------------------------------------------------


def adjust(client, invoice: Invoice, action: str, reason: str | None = "Billed twice for March"):
    page = client.get(f"/pay/staff/invoices/{invoice.id}/{action}").get_data(as_text=True)
    data = form_fields(page)
    if reason is not None:
        data["reason"] = reason
    return client.post(f"/pay/staff/invoices/{invoice.id}/{action}", data=data), data


def paid_invoice(client, db, make_account, live) -> tuple[Account, Invoice, object]:
    """An invoice the customer paid through Checkout; returns the customer's client too."""
    account = make_account()
    invoice, url = make_invoice(db, account)
    customer = client.application.test_client()
    customer.get(pay_path(url))
    page = customer.get(f"/pay/invoices/{invoice.id}").get_data(as_text=True)
    response = customer.post(
        f"/pay/invoices/{invoice.id}/checkout", data=button_form(page, f"/pay/invoices/{invoice.id}/checkout")
    )
    post_event(client, live.complete_session(response.headers["Location"].rsplit("/", 1)[1]))
    invoice = fresh(db, Invoice, invoice.id)
    assert invoice.status == "paid"
    return account, invoice, customer


def test_void_needs_a_reason_takes_unpaid_invoices_only_and_is_recorded(
    client, db, make_account, make_staff, staff, live
):
    office = make_staff("office")
    staff.login(office)
    account = make_account()
    invoice, _ = make_invoice(db, account)

    before = snapshot(db)
    response, _ = adjust(client, invoice, "void", reason="  ")
    assert response.status_code == 400 and "Give a reason" in response.get_data(as_text=True)
    assert snapshot(db) == before and fresh(db, Invoice, invoice.id).status == "open"

    response, data = adjust(client, invoice, "void")
    assert response.status_code == 302
    invoice = fresh(db, Invoice, invoice.id)
    assert invoice.status == "void" and invoice.adjustment_reason == "Billed twice for March"
    [entry] = entries(db, account.id, "invoice_voided")
    assert entry.actor == f"staff:{office.id}" and entry.note == "Billed twice for March"
    # The same form again: one void.
    assert client.post(f"/pay/staff/invoices/{invoice.id}/void", data=data).status_code == 302
    assert len(entries(db, account.id, "invoice_voided")) == 1

    # A paid invoice is refused, and nothing changes.
    _, paid, _ = paid_invoice(client, db, make_account, live)
    before = snapshot(db)
    response, _ = adjust(client, paid, "void")
    assert response.status_code == 409 and "only an unpaid invoice can be voided" in response.get_data(
        as_text=True
    )
    assert snapshot(db) == before and fresh(db, Invoice, paid.id).status == "paid"


def test_refund_is_pending_until_stripes_event_then_refunded_once(
    client, db, make_account, make_staff, staff, live
):
    account, invoice, customer = paid_invoice(client, db, make_account, live)
    office = make_staff("office")
    staff.login(office)

    before = snapshot(db)
    response, _ = adjust(client, invoice, "refund", reason=None)
    assert response.status_code == 400 and snapshot(db) == before
    assert live.requests_to("POST", "/v1/refunds") == []

    response, data = adjust(client, invoice, "refund", reason="Visit cancelled by us")
    assert response.status_code == 302
    again = client.post(f"/pay/staff/invoices/{invoice.id}/refund", data=data)  # a double submit
    assert again.status_code == 302
    [request] = live.requests_to("POST", "/v1/refunds")
    assert request.idempotency_key == data["form_id"]
    assert request.form["payment_intent"] == invoice.stripe_payment_intent_id
    assert request.form["amount"] == "16500" and request.form["metadata"]["invoice_id"] == str(invoice.id)
    invoice = fresh(db, Invoice, invoice.id)
    assert invoice.status == "refund_pending" and invoice.refunded_at is None
    [asked] = entries(db, account.id, "refund_requested")
    assert asked.actor == f"staff:{office.id}" and asked.note == "Visit cancelled by us"
    assert "Refund pending" in customer.get("/pay/invoices").get_data(as_text=True)
    assert "Refund pending for" in customer.get("/pay/statement").get_data(as_text=True)

    event = live.settle_refund(invoice.stripe_refund_id)
    assert post_event(client, event).get_json()["result"] == "refunded"
    invoice = fresh(db, Invoice, invoice.id)
    assert invoice.status == "refunded" and invoice.refunded_at is not None
    # Replays, and Stripe's charge.refunded for the same refund, change nothing.
    assert post_event(client, event).get_json()["result"] == "already processed"
    assert (
        deliver(client, "refund.updated", live.get_object(invoice.stripe_refund_id)).get_json()["result"]
        == "already refunded"
    )
    charge = live.get_object(live.get_object(invoice.stripe_refund_id)["charge"])
    assert deliver(client, "charge.refunded", charge).get_json()["result"] == "already refunded"
    assert len(entries(db, account.id, "invoice_refunded")) == 1
    assert len(live.requests_to("POST", "/v1/refunds")) == 1

    page = customer.get("/pay/statement").get_data(as_text=True)
    assert [row[2] for row in statement_rows(page)] == ["$165.00", "$0.00", "$165.00", "$0.00"]
    assert "Visit cancelled by us" in page

    # A refunded invoice cannot be refunded again.
    response, _ = adjust(client, invoice, "refund")
    assert response.status_code == 409 and len(live.requests_to("POST", "/v1/refunds")) == 1


def test_a_failed_refund_puts_the_invoice_back_to_paid(client, db, make_account, make_staff, staff, live):
    account, invoice, _ = paid_invoice(client, db, make_account, live)
    staff.login(make_staff("admin"))
    live.refund_status = "pending"
    adjust(client, invoice, "refund")
    refund_id = fresh(db, Invoice, invoice.id).stripe_refund_id
    assert (
        deliver(client, "refund.updated", live.get_object(refund_id)).get_json()["result"] == "refund pending"
    )
    assert fresh(db, Invoice, invoice.id).status == "refund_pending"
    assert post_event(client, live.settle_refund(refund_id, "failed")).get_json()["result"] == "refund failed"
    assert fresh(db, Invoice, invoice.id).status == "paid"
    assert len(entries(db, account.id, "refund_failed")) == 1


def test_refund_refuses_unpaid_invoices_without_calling_stripe(
    client, db, make_account, make_staff, staff, live
):
    staff.login(make_staff("office"))
    invoice, _ = make_invoice(db, make_account())
    before = snapshot(db)
    response, _ = adjust(client, invoice, "refund")
    assert response.status_code == 409 and "only a paid invoice can be refunded" in response.get_data(
        as_text=True
    )
    assert snapshot(db) == before and live.requests_to("POST", "/v1/refunds") == []


def test_an_invoice_credited_in_full_is_settled_and_refund_refuses_it_without_calling_stripe(
    client, db, make_account, make_staff, staff, live
):
    staff.login(make_staff("office"))
    invoice, _ = make_invoice(db, make_account(), lines=[("March", 16500), ("Promotion SPRING", -16500)])
    invoice = fresh(db, Invoice, invoice.id)
    assert (invoice.status, invoice.total_cents) == ("paid", 0)
    before = snapshot(db)
    response, _ = adjust(client, invoice, "refund", reason="Asked for it")
    assert response.status_code == 409
    assert "credited in full: nothing was paid" in response.get_data(as_text=True)
    assert snapshot(db) == before and live.requests_to("POST", "/v1/refunds") == []
    assert fresh(db, Invoice, invoice.id).status == "paid"


def test_a_stripe_error_on_refund_leaves_the_invoice_paid_and_is_recorded(
    client, db, make_account, make_staff, staff, live
):
    account, invoice, _ = paid_invoice(client, db, make_account, live)
    staff.login(make_staff("office"))
    live.fail_next(500, path_prefix="/v1/refunds")
    response, data = adjust(client, invoice, "refund")
    assert response.status_code == 502
    assert fresh(db, Invoice, invoice.id).status == "paid"
    assert len(entries(db, account.id, "stripe_error")) == 1
    refresh(db)
    assert db.get(FormSubmission, data["form_id"]) is None  # the same form may try again
    assert client.post(f"/pay/staff/invoices/{invoice.id}/refund", data=data).status_code == 302
    assert fresh(db, Invoice, invoice.id).status == "refund_pending"


@pytest.mark.parametrize("role", ["sales", "technician"])
def test_only_office_and_admin_void_or_refund(client, db, make_account, make_staff, staff, live, role):
    user = make_staff(role)
    invoice, _ = make_invoice(db, make_account(salesperson=user if role == "sales" else None))
    staff.login(user)
    before = snapshot(db)
    for action in ("void", "refund"):
        assert client.get(f"/pay/staff/invoices/{invoice.id}/{action}").status_code == 403
        assert (
            client.post(
                f"/pay/staff/invoices/{invoice.id}/{action}", data={"reason": "x", "form_id": "q" * 24}
            ).status_code
            == 403
        )
    assert snapshot(db) == before


def test_a_customer_cannot_void_or_refund_and_unknown_invoices_are_404(
    client, db, make_account, make_staff, staff, live
):
    account = make_account()
    invoice, url = make_invoice(db, account)
    client.get(pay_path(url))  # a customer session
    before = snapshot(db)
    for action in ("void", "refund"):
        response = client.post(
            f"/pay/staff/invoices/{invoice.id}/{action}", data={"reason": "x", "form_id": "q" * 24}
        )
        assert response.status_code == 302 and "/staff/login" in response.headers["Location"]
    assert snapshot(db) == before and fresh(db, Invoice, invoice.id).status == "open"
    staff.login(make_staff("office"))
    assert client.get("/pay/staff/invoices/999999/void").status_code == 404
    # A deleted account's invoice looks like no invoice.
    refresh(db)
    gone = db.get(Account, account.id)
    gone.deleted_at = T0
    db.commit()
    assert client.get(f"/pay/staff/invoices/{invoice.id}/void").status_code == 404


def test_void_and_refund_post_outgoing_webhooks(client, db, make_account, make_staff, staff, live):
    from portal.models import OutboxEmail

    db.add(
        CompanySettings(
            name="Blue Lagoon",
            webhook_url="https://hooks.example.com/in",
            webhook_secret="whsec_x",
            readiness_checklist=[],
        )
    )
    db.commit()
    staff.login(make_staff("office"))
    invoice, _ = make_invoice(db, make_account())
    adjust(client, invoice, "void")
    refresh(db)
    kinds = [row.subject for row in db.scalars(select(OutboxEmail).where(OutboxEmail.kind == "webhook"))]
    assert any("invoice.voided" in subject for subject in kinds), kinds
    assert count_rows(db, RecordEntry) > 0


def test_refunding_one_invoice_of_a_balance_payment_refunds_its_share_only(
    client, db, make_account, make_staff, staff, live
):
    account, made = billed_three(client, db, make_account)
    location, _ = start_balance(client)
    post_event(client, live.complete_session(location.rsplit("/", 1)[1]))
    middle = fresh(db, Invoice, made[1].id)
    assert middle.status == "paid"
    staff.login(make_staff("office"))
    response, _ = adjust(client, middle, "refund", reason="Chemicals were included")
    assert response.status_code == 302
    [request] = live.requests_to("POST", "/v1/refunds")
    assert request.form["amount"] == "2000"
    refund_id = fresh(db, Invoice, middle.id).stripe_refund_id
    charge = live.get_object(live.get_object(refund_id)["charge"])
    assert charge["amount_refunded"] == 2000 and charge["refunded"] is False
    # Stripe's charge.refunded names the refund; only that invoice is refunded.
    live.settle_refund(refund_id)
    charge = live.get_object(live.get_object(refund_id)["charge"])
    assert deliver(client, "charge.refunded", charge).get_json()["result"] == "refunded"
    assert [fresh(db, Invoice, i.id).status for i in made] == ["paid", "refunded", "paid"]


def test_a_voided_invoice_page_says_so_and_offers_no_payment(
    client, db, make_account, make_staff, staff, live
):
    account = make_account()
    invoice, url = make_invoice(db, account)
    staff.login(make_staff("office"))
    adjust(client, invoice, "void", reason="Duplicate of INV-000009")
    customer = client.application.test_client()
    customer.get(pay_path(url))
    page = customer.get(f"/pay/invoices/{invoice.id}").get_data(as_text=True)
    assert "you do not owe it" in page and "Duplicate of INV-000009" in page
    assert f"/pay/invoices/{invoice.id}/checkout" not in page and "is paid" not in page
    response = customer.post(f"/pay/invoices/{invoice.id}/checkout", data={"form_id": "v" * 24})
    assert response.status_code == 409 and "nothing to pay" in response.get_data(as_text=True)
    assert live.requests_to("POST", "/v1/checkout/sessions") == []


def test_the_statement_and_invoices_pages_take_the_same_queries_at_2_and_20_invoices(
    app, db, make_account, live
):
    from tests.test_page_queries import _statements

    counts = {}
    for n in (2, 20):
        account = make_account(customer_email=f"n{n}@example.com")
        made = [make_invoice(db, account, lines=[(f"Service {i}", 1000 + i)]) for i in range(n)]
        browser = app.test_client()
        browser.get(pay_path(made[0][1]))
        for path in ("/pay/statement", "/pay/invoices"):
            counts[(path, n)] = _statements(app, lambda b=browser, p=path: b.get(p))
        assert made[-1][0].number in browser.get("/pay/statement").get_data(as_text=True)
    for path in ("/pay/statement", "/pay/invoices"):
        assert counts[(path, 2)] == counts[(path, 20)], counts


@pytest.mark.csrf
def test_void_and_refund_forms_need_the_csrf_token(client, db, make_account, make_staff, staff, live):
    staff.login(make_staff("office"))
    invoice, _ = make_invoice(db, make_account())
    before = snapshot(db)
    for action in ("void", "refund"):
        data = form_fields(client.get(f"/pay/staff/invoices/{invoice.id}/{action}").get_data(as_text=True))
        assert data.pop("csrf_token")
        response = client.post(
            f"/pay/staff/invoices/{invoice.id}/{action}", data={**data, "reason": "Because"}
        )
        assert response.status_code == 400
    assert snapshot(db) == before and fresh(db, Invoice, invoice.id).status == "open"
    assert live.requests_to("POST", "/v1/refunds") == []
