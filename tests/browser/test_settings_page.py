"""The admin's settings page in real Chromium at 1280 px and 375 px: upload a logo with EXIF, see
it in the header, try #f5c518 and get the darker shade offered with both swatches. Each state is
screenshotted (tests/artifacts/settings-*.png) and audited: fits the width, labels, 44 px targets,
keyboard focus, axe-core WCAG 2.x A/AA."""

from __future__ import annotations

import re
from io import BytesIO
from pathlib import Path

import pytest
from flask import Flask
from PIL import Image, ImageDraw
from playwright.sync_api import Browser, Page
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import brand
from portal.models import CompanySettings
from tests.conftest import PASSWORD

from .a11y import audit

pytestmark = pytest.mark.browser


def logo_with_exif(path: Path) -> Path:
    """A logo-like picture (a wave mark and two word bars on white) carrying EXIF."""
    image = Image.new("RGB", (900, 300), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.ellipse((30, 30, 270, 270), fill=(11, 92, 171))
    draw.rectangle((80, 130, 220, 170), fill=(255, 255, 255))
    draw.rectangle((310, 90, 860, 150), fill=(26, 31, 36))
    draw.rectangle((310, 180, 700, 220), fill=(77, 88, 98))
    exif = Image.Exif()
    exif[0x010F] = "SpyCam Inc"
    image.save(path, "JPEG", exif=exif)
    return path


def sign_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/staff/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()


def save(page: Page, button: str = "Save settings") -> int:
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name=button).click()
    return navigation.value.status if navigation.value else 0


@pytest.mark.parametrize("width, height", [(1280, 900), (375, 812)])
def test_settings_page_uploads_a_logo_and_guards_the_colour(
    chromium: Browser,
    live_server: str,
    app: Flask,
    db: Session,
    make_staff,
    artifacts: Path,
    tmp_path: Path,
    width: int,
    height: int,
):
    db.add(
        CompanySettings(
            name="Blue Lagoon Pool Care",
            email="hello@bluelagoon.example",
            brand_color="#0b5cab",
            currency="USD",
            timezone="America/Phoenix",
            readiness_checklist=["Pets secured on visit day"],
        )
    )
    db.commit()
    admin = make_staff("admin", name="Alex Admin")
    context = chromium.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        sign_in(page, live_server, admin.email)
        page.goto(f"{live_server}/staff/settings")
        report = audit(page, width, None)
        assert report.ok(), "\n".join(report.problems)
        page.screenshot(path=str(artifacts / f"settings-{width}.png"), full_page=True)

        page.get_by_label("Logo (PNG, JPEG or WebP, at most 2 MB)").set_input_files(
            str(logo_with_exif(tmp_path / "logo.jpg"))
        )
        page.get_by_label("Time zone").select_option("Europe/Berlin")
        assert save(page) == 200  # redirected back to the page
        assert "Company settings saved." in page.content()
        header_logo = page.locator("header img.logo")
        assert header_logo.count() == 1
        logo_url = header_logo.get_attribute("src")
        assert re.fullmatch(r"/logo/logo-[0-9a-f]{16}\.png", logo_url or "")
        served = page.request.get(f"{live_server}{logo_url}")
        assert served.headers["content-type"] == "image/png"
        assert served.headers["x-content-type-options"] == "nosniff"
        with Image.open(BytesIO(served.body())) as stored:
            assert stored.size == (600, 200) and not stored.getexif()

        page.get_by_label("Brand colour").fill("#f5c518")
        assert save(page) == 400
        text = page.locator("#brand_color-error").inner_text()
        offered = re.search(r"Try (#[0-9a-f]{6})", text).group(1)
        assert brand.readable(offered)
        assert page.locator("#swatch-entered").is_visible() and page.locator("#swatch-shade").is_visible()
        report = audit(page, width, None)
        assert report.ok(), "\n".join(report.problems)
        page.screenshot(path=str(artifacts / f"settings-refused-{width}.png"), full_page=True)

        db.expire_all()
        company = db.scalars(select(CompanySettings)).one()
        assert (company.brand_color, company.timezone) == ("#0b5cab", "Europe/Berlin")
    finally:
        context.close()
