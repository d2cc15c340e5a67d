"""A decision closes the loop, in real Chromium: Dana (375 px) corrects her visit day and signs,
the office (1280 px) keeps Friday with a note from its inbox, and Dana's My service page and
the email in the outbox both say what was decided. Screenshots land in tests/artifacts/."""

from __future__ import annotations

import email.policy
from datetime import datetime, timedelta
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from playwright.sync_api import Browser, Page
from sqlalchemy.orm import Session

from tests.conftest import PASSWORD

from .a11y import audit
from .test_welcome_flow import welcome_link

pytestmark = pytest.mark.browser

NOTE = "The Tuesday route is full."
STORY = f"You asked for Tuesday. We kept Friday: {NOTE}"


def _page(chromium: Browser, width: int) -> Page:
    context = chromium.new_context(viewport={"width": width, "height": 900}, device_scale_factor=1)
    context.set_default_timeout(10_000)
    return context.new_page()


def _check(page: Page, width: int, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"decisions-{name}-{width}.png"), full_page=True)
    report = audit(page, width, None)
    assert report.ok(), f"{name} at {width}px ({report.url}):\n  " + "\n  ".join(report.problems)


def _submit(page: Page, button: str) -> None:
    with page.expect_navigation(wait_until="load"):
        page.get_by_role("button", name=button).click()


def _confirm_everything_shown(page: Page) -> None:
    for radio in page.get_by_role("radio", name="That's right").all():
        if radio.is_visible():
            radio.check()


def test_dana_corrects_her_day_the_office_keeps_friday_and_dana_is_told(
    chromium: Browser,
    live_server: str,
    app: Flask,
    db: Session,
    runner: FlaskCliRunner,
    make_account: Any,
    make_staff: Any,
    artifacts: Path,
) -> None:
    user = make_staff("office", name="Olivia Office")
    account = make_account()
    visit_label = next(item.label for item in account.items if item.kind == "visit_day")
    link = welcome_link(db, runner, app, account)
    dana = _page(chromium, 375)

    # Dana: Tuesday instead of Friday, everything else right, signed.
    dana.goto(link)
    _submit(dana, "Let's start")
    _confirm_everything_shown(dana)
    day = dana.get_by_role("group", name=visit_label, exact=True)
    day.get_by_role("radio", name="I'd like a different day").check()
    day.get_by_role("group", name="Days that suit you better, in order").get_by_label(
        "1st choice"
    ).select_option("Tuesday")
    day.get_by_label("Why? (it helps us plan the route)").fill("We are home on Tuesdays.")
    _submit(dana, "Save and continue")
    while "/welcome/step/review" not in dana.url:
        _confirm_everything_shown(dana)
        for done in dana.get_by_text("Done", exact=True).all():
            done.click()
        invoices = dana.get_by_text("Pay each invoice from an email link")
        if invoices.count():
            invoices.click()
        _submit(dana, "Save and continue")
    for term in dana.get_by_label("I accept:", exact=False).all():
        term.check()
    dana.get_by_label("I agree to receive my agreement and other records electronically", exact=False).check()
    dana.get_by_label("Type your full name").fill(account.customer.name)
    dana.get_by_label("I confirm these details are correct", exact=False).check()
    _submit(dana, "Sign")
    assert dana.url.endswith("/welcome/thanks")
    thanks = dana.locator("main").inner_text()
    # Her day and her billing choice (invoices, not the card autopay sales noted) wait.
    assert "Your service is confirmed" not in thanks and "These answers wait for our office" in thanks
    waiting = dana.locator("ul.waiting").inner_text()
    assert visit_label in waiting and "Tuesday" in waiting
    _check(dana, 375, artifacts, "thanks")

    # The office: the inbox lists it; keep Friday with a note.
    office = _page(chromium, 1280)
    office.goto(f"{live_server}/staff/login")
    office.get_by_label("Email").fill(user.email)
    office.get_by_label("Password", exact=True).fill(PASSWORD)
    _submit(office, "Sign in")
    office.goto(f"{live_server}/staff/differences")
    assert "Difference" in office.locator("main").inner_text()
    _check(office, 1280, artifacts, "inbox")
    with office.expect_navigation():
        office.get_by_role("link", name=f"Resolve {visit_label} for {account.customer.name}").click()
    _check(office, 1280, artifacts, "resolve")
    office.get_by_label("Keep the promise", exact=False).check()
    office.get_by_label("Note", exact=False).fill(NOTE)
    _submit(office, "Save the decision")
    assert "Kept the promise" in office.locator("main").inner_text()

    # Dana's My service tells the story.
    dana.goto(f"{live_server}/welcome/service")
    assert STORY in dana.locator("main").inner_text()
    _check(dana, 375, artifacts, "my-service")

    # And the worker's next outbox run emails it, once the decision has waited its delay.
    later = datetime.utcnow() + timedelta(seconds=app.config["DECISION_EMAIL_DELAY_SECONDS"] + 1)
    result = runner.invoke(args=["outbox", "send", "--now", later.strftime("%Y-%m-%dT%H:%M:%S")])
    assert result.exit_code == 0, result.output
    decided = []
    for path in Path(app.config["MAIL_OUTBOX_DIR"]).glob("*.eml"):
        message = BytesParser(policy=email.policy.default).parsebytes(path.read_bytes())
        if "what we decided" in message["Subject"]:
            decided.append(message)
    assert len(decided) == 1 and decided[0]["To"] == account.customer.email
    text = decided[0].get_body(preferencelist=("plain",))
    assert text is not None
    body = text.get_content()
    assert STORY in body and f"{live_server}/welcome/service" in body
