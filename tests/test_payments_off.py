"""Production never takes demo payments. With PORTAL_ENV=production and no STRIPE_SECRET_KEY,
online payment is off: the pay pages say so and give the company's contact, nothing can be paid
or saved, the demo Checkout answers 404 and start-up logs a warning. (Demo mode itself, outside
production, is tested in test_payments_demo.py.)"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import re
import zlib
from collections.abc import Iterator

import pytest

from portal import create_app
from portal.models import Account, CompanySettings, Invoice
from portal.payments.gateway import demo_webhook_secret
from tests.conftest import TEST_SETTINGS
from tests.stripe_server import make_event, sign_payload
from tests.test_payments_support import (
    button_form,
    emails,
    entries,
    fresh,
    make_invoice,
    open_welcome,
    pay_path,
    sign_up,
    snapshot,
)
from tests.test_welcome import answer_all

PHONE, EMAIL = "+1 602 555 0100", "billing@bluelagoon.example"
OFF = "Online payment is not available"


@pytest.fixture
def production(settings):
    """Ask for this before `app`: production, and no Stripe keys at all."""
    settings.update(ENV_NAME="production", STRIPE_SECRET_KEY=None, STRIPE_WEBHOOK_SECRET=None)
    return settings


@pytest.fixture
def company(db):
    db.add(CompanySettings(name="Blue Lagoon Pool Care", phone=PHONE, email=EMAIL, readiness_checklist=[]))
    db.commit()


def shows_contact(page: str) -> bool:
    return (
        OFF in page
        and "Blue Lagoon Pool Care" in page
        and f'href="tel:{PHONE.replace(" ", "")}">Call {PHONE}<' in page
        and f'href="mailto:{EMAIL}"' in page
    )


def test_production_invoice_page_shows_the_contact_and_cannot_be_paid(
    production, client, db, company, make_account
):
    account = make_account()
    invoice, url = make_invoice(db, account)
    assert client.get(pay_path(url)).status_code == 302
    page = client.get(f"/pay/invoices/{invoice.id}").get_data(as_text=True)
    assert shows_contact(page) and "To pay this invoice" in page
    assert f"/pay/invoices/{invoice.id}/checkout" not in page and "Demo mode" not in page
    listing = client.get("/pay/invoices").get_data(as_text=True)
    assert shows_contact(listing) and "/pay/card" not in listing

    # A pay button from an older page (or a hand-made post) changes nothing either.
    before = snapshot(db)
    forged = client.post(f"/pay/invoices/{invoice.id}/checkout", data={"form_id": "f" * 24})
    assert forged.status_code == 503 and "Location" not in forged.headers
    assert shows_contact(forged.get_data(as_text=True))
    assert snapshot(db) == before
    assert fresh(db, Invoice, invoice.id).status == "open" and emails(db, "receipt") == []
    assert fresh(db, Account, account.id).stripe_customer_id is None


def test_production_card_and_welcome_pages_show_the_contact_and_save_nothing(
    production, client, db, company, make_account
):
    account = make_account()
    open_welcome(client, db, account)
    location = client.get("/welcome/").headers["Location"]
    billing_step = None
    for _ in range(10):  # the steps as sign_up answers them, keeping the one that asks about billing
        if "/step/" not in location:
            break
        html = client.get(location).get_data(as_text=True)
        data = answer_all(html)
        for name in set(re.findall(r'name="(i\d+_choice)"', html)):
            billing_step, data[name] = html, "Card autopay"
        location = client.post(location, data=data).headers["Location"]
    assert location.endswith("/welcome/thanks")
    assert billing_step is not None and shows_contact(billing_step)
    assert "save your card securely with Stripe" not in billing_step
    for path in ("/welcome/thanks", "/welcome/service", "/pay/card"):
        page = client.get(path).get_data(as_text=True)
        assert shows_contact(page) and "To set up card autopay" in page, path
        assert 'action="/pay/card/setup"' not in page, path

    before = snapshot(db)
    refused = client.post("/pay/card/setup", data={"form_id": "f" * 24})
    assert refused.status_code == 503 and shows_contact(refused.get_data(as_text=True))
    assert snapshot(db) == before and fresh(db, Account, account.id).stripe_customer_id is None


def test_demo_checkout_routes_are_404_in_production(app, client, db, company, make_account):
    account = make_account()
    invoice, url = make_invoice(db, account)
    client.get(pay_path(url))
    page = client.get(f"/pay/invoices/{invoice.id}").get_data(as_text=True)
    started = client.post(
        f"/pay/invoices/{invoice.id}/checkout", data=button_form(page, f"/pay/invoices/{invoice.id}/checkout")
    )
    location = started.headers["Location"]
    checkout = client.get(location).get_data(as_text=True)
    assert "Demo mode" in checkout  # development: the demo Checkout works as before

    app.config["ENV_NAME"] = "production"  # the same portal, deployed without keys
    before = snapshot(db)
    assert client.get(location).status_code == 404
    form = button_form(checkout, f"{location}/succeed")
    assert client.post(f"{location}/succeed", data=form).status_code == 404
    assert client.post(f"{location}/decline", data=form).status_code == 404
    assert snapshot(db) == before
    assert fresh(db, Invoice, invoice.id).status == "open" and emails(db, "receipt") == []


def test_in_production_events_signed_with_the_demo_secret_are_not_accepted(
    production, app, client, db, make_account
):
    account = make_account()
    invoice, _ = make_invoice(db, account)
    event = make_event(
        "payment_intent.succeeded",
        {
            "id": "pi_demo_forged",
            "object": "payment_intent",
            "amount": 16500,
            "amount_received": 16500,
            "currency": "usd",
            "metadata": {"invoice_id": str(invoice.id), "account_id": str(account.id)},
        },
    )
    body = json.dumps(event)
    with app.app_context():
        header = sign_payload(body, demo_webhook_secret())
    before = snapshot(db)
    response = client.post(
        "/stripe/webhook", data=body, content_type="application/json", headers={"Stripe-Signature": header}
    )
    assert response.status_code != 200
    assert snapshot(db) == before and fresh(db, Invoice, invoice.id).status == "open"


def test_autopay_in_production_without_keys_charges_nothing(production, client, db, make_account, runner):
    account = make_account()
    sign_up(client, db, account, billing="Card autopay")
    account = fresh(db, Account, account.id)
    # A card saved while keys were set (say, before they were removed).
    account.stripe_customer_id, account.stripe_payment_method_id = "cus_live_1", "pm_live_1"
    account.card_brand, account.card_last4, account.card_exp = "visa", "4242", "12/2030"
    db.commit()
    invoice, _ = make_invoice(db, account)
    before = snapshot(db)
    result = runner.invoke(args=["charge-autopay"])
    assert result.exit_code != 0 and "Online payment is off" in result.output
    assert snapshot(db) == before
    assert fresh(db, Invoice, invoice.id).status == "open" and entries(db, account.id, "invoice_paid") == []


@pytest.mark.parametrize(
    "env, key, warned",
    [
        ("production", None, True),
        ("production", "sk_live_x", False),
        ("development", None, False),
    ],
)
def test_start_up_warns_when_production_has_no_stripe_key(
    database_url, tmp_path, monkeypatch, caplog, env, key, warned
):
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    with caplog.at_level(logging.WARNING, logger="portal.payments"):
        app = create_app(
            {**TEST_SETTINGS, "DATABASE_URL": database_url, "ENV_NAME": env, "STRIPE_SECRET_KEY": key}
        )
    app.extensions["portal.engine"].dispose()
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "STRIPE_SECRET_KEY" in r.getMessage()
    ]
    assert bool(warnings) is warned
    if warned:
        assert "online payment is OFF" in warnings[0]


# --- The demo Checkout's address (development) ---------------------------------------------


def readable(url: str) -> Iterator[str]:
    """The URL and whatever its parts decode to (base64, itsdangerous' zlib'd payloads)."""
    yield url
    for part in re.split(r"[/.]", url):
        try:
            raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except (binascii.Error, ValueError):
            continue
        yield raw.decode("utf-8", "replace")
        with contextlib.suppress(zlib.error):
            yield zlib.decompress(raw).decode("utf-8", "replace")


def test_the_demo_checkout_address_carries_no_personal_data(client, db, make_account):
    account = make_account(customer_email="dana.reyes@example.com", customer_name="Dana Reyes")
    invoice, url = make_invoice(db, account)
    client.get(pay_path(url))
    page = client.get(f"/pay/invoices/{invoice.id}").get_data(as_text=True)
    started = client.post(
        f"/pay/invoices/{invoice.id}/checkout", data=button_form(page, f"/pay/invoices/{invoice.id}/checkout")
    )
    location = started.headers["Location"]
    assert location.startswith("/pay/demo/checkout/")
    for text in readable(location):
        for secret in ("dana.reyes", "example.com", "Dana", "Reyes", account.service_address.split(",")[0]):
            assert secret not in text, (secret, text)
    # The page still knows everything it needs, looked up on the server.
    checkout = client.get(location).get_data(as_text=True)
    assert f"paying invoice {invoice.number}" in checkout and "$165.00" in checkout
