"""Payments against a local Stripe (the real `stripe` library, Stripe's own objects): saving a
card in the welcome portal, invoices from staff to receipt, autopay, Stripe failures, and one
customer never reaching another's invoices."""

from __future__ import annotations

import re
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from portal.models import Account, FormSubmission, Invoice
from tests.conftest import count_rows, form_fields
from tests.stripe_server import StripeServer
from tests.test_payments_support import (  # noqa: F401  (fixtures)
    button_form,
    deliver,
    emails,
    entries,
    fresh,
    live_settings,
    make_invoice,
    open_welcome,
    pay_path,
    post_event,
    sign_up,
    snapshot,
    stripe_server,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def live(live_settings, stripe_server):
    """Every test here runs with Stripe keys set, against the local Stripe."""
    return stripe_server


def save_card(client, db, server: StripeServer, account: Account) -> None:
    """The customer saves a card through Checkout and Stripe's event arrives."""
    page = client.get("/pay/card").get_data(as_text=True)
    response = client.post("/pay/card/setup", data=button_form(page, "/pay/card/setup"))
    assert response.status_code == 303, response.get_data(as_text=True)
    session_id = response.headers["Location"].rsplit("/", 1)[1]
    event = server.complete_session(session_id)
    assert post_event(client, event).status_code == 200


def autopay_account(client, db, make_account, server):
    account = make_account()
    sign_up(client, db, account, billing="Card autopay")
    save_card(client, db, server, account)
    return fresh(db, Account, account.id)


# --- Card on file -------------------------------------------------------------------------


def test_card_is_saved_only_by_the_verified_event_and_then_shown(client, db, make_account, live):
    account = make_account()
    sign_up(client, db, account, billing="Card autopay")
    thanks = client.get("/welcome/thanks").get_data(as_text=True)
    assert "Save my card" in thanks
    response = client.post("/pay/card/setup", data=button_form(thanks, "/pay/card/setup"))
    assert response.status_code == 303
    checkout_url = response.headers["Location"]
    assert checkout_url.startswith(f"{live.url}/checkout/cs_test_")

    [customer_req] = live.requests_to("POST", "/v1/customers")
    assert customer_req.form["email"] == "dana@example.com"
    assert customer_req.form["metadata"] == {"account_id": str(account.id)}
    [session_req] = live.requests_to("POST", "/v1/checkout/sessions")
    form_id = button_form(thanks, "/pay/card/setup")["form_id"]
    assert session_req.idempotency_key == form_id
    assert customer_req.idempotency_key == f"{form_id}-customer"
    account = fresh(db, Account, account.id)
    assert session_req.form["mode"] == "setup"
    assert session_req.form["customer"] == account.stripe_customer_id
    assert session_req.form["metadata"] == {"account_id": str(account.id), "purpose": "card_setup"}
    assert session_req.form["success_url"] == "http://localhost/pay/card/done"

    # Back from Checkout without Stripe's event: nothing is saved, the page says so.
    done = client.get("/pay/card/done").get_data(as_text=True)
    assert "We're confirming your card" in done
    assert fresh(db, Account, account.id).stripe_payment_method_id is None

    event = live.complete_session(checkout_url.rsplit("/", 1)[1])
    assert post_event(client, event).status_code == 200
    account = fresh(db, Account, account.id)
    assert (account.card_brand, account.card_last4, account.card_exp) == ("visa", "4242", "12/2028")
    assert account.stripe_payment_method_id.startswith("pm_")
    [saved] = entries(db, account.id, "card_saved")
    assert saved.actor == "stripe" and saved.confirmed_value == "Visa ending 4242, expires 12/28"
    for url in ("/pay/card/done", "/welcome/thanks", "/welcome/service", "/pay/invoices"):
        assert "ending 4242, expires 12/28" in client.get(url).get_data(as_text=True), url
    assert "Save my card" not in client.get("/welcome/thanks").get_data(as_text=True)

    # The same card reported again by setup_intent.succeeded changes nothing.
    intent = live.get_object(live.get_object(event["data"]["object"]["id"])["setup_intent"])
    deliver(client, "setup_intent.succeeded", intent)
    assert len(entries(db, account.id, "card_saved")) == 1


def test_save_card_posted_twice_makes_one_checkout_session(client, db, make_account, live):
    account = make_account()
    sign_up(client, db, account)
    data = button_form(client.get("/pay/card").get_data(as_text=True), "/pay/card/setup")
    first = client.post("/pay/card/setup", data=data)
    second = client.post("/pay/card/setup", data=data)
    assert first.status_code == second.status_code == 303
    assert first.headers["Location"] == second.headers["Location"]
    assert len(live.requests_to("POST", "/v1/checkout/sessions")) == 1
    assert len(live.requests_to("POST", "/v1/customers")) == 1


def test_invoice_billing_gets_no_card_offer_but_may_save_one(client, db, make_account):
    account = make_account()
    sign_up(client, db, account, billing="Invoice")
    page = client.get("/welcome/thanks").get_data(as_text=True)
    assert "Save my card" not in page and "You pay each invoice from the link" in page
    assert "Save my card" in client.get("/pay/card").get_data(as_text=True)


# --- Invoices: staff create, customer pays, receipt -------------------------------------


def staff_invoice_form(client, account_id: int) -> dict[str, str]:
    return form_fields(client.get(f"/pay/staff/accounts/{account_id}/invoices/new").get_data(as_text=True))


def test_invoice_created_emailed_paid_through_checkout_and_receipted(
    app, client, db, make_account, make_staff, staff, live
):
    account = make_account()
    office = make_staff("office")
    staff.login(office)
    due = (date.today() + timedelta(days=10)).isoformat()
    data = {
        **staff_invoice_form(client, account.id),
        "due_date": due,
        "lines-0-detail": "Weekly service, March",
        "lines-0-amount": "165.00",
        "lines-1-detail": "Salt cell clean",
        "lines-1-amount": "$45.5",
        "lines-2-detail": "",
        "lines-2-amount": "",
    }
    created = client.post(f"/pay/staff/accounts/{account.id}/invoices/new", data=data)
    assert created.status_code == 302 and created.headers["Location"] == f"/staff/accounts/{account.id}"
    page = client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    assert "INV-" in page and "$210.50" in page and "Create invoice" in page
    invoice = db.scalars(select(Invoice)).one()
    assert (invoice.total_cents, invoice.currency, invoice.status) == (21050, "USD", "open")
    assert [(line.description, line.amount_cents) for line in invoice.lines] == [
        ("Weekly service, March", 16500),
        ("Salt cell clean", 4550),
    ]
    [created_entry] = entries(db, account.id, "invoice_created")
    assert created_entry.actor == f"staff:{office.id}"
    [email] = emails(db, "invoice")
    assert email.to_address == "dana@example.com" and "$210.50" in email.text_body
    assert "Salt cell clean" in email.html_body
    link = re.search(r"http://localhost(/pay/t/\S+)", email.text_body).group(1)
    assert invoice.pay_nonce_hash and invoice.pay_nonce_hash not in link

    customer = app.test_client()
    customer.test_session = db
    opened = customer.get(link)
    assert opened.status_code == 302 and opened.headers["Location"] == f"/pay/invoices/{invoice.id}"
    page = customer.get(f"/pay/invoices/{invoice.id}").get_data(as_text=True)
    assert "Pay $210.50 now" in page and "Salt cell clean" in page
    form = button_form(page, f"/pay/invoices/{invoice.id}/checkout")
    paying = customer.post(f"/pay/invoices/{invoice.id}/checkout", data=form)
    assert paying.status_code == 303 and paying.headers["Location"].startswith(f"{live.url}/checkout/")
    [request] = live.requests_to("POST", "/v1/checkout/sessions")
    assert request.idempotency_key == form["form_id"]
    assert request.form["mode"] == "payment"
    assert [item["price_data"]["unit_amount"] for item in request.form["line_items"]] == ["16500", "4550"]
    assert {item["price_data"]["currency"] for item in request.form["line_items"]} == {"usd"}
    expected = {
        "invoice_id": str(invoice.id),
        "account_id": str(account.id),
        "invoice_number": invoice.number,
    }
    assert request.form["metadata"] == expected
    assert request.form["payment_intent_data"]["metadata"] == expected
    assert request.form["customer_email"] == "dana@example.com"

    # The success page alone pays nothing.
    done = customer.get(f"/pay/invoices/{invoice.id}/done").get_data(as_text=True)
    assert "We're confirming your payment" in done
    assert fresh(db, Invoice, invoice.id).status == "open"

    event = live.complete_session(paying.headers["Location"].rsplit("/", 1)[1])
    assert post_event(customer, event).status_code == 200
    invoice = fresh(db, Invoice, invoice.id)
    assert invoice.status == "paid" and invoice.paid_at and invoice.stripe_payment_intent_id.startswith("pi_")
    [receipt] = emails(db, "receipt")
    assert receipt.to_address == "dana@example.com" and "$210.50" in receipt.text_body
    [paid_entry] = entries(db, account.id, "invoice_paid")
    assert paid_entry.actor == "stripe" and paid_entry.details["stripe_event"] == event["id"]
    assert "Thank you, your payment is confirmed" in customer.get(
        f"/pay/invoices/{invoice.id}/done"
    ).get_data(as_text=True)
    listing = customer.get("/pay/invoices").get_data(as_text=True)
    assert "Nothing to pay right now" in listing and invoice.number in listing


def test_paying_a_paid_invoice_is_refused_without_a_stripe_call(app, client, db, make_account, live):
    account = make_account()
    invoice, url = make_invoice(db, account)
    client.get(pay_path(url))
    invoice.status = "paid"
    db.commit()
    page = client.get(f"/pay/invoices/{invoice.id}").get_data(as_text=True)
    assert "this invoice is paid" in page and "Pay $165.00 now" not in page
    response = client.post(f"/pay/invoices/{invoice.id}/checkout", data={"form_id": "z" * 24})
    assert response.status_code == 409 and "paid already" in response.get_data(as_text=True)
    assert live.requests_to("POST", "/v1/checkout/sessions") == []


@pytest.mark.parametrize(
    "fields, message",
    [
        ({}, "Add at least one line"),
        ({"lines-0-detail": "Service", "lines-0-amount": "abc"}, "Enter an amount in dollars and cents"),
        ({"lines-0-detail": "Service", "lines-0-amount": "0"}, "Enter an amount above zero"),
        ({"lines-0-detail": "Service", "lines-0-amount": "-5"}, "cannot be negative"),
        ({"lines-0-detail": "Service", "lines-0-amount": "1.234"}, "at most two decimal places"),
        ({"lines-0-detail": "", "lines-0-amount": "20"}, "Describe this line"),
        ({"lines-0-detail": "Service", "lines-0-amount": "0.20"}, "at least 0.50"),
        ({"lines-0-detail": "Service", "lines-0-amount": "20", "due_date": "2020-01-01"}, "from today on"),
        ({"lines-0-detail": "Service", "lines-0-amount": "20", "due_date": "soon"}, "Choose a due date"),
    ],
)
def test_bad_invoice_input_is_refused_next_to_the_field_and_changes_nothing(
    client, db, make_account, make_staff, staff, fields, message
):
    account = make_account()
    staff.login(make_staff("office"))
    before = snapshot(db)
    data = {**staff_invoice_form(client, account.id), "due_date": date.today().isoformat(), **fields}
    response = client.post(f"/pay/staff/accounts/{account.id}/invoices/new", data=data)
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert message in body and 'role="alert"' in body
    assert snapshot(db) == before


def test_an_invoice_form_posted_twice_creates_one_invoice(client, db, make_account, make_staff, staff):
    account = make_account()
    staff.login(make_staff("admin"))
    data = {
        **staff_invoice_form(client, account.id),
        "due_date": date.today().isoformat(),
        "lines-0-detail": "Service",
        "lines-0-amount": "20",
    }
    for _ in range(2):
        assert client.post(f"/pay/staff/accounts/{account.id}/invoices/new", data=data).status_code == 302
    assert count_rows(db, Invoice) == 1 and len(emails(db, "invoice")) == 1


def test_add_line_without_javascript_keeps_what_was_typed(client, db, make_account, make_staff, staff):
    account = make_account()
    staff.login(make_staff("office"))
    data = {
        **staff_invoice_form(client, account.id),
        "lines-0-detail": "Kept",
        "lines-0-amount": "9",
        "add_line": "1",
    }
    page = client.post(f"/pay/staff/accounts/{account.id}/invoices/new", data=data).get_data(as_text=True)
    assert 'value="Kept"' in page and 'name="lines-3-detail"' in page
    assert count_rows(db, Invoice) == 0


@pytest.mark.parametrize(
    "role, status", [("office", 200), ("admin", 200), ("sales", 403), ("technician", 403)]
)
def test_only_office_and_admin_create_invoices(client, db, make_account, make_staff, staff, role, status):
    account = make_account()
    user = make_staff(role)
    if role == "sales":
        account = make_account(salesperson=user)
    staff.login(user)
    assert client.get(f"/pay/staff/accounts/{account.id}/invoices/new").status_code == status
    response = client.post(
        f"/pay/staff/accounts/{account.id}/invoices/new",
        data={
            "form_id": "x" * 24,
            "due_date": date.today().isoformat(),
            "lines-0-detail": "Service",
            "lines-0-amount": "20",
        },
    )
    assert response.status_code == (302 if status == 200 else 403)
    page = client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    if role != "technician":
        assert ("Create invoice" in page) == (status == 200) and "Payments" in page


def test_invoicing_needs_a_staff_login_and_never_a_customer_session(client, db, make_account):
    account = make_account()
    open_welcome(client, db, account)
    response = client.get(f"/pay/staff/accounts/{account.id}/invoices/new")
    assert response.status_code == 302 and "/staff/login" in response.headers["Location"]


def test_invoice_text_is_escaped_in_the_page_and_the_email(client, db, make_account):
    account = make_account()
    evil = "<script>alert(1)</script>"
    invoice, url = make_invoice(db, account, lines=[(evil, 5000)])
    client.get(pay_path(url))
    page = client.get(f"/pay/invoices/{invoice.id}").get_data(as_text=True)
    assert evil not in page and "&lt;script&gt;" in page
    [email] = emails(db, "invoice")
    assert evil not in email.html_body and "&lt;script&gt;" in email.html_body and evil in email.text_body


def test_open_overdue_and_paid_invoices_are_listed_apart(client, db, make_account):
    account = make_account()
    due_later, url = make_invoice(db, account, due=date.today() + timedelta(days=5))
    overdue, _ = make_invoice(db, account, lines=[("Filter", 3000)], due=date.today() - timedelta(days=3))
    paid, _ = make_invoice(db, account, lines=[("Opening", 9000)])
    paid.status = "paid"
    db.commit()
    client.get(pay_path(url))
    page = client.get("/pay/invoices").get_data(as_text=True)
    to_pay, paid_part = page.split("<h2>Paid and closed</h2>")
    assert due_later.number in to_pay and "Due " in to_pay
    assert overdue.number in to_pay and "Overdue since" in to_pay
    assert paid.number in paid_part and paid.number not in to_pay


# --- Pay links ----------------------------------------------------------------------------


def test_pay_link_carries_nothing_personal_leaves_the_address_bar_and_reaches_payments_only(
    client, db, make_account
):
    import base64
    import json

    account = make_account()
    invoice, url = make_invoice(db, account)
    token = url.rsplit("/pay/t/", 1)[1]
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==="))
    assert set(payload) == {"a", "i", "n"} and "dana" not in json.dumps(payload).lower()
    response = client.get(pay_path(url))
    assert response.status_code == 302 and token not in response.headers["Location"]
    assert response.headers["Referrer-Policy"] in {"no-referrer", "same-origin"}
    assert client.get(f"/pay/invoices/{invoice.id}").status_code == 200
    # A pay link is not a welcome link: onboarding and staff pages stay closed.
    assert client.get("/welcome/step/welcome").headers["Location"] == "/welcome/session-ended"
    assert "/staff/login" in client.get("/staff/").headers["Location"]
    assert entries(db, account.id, "pay_link_opened")


def test_tampered_replaced_expired_and_welcome_tokens_are_refused_alike(
    app, client, db, make_account, monkeypatch
):
    import time as real_time

    account = make_account()
    invoice, old_url = make_invoice(db, account)
    token = old_url.rsplit("/pay/t/", 1)[1]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with app.test_request_context():
        from portal import links

        welcome_token = links.make_token(account, "nonce", purpose="welcome")
    from portal.payments.invoices import issue_pay_link

    new_url = issue_pay_link(fresh(db, Invoice, invoice.id))
    db.commit()
    bodies = set()
    for path in (f"/pay/t/{tampered}", f"/pay/t/{welcome_token}", pay_path(old_url)):
        response = client.get(path)
        assert response.status_code == 400
        bodies.add(re.sub(r'value="[^"]*"', "", response.get_data(as_text=True)))
    assert len(bodies) == 1 and "Email me a new link" in bodies.pop()
    assert client.get(pay_path(new_url)).status_code == 302
    now = real_time.time()
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: now + 46 * 86400)
    assert client.get(pay_path(new_url)).status_code == 400
    monkeypatch.undo()
    fresh(db, Account, account.id).deleted_at = account.created_at
    db.commit()
    assert client.get(pay_path(new_url)).status_code == 400


