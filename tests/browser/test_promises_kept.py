"""A promise kept, in real Chromium: the technician (375 px) marks the salt cell check done on
the brief, from a plain form, and Dana's My service page (375 px) shows it done. Screenshots
land in tests/artifacts/."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from playwright.sync_api import Browser, Page
from sqlalchemy.orm import Session

from portal.company import company_today
from portal.handoffs import HandoffData, Promise, create_handoff
from portal.occasions import BY_DATE, RECURRING, Occasion
from tests.conftest import PASSWORD, sign_as_shown

from .a11y import audit
from .test_welcome_flow import welcome_link

pytestmark = pytest.mark.browser


def _page(chromium: Browser, width: int) -> Page:
    context = chromium.new_context(viewport={"width": width, "height": 900}, device_scale_factor=1)
    context.set_default_timeout(10_000)
    return context.new_page()


def _check(page: Page, width: int, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"promises-kept-{name}-{width}.png"), full_page=True)
    report = audit(page, width, None)
    assert report.ok(), f"{name} at {width}px ({report.url}):\n  " + "\n  ".join(report.problems)


def test_the_technician_marks_the_salt_cell_check_done_and_dana_sees_it(
    chromium: Browser,
    live_server: str,
    app: Flask,
    db: Session,
    runner: FlaskCliRunner,
    make_staff: Any,
    artifacts: Path,
) -> None:
    today = company_today()
    data = HandoffData(
        customer_name="Dana Reyes",
        customer_email="dana@example.com",
        customer_phone="+1 480 555 0134",
        service_address="1820 W Palm Ln, Phoenix, AZ 85007",
        plan="Weekly full service",
        price_cents=16500,
        first_visit=today,
        promises=[
            Promise("visit_day", "Friday"),
            Promise("safety", "Toddler at home: always re-latch the gate"),
            Promise("equipment", "Salt cell check before summer", occasion=Occasion(BY_DATE, on=today)),
            Promise(
                "equipment",
                "Filter clean",
                occasion=Occasion(RECURRING, on=today + timedelta(days=30), every=3, unit="months"),
            ),
        ],
    )
    account = create_handoff(db, data, make_staff("sales", name="Sam Sales"))
    db.commit()
    link = welcome_link(db, runner, app, account)
    sign_as_shown(db, account, "Dana Reyes")
    db.commit()
    technician = make_staff("technician", name="Theo Tech")

    # The technician's phone: the brief's plain POST form (no script on the page) does the job.
    phone = _page(chromium, 375)
    phone.goto(f"{live_server}/staff/login")
    phone.fill("#email", technician.email)
    phone.fill("#password", PASSWORD)
    with phone.expect_navigation():
        phone.click("button[type=submit]")
    assert "Salt cell check before summer" in phone.inner_text("main")  # on today's day list
    phone.goto(f"{live_server}/staff/accounts/{account.id}/brief")
    work = phone.locator("#work")
    assert "Salt cell check before summer" in work.inner_text()
    assert "Filter clean" not in work.inner_text()  # not due on this visit
    _check(phone, 375, artifacts, "brief")
    item = work.locator("li.work-item").first
    item.get_by_label("Note (what you did, or why it couldn't be done)").fill(
        "Cell cleaned; output back to 80 %"
    )
    with phone.expect_navigation():
        item.locator("button[value=done]").click()
    assert "Marked done: Equipment." in phone.inner_text("main")
    assert phone.locator("#work").count() == 0  # nothing else due on this visit
    _check(phone, 375, artifacts, "brief-done")

    # Dana's phone: My service says it was done, and when the filter clean comes next.
    dana = _page(chromium, 375)
    dana.goto(link)
    dana.goto(f"{live_server}/welcome/service")
    text = dana.inner_text("main")
    assert f"Done on {today.strftime('%B %-d, %Y')}" in text
    assert f"Next: {(today + timedelta(days=30)).strftime('%B %Y')}" in text
    _check(dana, 375, artifacts, "my-service")
