"""Demo mode (no STRIPE_SECRET_KEY): saving a card, paying an invoice and autopay work end to end
through clearly labelled demo pages, whose signed events go through the real webhook handler."""

from __future__ import annotations

import json
import re

import pytest

from portal.models import Account, Invoice, StripeEvent
from tests.conftest import count_rows, form_fields
from tests.stripe_server import make_event, sign_payload
from tests.test_payments_support import (
    button_form,
    emails,
    entries,
    fresh,
    make_invoice,
    pay_path,
    sign_up,
)


def demo_page(client, response) -> tuple[str, str]:
    assert response.status_code == 303, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert location.startswith("/pay/demo/checkout/")
    page = client.get(location)
    assert page.status_code == 200
    return location, page.get_data(as_text=True)


def press(client, location: str, page: str, action: str):
    return client.post(f"{location}/{action}", data=button_form(page, f"{location}/{action}"))


def test_demo_card_setup_end_to_end(client, db, make_account):
    account = make_account()
    sign_up(client, db, account, billing="Card autopay")
    thanks = client.get("/welcome/thanks").get_data(as_text=True)
    assert "Demo mode:" in thanks and "no real payment" in thanks
    location, page = demo_page(
        client, client.post("/pay/card/setup", data=button_form(thanks, "/pay/card/setup"))
    )
    assert "Demo mode — no real payment" in page and "Simulate a successful card setup" in page
    assert not re.search(r'<input(?![^>]*type="hidden")', page)  # buttons only: no card form

    declined = press(client, location, page, "decline")
    assert declined.status_code == 303
    assert "the card was declined" in client.get(declined.headers["Location"]).get_data(as_text=True)
    assert fresh(db, Account, account.id).stripe_payment_method_id is None
    assert entries(db, account.id, "card_setup_failed")[0].actor == "stripe"

    done = press(client, location, page, "succeed")
    assert done.status_code == 303 and done.headers["Location"] == "/pay/card/done"
    assert "Visa ending 4242, expires 12/" in client.get("/pay/card/done").get_data(as_text=True)
    account = fresh(db, Account, account.id)
    assert account.stripe_customer_id.startswith("cus_demo_")
    [saved] = entries(db, account.id, "card_saved")
    assert saved.actor == "stripe" and saved.details["stripe_event"].startswith("evt_demo_")
    assert db.get(StripeEvent, saved.details["stripe_event"]).processed_at is not None
    # Pressing the button again repeats the same event: nothing new.
    press(client, location, page, "succeed")
    assert len(entries(db, account.id, "card_saved")) == 1


def test_demo_invoice_payment_end_to_end(app, client, db, make_account, make_staff, staff):
    account = make_account()
    staff.login(make_staff("office"))
    form_page = client.get(f"/pay/staff/accounts/{account.id}/invoices/new").get_data(as_text=True)
    due = re.search(r'name="due_date"[^>]*value="([^"]+)"', form_page).group(1)  # today + 14 days
    created = client.post(
        f"/pay/staff/accounts/{account.id}/invoices/new",
        data={
            **form_fields(form_page),
            "due_date": due,
            "lines-0-detail": "Weekly service",
            "lines-0-amount": "165",
        },
    )
    assert created.status_code == 302
    [email] = emails(db, "invoice")
    link = re.search(r"http://localhost(/pay/t/\S+)", email.text_body).group(1)
    customer = app.test_client()
    assert customer.get(link).status_code == 302
    invoice = db.query(Invoice).one()
    page = customer.get(f"/pay/invoices/{invoice.id}").get_data(as_text=True)
    assert "Demo mode:" in page
    checkout_path = f"/pay/invoices/{invoice.id}/checkout"
    location, checkout = demo_page(
        customer, customer.post(checkout_path, data=button_form(page, checkout_path))
    )
    assert "Simulate a successful payment" in checkout and "$165.00" in checkout

    # The success page without the event says "confirming" and pays nothing.
    assert "We're confirming your payment" in customer.get(f"/pay/invoices/{invoice.id}/done").get_data(
        as_text=True
    )
    assert press(customer, location, checkout, "decline").status_code == 303
    assert fresh(db, Invoice, invoice.id).status == "open"
    assert entries(db, account.id, "payment_failed")[0].actor == "stripe"

    done = press(customer, location, checkout, "succeed")
    assert done.headers["Location"] == f"/pay/invoices/{invoice.id}/done"
    assert "your payment is confirmed" in customer.get(done.headers["Location"]).get_data(as_text=True)
    assert fresh(db, Invoice, invoice.id).status == "paid"
    press(customer, location, checkout, "succeed")
    assert len(emails(db, "receipt")) == 1 and len(entries(db, account.id, "invoice_paid")) == 1