def test_reissuing_the_pay_link_ends_the_session_it_started(client, db, make_account):
    from portal.payments.invoices import issue_pay_link

    account = make_account()
    invoice, url = make_invoice(db, account)
    client.get(pay_path(url))
    assert client.get("/pay/invoices").status_code == 200
    issue_pay_link(fresh(db, Invoice, invoice.id))
    db.commit()
    assert client.get("/pay/invoices").headers["Location"] == "/welcome/session-ended"


# --- Autopay ------------------------------------------------------------------------------


def test_autopay_charges_the_saved_card_and_the_event_marks_it_paid(client, db, make_account, runner, live):
    account = autopay_account(client, db, make_account, live)
    invoice, _ = make_invoice(db, account)
    result = runner.invoke(args=["charge-autopay"])
    assert result.exit_code == 0, result.output
    assert f"{invoice.number}: submitted" in result.output
    [request] = live.requests_to("POST", "/v1/payment_intents")
    assert request.form["off_session"] == "true" and request.form["confirm"] == "true"
    assert request.form["amount"] == "16500" and request.form["currency"] == "usd"
    assert request.form["customer"] == account.stripe_customer_id
    assert request.form["payment_method"] == account.stripe_payment_method_id
    assert request.form["metadata"]["invoice_id"] == str(invoice.id)
    key = request.idempotency_key
    assert key.startswith(f"autopay-{invoice.id}-") and key.endswith("-1")
    invoice = fresh(db, Invoice, invoice.id)
    assert invoice.status == "processing" and emails(db, "receipt") == []  # paid only from the event

    intent = live.get_object(invoice.stripe_payment_intent_id)
    deliver(client, "payment_intent.succeeded", intent)
    invoice = fresh(db, Invoice, invoice.id)
    assert invoice.status == "paid" and len(emails(db, "receipt")) == 1
    again = runner.invoke(args=["charge-autopay"])
    assert again.exit_code == 0 and len(live.requests_to("POST", "/v1/payment_intents")) == 1


