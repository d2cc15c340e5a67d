"""The office's "Confirm a promotion" page in real Chromium at 1280 px and 375 px: errors next to
the fields (the page fits, passes axe-core and the layout checks), then the confirmed
promotion on the account page. Screenshots land in tests/artifacts/ (ignored by git)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from portal.handoffs import Promise
from tests.browser.test_staff_pages import WIDTHS, _check, _sign_in, tab  # noqa: F401  (the fixture)

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("width", WIDTHS)
def test_the_office_confirms_a_promotion_from_the_sale(
    width: int,
    tab: Any,
    live_server: str,
    db: Session,
    make_staff: Any,
    make_account: Any,
    artifacts: Path,  # noqa: F811
) -> None:
    office = make_staff("office", email="olivia@example.com", name="Olivia Office")
    account = make_account(
        first_visit=date(2026, 12, 7),
        promises=[Promise("custom", "January is free (promo FALL26)", "Promotion")],
    )
    account.status, account.signed_at = "signed", datetime(2026, 12, 1, tzinfo=timezone.utc)
    db.commit()

    page = tab(width)
    _sign_in(page, live_server, office)
    page.goto(f"{live_server}/staff/accounts/{account.id}")
    assert "January is free (promo FALL26)" in page.inner_text("#payments")
    with page.expect_navigation():
        page.get_by_role("link", name="Confirm a promotion").click()
    with page.expect_navigation():
        page.get_by_role("button", name="Confirm the promotion").click()
    assert "Enter the promo code" in page.inner_text("main")
    _check(page, width, artifacts, "promotion-refused")

    page.get_by_label("Month it covers").fill("2027-01")
    page.get_by_label("Free: the whole month's plan charge").check()
    page.get_by_label("Promo code").fill("FALL26")
    with page.expect_navigation():
        page.get_by_role("button", name="Confirm the promotion").click()
    assert "FALL26: January 2027, free" in page.inner_text("#payments")
    page.screenshot(path=str(artifacts / f"staff-promotion-confirmed-{width}.png"), full_page=True)