def test_demo_autopay_is_paid_through_the_event(client, db, make_account, runner):
    account = make_account()
    sign_up(client, db, account, billing="Card autopay")
    card_page = client.get("/pay/card").get_data(as_text=True)
    location, page = demo_page(
        client, client.post("/pay/card/setup", data=button_form(card_page, "/pay/card/setup"))
    )
    press(client, location, page, "succeed")
    invoice, _ = make_invoice(db, fresh(db, Account, account.id))
    result = runner.invoke(args=["charge-autopay"])
    assert result.exit_code == 0 and f"{invoice.number}: submitted" in result.output
    assert fresh(db, Invoice, invoice.id).status == "paid"
    [paid] = entries(db, account.id, "invoice_paid")
    assert paid.actor == "stripe" and len(emails(db, "receipt")) == 1


def test_the_webhook_in_demo_mode_checks_the_derived_secret(client, db, make_account):
    account = make_account()
    invoice, _ = make_invoice(db, account)
    event = make_event(
        "payment_intent.succeeded",
        {
            "id": "pi_forged",
            "object": "payment_intent",
            "amount": 16500,
            "amount_received": 16500,
            "currency": "usd",
            "metadata": {"invoice_id": str(invoice.id), "account_id": str(account.id)},
        },
    )
    body = json.dumps(event)
    response = client.post(
        "/stripe/webhook",
        data=body,
        content_type="application/json",
        headers={"Stripe-Signature": sign_payload(body, "whsec_guessed")},
    )
    assert response.status_code == 400 and fresh(db, Invoice, invoice.id).status == "open"
    assert count_rows(db, StripeEvent) == 0


def test_demo_pages_are_only_for_their_own_account_and_only_in_demo_mode(app, client, db, make_account):
    ann = make_account(customer_email="ann@example.com")
    bob = make_account(customer_email="bob@example.com", customer_name="Bob Second")
    ann_invoice, ann_url = make_invoice(db, ann)
    _, bob_url = make_invoice(db, bob)
    client.get(pay_path(ann_url))
    page = client.get(f"/pay/invoices/{ann_invoice.id}").get_data(as_text=True)
    checkout_path = f"/pay/invoices/{ann_invoice.id}/checkout"
    location, checkout = demo_page(client, client.post(checkout_path, data=button_form(page, checkout_path)))
    other = app.test_client()
    other.get(pay_path(bob_url))
    assert other.get(location).status_code == 404
    assert other.post(f"{location}/succeed").status_code == 404
    assert fresh(db, Invoice, ann_invoice.id).status == "open"
    assert client.get(location[:-3] + "xyz").status_code == 404  # tampered token
    app.config["STRIPE_SECRET_KEY"] = "sk_test_now_live"
    assert client.get(location).status_code == 404


def test_reconcile_in_demo_mode_explains_itself(db, runner):
    result = runner.invoke(args=["reconcile-stripe"])
    assert result.exit_code != 0 and "Demo mode" in result.output


@pytest.mark.parametrize("path", ["/pay/invoices", "/pay/card"])
def test_payment_pages_need_a_customer_session(client, path):
    assert client.get(path).headers["Location"] == "/welcome/session-ended"