@pytest.mark.parametrize(
    "outcome, words",
    [
        ("card_declined", "Nothing was charged"),
        ("authentication_required", "confirm this payment yourself"),
    ],
)
def test_autopay_decline_or_authentication_emails_a_pay_link_and_is_recorded(
    app, client, db, make_account, runner, live, outcome, words
):
    account = autopay_account(client, db, make_account, live)
    invoice, _ = make_invoice(db, account)
    live.payment_outcome = outcome
    result = runner.invoke(args=["charge-autopay"])
    assert result.exit_code == 0, result.output
    said = outcome.replace("_", " ") if outcome != "card_declined" else "declined"
    assert f"{invoice.number}: {said}" in result.output
    invoice = fresh(db, Invoice, invoice.id)
    assert invoice.status == "open" and invoice.autopay_failed_at is not None
    assert invoice.autopay_attempts == 1
    [failed] = entries(db, account.id, "autopay_failed")
    assert failed.details["code"] == outcome and failed.details["email_id"]
    [email] = emails(db, "payment_failed")
    assert words in email.text_body and "/pay/t/" in email.text_body
    # The next run leaves the invoice to the customer (or a new card) instead of retrying.
    assert runner.invoke(args=["charge-autopay"]).exit_code == 0
    assert len(live.requests_to("POST", "/v1/payment_intents")) == 1
    # Stripe's payment_failed event for the same charge adds no second email.
    deliver(client, "payment_intent.payment_failed", live.get_object(invoice.stripe_payment_intent_id))
    assert len(emails(db, "payment_failed")) == 1
    # The link in the email opens the invoice, ready to pay.
    other = app.test_client()
    link = re.search(r"http://localhost(/pay/t/\S+)", email.text_body).group(1)
    assert other.get(link).status_code == 302
    assert "Pay $165.00 now" in other.get(f"/pay/invoices/{invoice.id}").get_data(as_text=True)


