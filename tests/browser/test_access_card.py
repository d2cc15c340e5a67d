"""The access step and the access card in real Chromium at 375 px, with JavaScript on and off: a
promise's correction box stays hidden (computed style) until "That needs correcting" is ticked;
the card is confirmed there and shows on the technician's brief, masked until "Show code".
Screenshots land in tests/artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page
from sqlalchemy.orm import Session

from portal import access_card
from portal.models import Account
from portal.onboarding import send_welcome
from tests.conftest import PASSWORD

from .a11y import audit

pytestmark = pytest.mark.browser

WIDTH = 375


def customer_tab(browser: Browser, js: bool) -> Page:
    context = browser.new_context(
        viewport={"width": WIDTH, "height": 812},
        java_script_enabled=js,
        device_scale_factor=1,
        locale="en-US",
    )
    context.set_default_timeout(10_000)
    return context.new_page()


def display_of(page: Page, selector: str) -> str:
    return str(page.eval_on_selector(selector, "e => getComputedStyle(e.closest('.if-different')).display"))


@pytest.mark.parametrize("js", [True, False], ids=["js", "no-js"])
def test_correction_boxes_open_only_for_needs_correcting_and_the_card_reaches_the_brief(
    chromium, live_server, db: Session, make_account, make_staff, artifacts: Path, js: bool
):
    account: Account = make_account(make_staff("sales"))
    url = send_welcome(db, account, "system").url
    db.commit()
    gate = next(item for item in account.items if item.kind == "gate_access")
    safety = next(item for item in account.items if item.kind == "safety")

    page = customer_tab(chromium, js)
    page.goto(url)
    page.goto(f"{live_server}/welcome/step/access")
    label = "js" if js else "nojs"
    correction = f"#i{gate.id}_value"
    # Nothing ticked: no correction box shows, and there is one notes box for the step.
    assert display_of(page, correction) == "none"
    assert display_of(page, f"#i{safety.id}_value") == "none"
    assert not page.is_visible(correction)
    assert page.locator("textarea:visible").count() == 1  # the step's notes
    assert page.input_value("#card-gates-0-location") == "Side gate"
    page.screenshot(path=str(artifacts / f"access-step-375-{label}.png"), full_page=True)
    if js:  # axe runs in the page; test_welcome_flow audits the same step without JS
        report = audit(page, WIDTH, None)
        assert report.ok(), report.problems

    group = page.locator("fieldset.answer", has=page.locator(correction))
    group.get_by_role("radio", name="That needs correcting").check()
    assert display_of(page, correction) == "block" and page.is_visible(correction)
    assert display_of(page, f"#i{safety.id}_value") == "none"  # the other answer stays closed
    page.screenshot(path=str(artifacts / f"access-step-correcting-375-{label}.png"), full_page=True)
    group.get_by_role("radio", name="That's right").check()
    assert display_of(page, correction) == "none"

    # Confirm the step with a dog added to the card.
    page.locator("fieldset.answer", has=page.locator(f"#i{safety.id}_value")).get_by_role(
        "radio", name="That's right"
    ).check()
    group.get_by_role("radio", name="That's right").check()
    page.get_by_text("Dogs", exact=True).click()
    page.fill("#card-dogs-0-name", "Biscuit")
    page.select_option("#card-dogs-0-size", "small")
    page.get_by_role("button", name="Save and continue").click()
    page.wait_for_url("**/welcome/step/readiness")
    saved = access_card.versions(db, account.id)
    assert [v.version for v in saved] == [1]
    assert access_card.Card.from_json(saved[0].card).dogs[0].name == "Biscuit"

    # The technician's brief on a phone: the card, its code masked until asked for.
    technician = make_staff("technician", name="Tom Tech")
    tech = customer_tab(chromium, True)
    tech.goto(f"{live_server}/staff/login")
    tech.fill("#email", technician.email)
    tech.fill("#password", PASSWORD)
    tech.click("button[type=submit]")
    tech.wait_for_url(f"{live_server}/staff/day**")
    tech.goto(f"{live_server}/staff/accounts/{account.id}/brief")
    card = tech.locator("#access")
    assert "Biscuit" in card.inner_text() and "4412" not in tech.inner_text("main")
    tech.screenshot(path=str(artifacts / f"access-card-brief-375-{label}.png"), full_page=True)
    tech.get_by_role("button", name=f"Show code for {account.customer.name}").click()
    tech.wait_for_load_state()
    assert "4412" in tech.locator("#access").inner_text()
    report = audit(tech, WIDTH, None)
    assert report.ok(), report.problems
