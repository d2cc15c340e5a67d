"""The balance and the statement in real Chromium at 375 px with JavaScript off, in demo mode:
the invoices page with its balance button, the demo Checkout for the balance, the statement on a
phone and printed (screenshots and a PDF in tests/artifacts/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from portal.models import Invoice
from portal.payments import adjustments
from portal.payments import invoices as invoice_service
from tests.browser.conftest import artifacts, chromium, live_server, skip_reason  # noqa: F401  (fixtures)
from tests.test_payments_browser import Tab
from tests.test_payments_support import fresh, make_invoice

pytestmark = [pytest.mark.browser, pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))]


def test_balance_and_statement_at_375px_and_printed(
    chromium: Browser, live_server: str, artifacts: Path, app: Any, db: Any, make_account: Any
) -> None:
    account = make_account()
    paid, _ = make_invoice(db, account, lines=[("Weekly service, November", 16500)])
    voided, _ = make_invoice(db, account, lines=[("Filter cartridge", 8900)])
    open_one, _ = make_invoice(db, account, lines=[("Weekly service, December", 16500)])
    extra, url = make_invoice(db, account, lines=[("Salt cell clean", 4550)])
    invoice_service.mark_paid(
        db,
        [paid],
        invoice_service.StripeFacts("evt_browser_1", "checkout.session.completed"),
        payment_intent="pi_browser_1",
        amount=16500,
        currency="usd",
    )
    adjustments.void_invoice(
        db, account, voided.id, "Filter replaced under warranty", "staff:1", "f" * 24, "/staff"
    )
    db.commit()

    tab = Tab(chromium, live_server)
    try:
        tab.open(url)
        tab.open(f"{live_server}/pay/invoices")
        main = tab.page.inner_text("main")
        assert "Your balance: $210.50" in main
        tab.check("invoices-balance")
        tab.page.screenshot(path=str(artifacts / "balance-invoices-375.png"), full_page=True)

        tab.open(f"{live_server}/pay/statement")
        tab.check("statement")
        text = tab.page.inner_text("main")
        assert "Filter replaced under warranty" in text and "Balance due" in text
        tab.page.screenshot(path=str(artifacts / "statement-375.png"), full_page=True)
        tab.page.emulate_media(media="print")
        assert not tab.page.locator(".customer-nav").is_visible()
        tab.page.screenshot(path=str(artifacts / "statement-print.png"), full_page=True)
        tab.page.pdf(path=str(artifacts / "statement.pdf"), format="Letter")
        assert (artifacts / "statement.pdf").read_bytes().startswith(b"%PDF")
        tab.page.emulate_media(media="screen")

        tab.open(f"{live_server}/pay/invoices")
        assert tab.press("Pay all 2 invoices: $210.50 now") == 200
        assert "/pay/demo/checkout/" in tab.page.url
        assert open_one.number in tab.page.inner_text("main")
        tab.check("demo-checkout-balance")
        assert tab.press("Simulate a successful payment") == 200
        assert tab.page.url == f"{live_server}/pay/balance/done"
        assert tab.page.get_by_role("heading", level=1).inner_text() == "Thank you, your payment is confirmed"
        tab.check("balance-paid")
        assert fresh(db, Invoice, open_one.id).status == fresh(db, Invoice, extra.id).status == "paid"
        tab.open(f"{live_server}/pay/statement")
        tab.page.screenshot(path=str(artifacts / "statement-paid-375.png"), full_page=True)
    finally:
        tab.close()