def test_a_new_card_lets_autopay_try_again(client, db, make_account, runner, live):
    account = autopay_account(client, db, make_account, live)
    invoice, _ = make_invoice(db, account)
    live.payment_outcome = "card_declined"
    runner.invoke(args=["charge-autopay"])
    live.payment_outcome = "succeeded"
    save_card(client, db, live, account)
    result = runner.invoke(args=["charge-autopay"])
    assert f"{invoice.number}: submitted" in result.output
    first, second = live.requests_to("POST", "/v1/payment_intents")
    assert first.idempotency_key.endswith("-1") and second.idempotency_key.endswith("-2")


def test_autopay_timeout_records_it_and_the_next_run_reuses_the_key_so_nothing_is_charged_twice(
    client, db, make_account, runner, live
):
    account = autopay_account(client, db, make_account, live)
    invoice, _ = make_invoice(db, account)
    live.hang_next(3, path_prefix="/v1/payment_intents")
    result = runner.invoke(args=["charge-autopay"])
    assert result.exit_code == 1 and "stripe error" in result.output
    invoice = fresh(db, Invoice, invoice.id)
    assert invoice.status == "open" and invoice.autopay_attempts == 0
    [error] = entries(db, account.id, "stripe_error")
    assert error.actor == "system" and error.details["error"] == "APIConnectionError"
    # Stripe did charge after all (the answer was lost on the way back).
    deadline = time.monotonic() + 10
    while live.requests_to("POST", "/v1/payment_intents")[0].status is None and time.monotonic() < deadline:
        time.sleep(0.05)
    retried = runner.invoke(args=["charge-autopay"])
    assert retried.exit_code == 0, retried.output
    first, second = live.requests_to("POST", "/v1/payment_intents")
    assert first.idempotency_key == second.idempotency_key and second.replayed
    intents = [r.response["id"] for r in (first, second) if r.response]
    assert len(set(intents)) == 1
    assert fresh(db, Invoice, invoice.id).status == "processing"


