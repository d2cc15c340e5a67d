"""Photos in real Chromium: the customer adds one on a 375 px phone during onboarding, with
JavaScript off (a plain multipart form), and sees its thumbnail; the technician sees the
thumbnails on the day list (375 px) and the brief (1280 px), and the printed brief with three
photos still fits one Letter page. Screenshots land in tests/artifacts/."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader
from sqlalchemy import select

from portal import photos
from portal.models import Photo
from portal.onboarding import send_welcome
from portal.storage import get_storage
from tests.test_photos import jpeg_with_gps

from .a11y import Auditor, audit
from .test_technician import onboarded_demo, sign_in

pytestmark = pytest.mark.browser


def test_a_customer_adds_a_photo_on_a_phone_without_javascript_and_sees_its_thumbnail(
    chromium, live_server, db, make_account, artifacts, tmp_path
):
    account = make_account()
    url = send_welcome(db, account, "system").url
    db.commit()
    context = chromium.new_context(
        viewport={"width": 375, "height": 812}, device_scale_factor=1, java_script_enabled=False
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto(live_server + "/welcome/t/" + url.rsplit("/welcome/t/", 1)[1])
    page.goto(f"{live_server}/welcome/step/access")
    assert page.locator("#photo-photo").get_attribute("accept") == "image/*"
    picture = tmp_path / "IMG_0042.jpg"
    picture.write_bytes(jpeg_with_gps((2400, 1800), 6))
    page.set_input_files("#photo-photo", str(picture))
    page.fill("#photo-caption", "Side gate, latch on the left")
    page.click("text=Add this photo")
    page.wait_for_url("**/welcome/step/access**")
    assert "Photo added" in page.inner_text("main")

    page.goto(f"{live_server}/welcome/step/access")  # the audit tabs from the top of the page
    thumb = page.locator(".photo-grid img").first
    thumb.scroll_into_view_if_needed()
    assert thumb.get_attribute("alt") == "Side gate, latch on the left"
    assert page.evaluate("img => img.complete && img.naturalWidth", thumb.element_handle()) == 300
    # axe needs script: it runs on a JS-on copy of this JS-off page.
    audit_context = chromium.new_context(viewport={"width": 375, "height": 812}, device_scale_factor=1)
    report = audit(page, 375, Auditor(audit_context))
    audit_context.close()
    page.screenshot(path=str(artifacts / "photos-access-step-375.png"), full_page=True)
    assert report.ok(), report.problems
    photo = db.scalars(select(Photo)).one()
    assert (photo.account_id, photo.width, photo.height) == (account.id, 1500, 2000)

    # Tapping the thumbnail opens the full photo: a JPEG with no EXIF.
    with page.expect_response(f"**/welcome/photos/{photo.id}/full") as opened:
        thumb.click()
    response = opened.value
    assert response.status == 200 and response.headers["content-type"] == "image/jpeg"
    assert not Image.open(io.BytesIO(response.body())).getexif()
    context.close()


def test_the_technician_sees_photos_on_the_day_list_and_brief_and_the_print_stays_one_page(
    chromium, live_server, app, db, make_account, make_staff, artifacts
):
    account = onboarded_demo(db, make_account, make_staff)
    storage = get_storage()
    for caption, size in (
        ("Side gate from the street", (1600, 1200)),
        ("Equipment pad behind the shed", (1200, 1600)),
        ("Pool and the steps", (2000, 1500)),
    ):
        photos.add(db, storage, account, photos.clean(jpeg_with_gps(size, 1)), caption)
    db.commit()
    technician = make_staff("technician", name="Theo Tech")

    phone = sign_in(chromium, live_server, technician.email, 375)
    row = phone.locator("li.visit").first
    assert "3 photos" in row.inner_text()
    day_thumb = row.locator(".day-photos img")
    assert phone.evaluate("img => img.complete && img.naturalWidth > 0", day_thumb.element_handle())
    report = audit(phone, 375, None)
    phone.screenshot(path=str(artifacts / "photos-day-375.png"), full_page=True)
    assert report.ok(), report.problems

    desk = sign_in(chromium, live_server, technician.email, 1280)
    desk.goto(f"{live_server}/staff/accounts/{account.id}/brief")
    images = desk.locator(".brief-photos img")
    assert images.count() == 3
    for index in range(3):
        assert desk.evaluate(
            "img => img.complete && img.naturalWidth > 0", images.nth(index).element_handle()
        )
    report = audit(desk, 1280, None)
    desk.screenshot(path=str(artifacts / "photos-brief-1280.png"), full_page=True)
    assert report.ok(), report.problems

    assert "7781" not in desk.inner_text("main")  # masked until the technician asks
    desk.get_by_role("button", name="Show code for Dana Reyes").click()
    desk.wait_for_load_state()
    assert desk.locator(".brief-photos img").count() == 3
    pdf = desk.pdf(format="Letter", print_background=True)
    (artifacts / "photos-brief.pdf").write_bytes(pdf)
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1
    printed = " ".join(reader.pages[0].extract_text().split())
    for words in ("Photos (3)", "Side gate from the street", "Equipment pad", "Toddler at home", "code 7781"):
        assert words in printed, words
    assert Path(artifacts / "photos-brief.pdf").stat().st_size > 0
