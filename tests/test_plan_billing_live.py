"""Plan invoices end to end: the email through a real SMTP server with a pay link that opens,
and a card-autopay account charged on the due date through the local Stripe-shaped server."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from sqlalchemy import select

from portal.models import Account, CompanySettings, Invoice, PromoCredit
from tests.smtp_server import SmtpServer, smtp_server  # noqa: F401  (the fixture)
from tests.test_payments import autopay_account, save_card  # noqa: F401  (helpers)
from tests.test_payments_support import (  # noqa: F401  (fixtures)
    deliver,
    emails,
    entries,
    fresh,
    live_settings,
    pay_path,
    stripe_server,
)


def company(db) -> None:
    db.add(
        CompanySettings(name="Blue Lagoon", billing_timing="advance", billing_day=1, first_period="prorated")
    )
    db.commit()


@pytest.fixture
def smtp(app: Flask, smtp_server: SmtpServer) -> SmtpServer:  # noqa: F811
    app.config.update(MAIL_BACKEND="smtp", SMTP_HOST=smtp_server.host, SMTP_PORT=smtp_server.port)
    return smtp_server


def test_the_plan_invoice_is_emailed_through_smtp_with_a_pay_link_that_opens(
    smtp, client, db, make_account, runner
):
    company(db)
    account = make_account()
    account.status = "signed"
    db.commit()
    assert account.first_visit is not None
    result = runner.invoke(args=["bill", "--on", account.first_visit.isoformat()])
    assert result.exit_code == 0 and "1 invoice(s) created" in result.output, result.output
    sent = runner.invoke(args=["outbox", "send"])
    assert "Delivered 1, to retry 0, failed 0." in sent.output, sent.output

    [message] = smtp.messages
    invoice = db.scalars(select(Invoice).where(Invoice.account_id == account.id)).one()
    assert message["To"] == account.customer.email
    assert invoice.number in message["Subject"]
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    [url] = re.findall(r"https?://\S+/pay/t/\S+", text)
    assert url in html and invoice.lines[0].description in text
    opened = client.get(pay_path(url))
    assert opened.status_code == 302
    page = client.get(opened.headers["Location"], follow_redirects=True).get_data(as_text=True)
    assert invoice.number in page


def test_an_autopay_account_is_charged_for_its_plan_on_the_due_date(
    live_settings,
    stripe_server,
    client,
    db,
    make_account,
    runner,  # noqa: F811  (Stripe settings before the app)
):  # noqa: F811
    company(db)
    account = autopay_account(client, db, make_account, stripe_server)
    assert account.status == "signed" and account.first_visit is not None
    due = account.first_visit
    assert runner.invoke(args=["bill", "--on", due.isoformat()]).exit_code == 0
    invoice = db.scalars(select(Invoice).where(Invoice.account_id == account.id)).one()
    assert invoice.due_date == due and invoice.status == "open"
    [email] = emails(db, "invoice")
    assert "we will charge your" in email.text_body  # the card autopay will charge, named

    charged = runner.invoke(args=["charge-autopay"])
    assert charged.exit_code == 0, charged.output
    assert f"{invoice.number}: submitted" in charged.output
    [request] = stripe_server.requests_to("POST", "/v1/payment_intents")
    assert request.form["amount"] == str(invoice.total_cents)
    assert request.form["metadata"]["invoice_id"] == str(invoice.id)
    assert request.form["customer"] == account.stripe_customer_id
    invoice = fresh(db, Invoice, invoice.id)
    deliver(client, "payment_intent.succeeded", stripe_server.get_object(invoice.stripe_payment_intent_id))
    assert fresh(db, Invoice, invoice.id).status == "paid"
    # Billing the day again makes no second invoice, so nothing more to charge.
    assert runner.invoke(args=["bill", "--on", due.isoformat()]).exit_code == 0
    assert runner.invoke(args=["charge-autopay"]).exit_code == 0
    assert len(stripe_server.requests_to("POST", "/v1/payment_intents")) == 1
    assert fresh(db, Account, account.id) is not None


def test_a_plan_invoice_a_promotion_made_free_is_settled_when_made_and_never_charged(
    live_settings,
    stripe_server,
    client,
    db,
    make_account,
    make_staff,
    staff,
    runner,  # noqa: F811  (Stripe settings before the app)
):
    company(db)
    account = autopay_account(client, db, make_account, stripe_server)
    due = account.first_visit
    db.add(PromoCredit(account_id=account.id, month=due.replace(day=1), amount_cents=None, code="FALL26"))
    db.commit()
    assert runner.invoke(args=["bill", "--on", due.isoformat()]).exit_code == 0
    invoice = db.scalars(select(Invoice).where(Invoice.account_id == account.id)).one()
    assert invoice.total_cents == 0 and [line.amount_cents < 0 for line in invoice.lines] == [False, True]
    # Paid when made: nothing for autopay, Checkout or the balance to take up.
    assert invoice.status == "paid" and invoice.paid_at is not None
    assert invoice.stripe_payment_intent_id is None
    [settled] = entries(db, account.id, "invoice_settled")
    assert settled.confirmed_value == f"{invoice.number}: $0.00, nothing to pay"

    [email] = emails(db, "invoice")
    assert "Nothing to pay: this invoice is credited in full." in email.text_body
    assert "Due:" not in email.text_body and "we will charge" not in email.text_body
    assert "Nothing to pay:" in email.html_body and "Pay $0.00" not in email.html_body

    client.get(pay_path(re.findall(r"https?://\S+/pay/t/\S+", email.text_body)[0]))
    page = client.get(f"/pay/invoices/{invoice.id}").get_data(as_text=True)
    assert "Paid: nothing to pay" in page and "now</button>" not in page
    invoices_page = client.get("/pay/invoices").get_data(as_text=True)
    assert "Your balance: <strong>$0.00</strong>" in invoices_page
    assert "/pay/balance/checkout" not in invoices_page
    statement = client.get("/pay/statement").get_data(as_text=True)
    assert f"{invoice.number}: nothing to pay, credited in full" in statement
    assert f"Payment for {invoice.number}" not in statement
    assert 'Balance due</th><td class="num"><strong>$0.00</strong>' in statement

    charged = runner.invoke(args=["charge-autopay"])
    assert charged.exit_code == 0 and invoice.number not in charged.output
    assert stripe_server.requests_to("POST", "/v1/payment_intents") == []
    sessions = stripe_server.requests_to("POST", "/v1/checkout/sessions")
    assert [request.form["mode"] for request in sessions] == ["setup"]  # saving the card only
    # Billing again neither re-bills nor re-settles; the office sees it paid, with no refund.
    assert runner.invoke(args=["bill", "--on", due.isoformat()]).exit_code == 0
    assert len(entries(db, account.id, "invoice_settled")) == 1 and len(emails(db, "invoice")) == 1
    assert emails(db, "payment_failed") == [] and emails(db, "receipt") == []
    staff.login(make_staff("office"))
    office_page = client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    assert "nothing to pay: credited in full" in office_page
    assert f"/pay/staff/invoices/{invoice.id}/refund" not in office_page