def test_invoice_billing_accounts_are_not_charged(client, db, make_account, runner, live):
    account = make_account()
    sign_up(client, db, account, billing="Invoice")
    save_card(client, db, live, account)
    make_invoice(db, fresh(db, Account, account.id))
    result = runner.invoke(args=["charge-autopay"])
    assert result.exit_code == 0 and "0 charged" in result.output
    assert live.requests_to("POST", "/v1/payment_intents") == []


# --- Stripe failing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault, status, words",
    [
        ("402", 402, "declined"),
        ("500", 502, "had a problem"),
        ("hang", 504, "could not reach"),
    ],
)
def test_stripe_errors_become_clear_messages_and_change_nothing(
    client, db, make_account, live, fault, status, words
):
    account = make_account()
    invoice, url = make_invoice(db, account)
    client.get(pay_path(url))
    page = client.get(f"/pay/invoices/{invoice.id}").get_data(as_text=True)
    form = button_form(page, f"/pay/invoices/{invoice.id}/checkout")
    if fault == "hang":
        live.hang_next(3, path_prefix="/v1/checkout")
    else:
        live.fail_next(int(fault), path_prefix="/v1/checkout")
    before_claims = count_rows(db, FormSubmission)
    response = client.post(f"/pay/invoices/{invoice.id}/checkout", data=form)
    assert response.status_code == status
    body = response.get_data(as_text=True)
    assert words in body and "nothing was charged" in body.lower() and 'role="alert"' in body
    invoice = fresh(db, Invoice, invoice.id)
    assert invoice.status == "open" and invoice.stripe_checkout_session_id is None
    assert count_rows(db, FormSubmission) == before_claims
    [error] = entries(db, account.id, "stripe_error")
    assert error.actor == "system" and error.details["operation"] == "create Checkout Session"
    assert error.details["invoice_id"] == invoice.id
    # The page offers a fresh button; pressing it works once Stripe is back.
    fresh_form = form_fields(body[body.index("<main") :])
    assert fresh_form["form_id"] != form["form_id"]  # a new key: Stripe replays a 402 to the old one
    retry = client.post(f"/pay/invoices/{invoice.id}/checkout", data=fresh_form)
    assert retry.status_code == 303


