"""The payment pages in real Chromium at 375 px with JavaScript off, in demo mode: from the pay
link in an invoice email, through the demo Checkout, to the confirmation; then saving a card.

Each page must fit the screen, label its fields, offer 44 px targets, show keyboard focus, pass
axe-core (WCAG 2.x A/AA) and load nothing from another host (the checks of tests/browser/a11y.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page

from portal.models import Account, CompanySettings, Invoice
from portal.onboarding import send_link_on_request, send_welcome
from tests.browser.a11y import Auditor, audit
from tests.browser.conftest import artifacts, chromium, live_server, skip_reason  # noqa: F401  (fixtures)
from tests.test_payments_support import emails, entries, fresh, make_invoice, sign_up

pytestmark = [pytest.mark.browser, pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))]

WIDTH, HEIGHT = 375, 812


class Tab:
    """A JavaScript-off tab at 375 px, audited through a JavaScript-on copy (axe needs JS)."""

    def __init__(self, browser: Browser, origin: str) -> None:
        self.origin = origin
        self.context = browser.new_context(
            viewport={"width": WIDTH, "height": HEIGHT}, java_script_enabled=False, device_scale_factor=1
        )
        self.context.set_default_timeout(10_000)
        self.audit_context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
        self.auditor = Auditor(self.audit_context)
        self.requests: list[str] = []
        self.context.on("request", lambda r: self.requests.append(r.url))
        self.page: Page = self.context.new_page()

    def open(self, url: str) -> int:
        response = self.page.goto(url, wait_until="load")
        assert response is not None
        return response.status

    def press(self, button: str) -> int:
        with self.page.expect_navigation(wait_until="load") as navigation:
            self.page.get_by_role("button", name=button).click()
        assert navigation.value is not None
        return navigation.value.status

    def check(self, name: str, inputs: bool = False) -> None:
        """`inputs`: a page with a form of its own (a welcome step), not a payment page."""
        report = audit(self.page, WIDTH, self.auditor)
        assert report.ok(), f"{name} ({report.url}):\n  " + "\n  ".join(report.problems)
        assert (
            self.page.locator("input:not([type=hidden])").count() == 0 or inputs or name.startswith("staff")
        )
        foreign = [u for u in self.requests if urlsplit(u).netloc != urlsplit(self.origin).netloc]
        assert not foreign, f"{name}: requests to another host: {foreign}"

    def close(self) -> None:
        self.context.close()
        self.audit_context.close()


@pytest.fixture
def tab(chromium: Browser, live_server: str) -> Iterator[Tab]:
    opened = Tab(chromium, live_server)
    yield opened
    opened.close()


def test_paying_an_invoice_from_its_email_link_at_375px_without_javascript(
    tab: Tab,
    live_server: str,
    db: Any,
    make_account: Any,
) -> None:
    account = make_account()
    invoice, url = make_invoice(
        db, account, lines=[("Weekly service, March", 16500), ("Salt cell clean", 4550)]
    )
    assert url.startswith(live_server + "/pay/t/")
    tab.open(url)
    assert tab.page.url == f"{live_server}/pay/invoices/{invoice.id}"
    tab.check("invoice")
    assert tab.press("Pay $210.50 now") == 200
    assert "/pay/demo/checkout/" in tab.page.url
    assert tab.page.get_by_role("heading", level=1).inner_text() == "Demo mode — no real payment"
    tab.check("demo-checkout")
    assert tab.press("Simulate a successful payment") == 200
    assert tab.page.url == f"{live_server}/pay/invoices/{invoice.id}/done"
    assert tab.page.get_by_role("heading", level=1).inner_text() == "Thank you, your payment is confirmed"
    tab.check("paid")
    assert fresh(db, Invoice, invoice.id).status == "paid"
    tab.open(f"{live_server}/pay/invoices")
    tab.check("invoices")


def test_saving_a_card_after_signing_at_375px_without_javascript(
    tab: Tab,
    live_server: str,
    client: Any,
    db: Any,
    make_account: Any,
) -> None:
    account = make_account()
    sign_up(client, db, account, billing="Card autopay")  # the steps have their own browser test
    _, url = make_invoice(db, fresh(db, Account, account.id))  # its pay link starts the browser's session
    tab.open(url)
    tab.open(f"{live_server}/pay/card")
    tab.check("card")
    assert tab.press("Save my card") == 200
    tab.check("demo-setup")
    assert tab.press("Simulate a decline") == 200
    assert "the card was declined" in tab.page.inner_text("main")
    tab.check("demo-declined")
    assert tab.press("Simulate a successful card setup") == 200
    assert "Visa ending 4242, expires 12/" in tab.page.inner_text("main")
    tab.check("card-saved")
    assert entries(db, account.id, "card_saved")[0].actor == "stripe"


def test_online_payment_off_pages_at_375px_in_production_without_stripe_keys(
    tab: Tab, live_server: str, artifacts: Path, app: Any, client: Any, db: Any, make_account: Any
) -> None:
    """Production, no keys: each page that would offer a payment says plainly that online
    payment is off and how to reach the company instead (screenshots in tests/artifacts/)."""
    app.config.update(ENV_NAME="production", STRIPE_SECRET_KEY=None, STRIPE_WEBHOOK_SECRET=None)
    db.add(
        CompanySettings(
            name="Blue Lagoon Pool Care",
            phone="+1 602 555 0100",
            email="billing@bluelagoon.example",
            readiness_checklist=[],
        )
    )
    db.commit()
    account = make_account()
    seen: list[str] = []

    def look(name: str) -> None:
        main = tab.page.inner_text("main")
        assert "Online payment is not available" in main and "+1 602 555 0100" in main, name
        assert tab.page.get_by_role("link", name="Email billing@bluelagoon.example").count() >= 1, name
        assert (
            tab.page.get_by_role("button", name=re.compile("^(Pay |Save my card|Replace my card)")).count()
            == 0
        ), name
        tab.page.screenshot(path=str(artifacts / f"payments-off-{name}.png"), full_page=True)
        tab.check(f"payments-off-{name}", inputs=name in ("billing-step", "my-service"))
        seen.append(name)

    sent = send_welcome(db, account, "system")
    db.commit()
    tab.open(sent.url)
    tab.open(f"{live_server}/welcome/step/billing")
    look("billing-step")

    sign_up(client, db, fresh(db, Account, account.id), billing="Card autopay")
    send_link_on_request(db, account.customer.email)  # "email me a new link", once signed
    db.commit()
    resent = emails(db, "service_link")[-1]  # a signed customer's new link is to their service page
    tab.open(re.search(r"http://\S+/welcome/t/\S+", resent.text_body).group(0))
    tab.open(f"{live_server}/welcome/service")
    look("my-service")

    invoice, url = make_invoice(db, fresh(db, Account, account.id))
    tab.open(url)
    assert tab.page.url == f"{live_server}/pay/invoices/{invoice.id}"
    look("invoice")
    for name, path in (("invoices", "/pay/invoices"), ("card", "/pay/card")):
        assert tab.open(live_server + path) == 200
        look(name)
    assert seen == ["billing-step", "my-service", "invoice", "invoices", "card"]
