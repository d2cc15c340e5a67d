"""The admin's staff page and the set-password page in real Chromium, at a desktop width and at
375 px: they fit, pass axe-core and the layout checks, and work by keyboard and mouse.
Screenshots land in tests/artifacts/ (ignored by git)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import staff_admin
from portal.models import OutboxEmail, StaffUser
from tests.conftest import PASSWORD

from .a11y import audit

pytestmark = pytest.mark.browser

WIDTHS = [1280, 375]


@pytest.fixture
def tab(chromium: Browser) -> Iterator[Any]:
    contexts = []

    def factory(width: int) -> Page:
        context = chromium.new_context(viewport={"width": width, "height": 900}, device_scale_factor=1)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield factory
    for context in contexts:
        context.close()


def _check(page: Page, width: int, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"staff-{name}-{width}.png"), full_page=True)
    report = audit(page, width, None)
    assert report.ok(), f"{name} at {width}px ({report.url}):\n  " + "\n  ".join(report.problems)


def _sign_in(page: Page, origin: str, user: StaffUser, password: str = PASSWORD) -> None:
    page.goto(f"{origin}/staff/login")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password", exact=True).fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()


@pytest.mark.parametrize("width", WIDTHS)
def test_the_staff_page_invites_and_reads_well(
    width: int, tab: Any, live_server: str, db: Session, make_staff: Any, artifacts: Path
) -> None:
    admin = make_staff("admin", email="ada@example.com", name="Ada Admin")
    sam = make_staff("sales", email="sam@example.com", name="Sam Seller")
    make_staff("technician", email="tia@example.com", name="Tia Tech")
    staff_admin.change_role(db, admin, sam, "office")
    staff_admin.set_active(db, admin, db.get(StaffUser, sam.id), False)
    db.commit()

    page = tab(width)
    _sign_in(page, live_server, admin)
    page.goto(f"{live_server}/staff/staff")
    nav = page.get_by_role("navigation", name="Staff")
    assert nav.get_by_role("link", name="Staff").get_attribute("aria-current") == "page"
    assert "Ada Admin" in nav.inner_text() and "ada@example.com" not in nav.inner_text()

    page.get_by_label("Name").fill("Nia Park")
    page.get_by_label("Email", exact=True).fill("nia@example.com")
    page.get_by_label("Role", exact=True).select_option("sales")
    with page.expect_navigation():
        page.get_by_role("button", name="Send invitation").click()
    assert "Invitation sent to nia@example.com" in page.inner_text("main")
    row = page.get_by_role("row").filter(has_text="Nia Park")
    assert "invited" in row.inner_text()
    _check(page, width, artifacts, "staff-page")


@pytest.mark.parametrize("width", WIDTHS)
def test_the_set_password_page_from_an_emailed_link(
    width: int, tab: Any, live_server: str, db: Session, make_staff: Any, artifacts: Path
) -> None:
    admin = make_staff("admin", email="ada@example.com", name="Ada Admin")
    staff_admin.invite(db, admin, email="nia@example.com", name="Nia Park", role="sales")
    db.commit()
    body = db.scalars(select(OutboxEmail).where(OutboxEmail.kind == "staff_invite")).one().text_body
    link = re.search(r"https?://\S+/staff/password/invite/\S+", body).group(0)

    page = tab(width)
    page.goto(link)
    assert urlsplit(page.url).path == "/staff/password/new"  # the token left the address bar
    assert page.get_by_role("heading", level=1).inner_text() == "Welcome, Nia Park"
    _check(page, width, artifacts, "set-password")

    page.get_by_label("New password", exact=True).fill("short")
    page.get_by_label("New password again").fill("short")
    with page.expect_navigation():
        page.get_by_role("button", name="Save password").click()
    assert "between 10 and 200" in page.inner_text("main")
    _check(page, width, artifacts, "set-password-error")

    page.get_by_label("New password", exact=True).fill("pool-days-all-summer")
    page.get_by_label("New password again").fill("pool-days-all-summer")
    with page.expect_navigation():
        page.get_by_role("button", name="Save password").click()
    assert "Password saved" in page.inner_text("main")
    nia = db.scalars(select(StaffUser).where(StaffUser.email == "nia@example.com")).one()
    _sign_in(page, live_server, nia, "pool-days-all-summer")
    assert "Nia Park" in page.get_by_role("navigation", name="Staff").inner_text()