def test_stripe_error_while_creating_the_customer_saves_nothing(client, db, make_account, live):
    account = make_account()
    sign_up(client, db, account)
    live.fail_next(500, path_prefix="/v1/customers")
    page = client.get("/pay/card").get_data(as_text=True)
    response = client.post("/pay/card/setup", data=button_form(page, "/pay/card/setup"))
    assert response.status_code == 502 and "had a problem" in response.get_data(as_text=True)
    assert fresh(db, Account, account.id).stripe_customer_id is None
    assert live.requests_to("POST", "/v1/checkout/sessions") == []
    assert len(entries(db, account.id, "stripe_error")) == 1


def test_checkout_failure_after_the_customer_keeps_only_the_customer(client, db, make_account, live):
    account = make_account()
    sign_up(client, db, account)
    live.fail_next(500, path_prefix="/v1/checkout")
    page = client.get("/pay/card").get_data(as_text=True)
    assert client.post("/pay/card/setup", data=button_form(page, "/pay/card/setup")).status_code == 502
    customer_id = fresh(db, Account, account.id).stripe_customer_id
    assert customer_id  # created once, kept, and reused by the next attempt
    page = client.get("/pay/card").get_data(as_text=True)
    assert client.post("/pay/card/setup", data=button_form(page, "/pay/card/setup")).status_code == 303
    assert len(live.requests_to("POST", "/v1/customers")) == 1
    assert entries(db, account.id, "card_setup_started")[0].details["checkout_session"].startswith("cs_test_")


