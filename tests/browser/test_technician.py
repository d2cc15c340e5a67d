"""The technician's day in real Chromium: the day list on a 375 px phone, the brief on a 1280 px
screen, and the brief printed to PDF, which must be one Letter page for the demo account.

Screenshots (and the PDF, and a PNG of it when poppler's pdftoppm is installed) land in
tests/artifacts/."""

from __future__ import annotations

import io
import shutil
import subprocess
from datetime import date

import pytest
from playwright.sync_api import Browser, Page
from pypdf import PdfReader
from sqlalchemy.orm import Session

from portal import confirmations
from portal.models import Account
from portal.onboarding import send_welcome
from tests.conftest import PASSWORD

from .a11y import audit

pytestmark = pytest.mark.browser

LETTER = (612, 792)  # points


def onboarded_demo(db: Session, make_account, make_staff) -> Account:  # type: ignore[no-untyped-def]
    """The demo account (portal.demo's handoff) part-way through a typical onboarding: a new gate
    code, a disputed promise, the readiness checklist, contact preferences and a note."""
    account = make_account(make_staff("sales", name="Sam Sales"))
    send_welcome(db, account, "system")
    items = {item.kind: item for item in account.items}
    confirmations.record_answers(
        db,
        account,
        [
            confirmations.Answer(items["visit_day"], "confirmed", "Friday", ""),
            confirmations.Answer(
                items["gate_access"], "changed", "Side gate, code 7781", "We changed the code last week"
            ),
            confirmations.Answer(items["safety"], "confirmed", items["safety"].promised_value, ""),
            confirmations.Answer(
                items["equipment"],
                "disputed",
                None,
                "I was told the salt cell would be replaced, not checked",
            ),
        ],
    )
    confirmations.record_step_event(
        db,
        account,
        "readiness",
        confirmed="2 of 3 ready",
        details={
            "answers": {
                "Pets secured on visit day": "done",
                "Gate unlocked or code working": "done",
                "Pool equipment power switched on": "not_yet",
            }
        },
    )
    confirmations.record_step_event(
        db,
        account,
        "contact_preferences",
        confirmed="text, email",
        details={"preferred_times": "mornings", "sms_consent": False},
    )
    confirmations.record_step_event(
        db,
        account,
        "technician_note",
        confirmed="Biscuit (our dog) barks but is friendly; the pump is behind the shed.",
    )
    db.commit()
    return account


def sign_in(browser: Browser, origin: str, email: str, width: int) -> Page:
    context = browser.new_context(
        viewport={"width": width, "height": 900}, device_scale_factor=1, locale="en-US"
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto(f"{origin}/staff/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{origin}/staff/day**")  # a technician's start page
    return page


def test_the_technicians_day_list_and_one_page_brief(
    chromium, live_server, db, make_account, make_staff, artifacts
):
    account = onboarded_demo(db, make_account, make_staff)
    technician = make_staff("technician", name="Theo Tech")
    visit_day: date = account.first_visit  # type: ignore[assignment]
    assert visit_day > date.today()

    # The phone: lands on the demo's visit day (nothing earlier), every row readable and tappable.
    phone = sign_in(chromium, live_server, technician.email, 375)
    assert "Dana Reyes" in phone.inner_text("main")
    row = phone.locator("li.visit").first
    assert row.locator('a[href^="tel:+14805550134"]').count() == 1
    maps = "https://www.google.com/maps/search/?api=1&query=1820%20W%20Palm"
    assert row.locator(f'a[href^="{maps}"]').count() == 1
    # Codes masked on the list; the brief's "Show code" shows them (and the record notes it).
    assert (
        "code \N{BULLET}\N{BULLET}\N{BULLET}\N{BULLET}" in row.inner_text() and "7781" not in row.inner_text()
    )
    assert "Toddler at home" in row.inner_text()
    report = audit(phone, 375, None)
    phone.screenshot(path=str(artifacts / "technician-day-375.png"), full_page=True)
    assert report.ok(), report.problems
    assert not [
        r
        for r in (phone.evaluate("() => performance.getEntriesByType('resource').map(e => e.name)"))
        if not r.startswith(live_server)
    ]

    # The screen: the brief, safety and access before the rest of the service.
    desk = sign_in(chromium, live_server, technician.email, 1280)
    desk.goto(f"{live_server}/staff/accounts/{account.id}/brief")
    assert "7781" not in desk.inner_text("main")
    desk.get_by_role("button", name="Show code for Dana Reyes").click()
    desk.wait_for_load_state()
    text = desk.inner_text("main")
    assert "code 7781" in text
    assert text.index("Safety and access") < text.index("The service")
    assert text.index("Toddler at home") < text.index("Weekly full service, $165.00")
    report = audit(desk, 1280, None)
    desk.screenshot(path=str(artifacts / "technician-brief-1280.png"), full_page=True)
    assert report.ok(), report.problems

    # Paper: one Letter page, with the safety line, the new code and the phone on it.
    pdf = desk.pdf(format="Letter", print_background=True)
    (artifacts / "technician-brief.pdf").write_bytes(pdf)
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1
    page = reader.pages[0]
    assert (round(float(page.mediabox.width)), round(float(page.mediabox.height))) == LETTER
    printed = " ".join(page.extract_text().split())  # lines wrap where the layout wraps them
    for words in (
        "Toddler at home",
        "code 7781",
        "+1 480 555 0134",
        "1820 W Palm Ln",
        "Not decided yet (2)",
        "Biscuit",
    ):
        assert words in printed, words
    assert "Sign out" not in printed and "Back to the day list" not in printed
    if shutil.which("pdftoppm"):
        out = artifacts / "technician-brief-print"
        subprocess.run(
            [
                "pdftoppm",
                "-png",
                "-r",
                "80",
                "-singlefile",
                str(artifacts / "technician-brief.pdf"),
                str(out),
            ],
            check=True,
            timeout=60,
        )