# --- One customer, another's invoices ---------------------------------------------------


def test_two_customers_times_every_payment_url(app, db, make_account, live):
    ann = make_account(customer_name="Ann First", customer_email="ann@example.com")
    bob = make_account(
        customer_name="Bob Second", customer_email="bob@example.com", service_address="9 Elm St, Mesa, AZ"
    )
    ann_invoice, ann_url = make_invoice(db, ann, lines=[("Ann's service", 1000)])
    bob_invoice, bob_url = make_invoice(db, bob, lines=[("Bob's service", 2000)])
    clients = {}
    for name, url in (("ann", ann_url), ("bob", bob_url)):
        clients[name] = app.test_client()
        assert clients[name].get(pay_path(url)).status_code == 302
    own = {"ann": ann_invoice, "bob": bob_invoice}
    names = {"ann": "Ann First", "bob": "Bob Second"}
    for name, browser in clients.items():
        other = "bob" if name == "ann" else "ann"
        mine, theirs = own[name], own[other]
        for path in ("/pay/invoices/{}", "/pay/invoices/{}/done"):
            assert browser.get(path.format(mine.id)).status_code == 200
            response = browser.get(path.format(theirs.id))
            assert response.status_code == 404, path
            assert theirs.number not in response.get_data(as_text=True)
        response = browser.post(f"/pay/invoices/{theirs.id}/checkout", data={"form_id": "y" * 24})
        assert response.status_code == 404
        for path in ("/pay/invoices", "/pay/card", "/pay/card/done"):
            page = browser.get(path).get_data(as_text=True)
            assert theirs.number not in page and names[other] not in page, path
    assert live.requests_to("POST", "/v1/checkout/sessions") == []
    assert fresh(db, Invoice, ann_invoice.id).stripe_checkout_session_id is None


def test_every_payment_customer_view_takes_its_account_from_the_session(app):
    """A new customer payment page without the session decorator fails here."""
    public = {
        "payments.open_pay_link",
        "payments.stripe_webhook",
        "payments.staff_new_invoice",
        "payments.staff_adjust_invoice",
        "payments.staff_new_promotion",
    }
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("payments.") and rule.endpoint not in public:
            assert getattr(app.view_functions[rule.endpoint], "customer_only", False), rule.endpoint
    assert app.view_functions["payments.staff_new_invoice"].allowed_roles == {"office", "admin"}
    assert app.view_functions["payments.staff_adjust_invoice"].allowed_roles == {"office", "admin"}
    assert app.view_functions["payments.staff_new_promotion"].allowed_roles == {"office", "admin"}


# --- Forms, headers, templates ------------------------------------------------------------


@pytest.mark.csrf
def test_payment_buttons_need_the_csrf_token(client, db, make_account, live):
    account = make_account()
    invoice, url = make_invoice(db, account)
    client.get(pay_path(url))
    page = client.get(f"/pay/invoices/{invoice.id}").get_data(as_text=True)
    data = button_form(page, f"/pay/invoices/{invoice.id}/checkout")
    data.pop("csrf_token")
    before = snapshot(db)
    response = client.post(f"/pay/invoices/{invoice.id}/checkout", data=data)
    assert response.status_code == 400 and snapshot(db) == before
    assert live.requests_to("POST", "/v1/checkout/sessions") == []


def test_csp_lets_payment_forms_redirect_to_checkout_only(client, db, make_account, live):
    account = make_account()
    invoice, url = make_invoice(db, account)
    client.get(pay_path(url))
    csp = client.get(f"/pay/invoices/{invoice.id}").headers["Content-Security-Policy"]
    assert f"form-action 'self' {live.url}" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_csp_form_action_names_stripe_checkout_with_real_stripe():
    from portal.web import checkout_origin

    assert checkout_origin({"STRIPE_API_BASE": None}) == "https://checkout.stripe.com"
    assert checkout_origin({"STRIPE_API_BASE": "https://api.stripe.com"}) == "https://checkout.stripe.com"
    assert checkout_origin({"STRIPE_CHECKOUT_ORIGIN": "https://pay.example"}) == "https://pay.example"


def test_no_template_has_card_fields():
    """Hosted Checkout only: the portal never asks for a card number."""
    pattern = re.compile(r"(card.?number|cardnumber|\bcvc\b|\bcvv\b|cc-number|cc-csc|cc-exp)", re.I)
    for folder in ("templates", "emails"):
        for path in (ROOT / folder).rglob("*.html"):
            inputs = re.findall(r"<input[^>]*>", path.read_text())
            assert not any(pattern.search(tag) for tag in inputs), path


def test_payment_pages_are_plain_html_that_works_without_javascript(client, db, make_account):
    account = make_account()
    invoice, url = make_invoice(db, account)
    client.get(pay_path(url))
    for path in (
        "/pay/invoices",
        f"/pay/invoices/{invoice.id}",
        "/pay/card",
        f"/pay/invoices/{invoice.id}/done",
    ):
        page = client.get(path).get_data(as_text=True)
        assert "<script" not in page and 'name="viewport"' in page, path
        assert "https://" not in page and "http://" not in page.replace("http://localhost", ""), path
        for button in re.findall(r"<button[^>]*>([^<]*)</button>", page):
            assert button.strip(), path
