"""Company settings in the browser: the logo is uploaded (decoded, resized, stripped, stored
under the instance folder, served by the app), the brand colour must stay readable, the time zone
is a real IANA zone and every time shown uses it, and emails carry the company's sending name
and Reply-To."""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from email import message_from_bytes, policy
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from sqlalchemy import select
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from portal import brand, record
from portal.models import CompanySettings
from portal.onboarding import send_welcome
from portal.outbox import deliver_pending
from tests.conftest import count_rows

GOOD = {"name": "Blue Lagoon", "brand_color": "#123456", "currency": "USD", "timezone": "America/Phoenix"}


@pytest.fixture
def admin(staff, make_staff):
    staff.login(make_staff("admin"))


@pytest.fixture
def saved(db):
    """Settings saved before the test, with an uploaded-looking logo name to compare against."""
    company = CompanySettings(
        name="Blue Lagoon",
        brand_color="#123456",
        currency="USD",
        timezone="America/Phoenix",
        logo_file="",
        reply_to="",
    )
    db.add(company)
    db.commit()
    return company


def uploads(app) -> list[str]:
    folder = Path(app.config["UPLOAD_DIR"])
    return sorted(os.listdir(folder)) if folder.exists() else []


def upload(client, data: bytes, filename: str, **fields):
    # The body encoded here, in memory: the test client spools large bodies to a file it leaves open.
    boundary, body = encode_multipart(
        MultiDict(
            {
                **GOOD,
                **fields,
                "logo": FileStorage(BytesIO(data), filename, content_type="application/octet-stream"),
            }
        )
    )
    return client.post("/staff/settings", data=body, content_type=f"multipart/form-data; boundary={boundary}")


def png(size=(1200, 400), colour=(11, 92, 171), **save) -> bytes:
    out = BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG", **save)
    return out.getvalue()


def with_exif(fmt: str) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "SpyCam Inc"  # Make
    exif[0x0131] = "Secret Editor 1.0"  # Software
    out = BytesIO()
    extra = {}
    if fmt == "PNG":
        info = PngInfo()
        info.add_text("Comment", "private note: home address 1820 W Palm Ln")
        extra["pnginfo"] = info
    Image.new("RGB", (1200, 400), (200, 30, 30)).save(out, fmt, exif=exif, **extra)
    return out.getvalue()


# -- logo upload: refusals store nothing ---------------------------------------------------------

GIF_JS = b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00;\x00\x00\x00\x00\x00\x00*/=1;alert(document.domain);//"
SVG = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b'<script>alert(1)</script><rect width="10" height="10"/></svg>'
)


def noise_png(megabytes: float) -> bytes:
    """A real, decodable PNG that cannot compress: random pixels."""
    side = int((megabytes * 1024 * 1024 / 3) ** 0.5) + 10
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    "data, filename, message",
    [
        (b"this is a text file, not a picture", "logo.png", "not a PNG, JPEG or WebP image"),
        (png()[:300], "cut.png", "not a PNG, JPEG or WebP image"),
        (GIF_JS, "logo.gif", "not a PNG, JPEG or WebP image"),
        (
            png() + b"<html><script>alert(document.cookie)</script></html>",
            "logo.png",
            "something else appended after the image",
        ),
        (SVG, "logo.svg", "SVG logos are not accepted"),
        (SVG, "logo.png", "SVG logos are not accepted"),
        (b"", "empty.png", "That file is empty"),
    ],
    ids=["text", "truncated-png", "gif-js-polyglot", "png-html-polyglot", "svg", "svg-named-png", "empty"],
)
def test_a_refused_upload_says_why_and_stores_nothing(app, client, db, admin, saved, data, filename, message):
    rows = count_rows(db, CompanySettings)
    response = upload(client, data, filename, name="Renamed Pools")
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert uploads(app) == []
    db.expire_all()
    company = db.scalars(select(CompanySettings)).one()
    assert (company.logo_file, company.name) == ("", "Blue Lagoon")  # the rest of the form too
    assert count_rows(db, CompanySettings) == rows


def test_a_logo_over_2_mb_is_refused_with_a_message_not_a_413(app, client, db, admin, saved):
    big = noise_png(2.2)
    assert 2 * 1024 * 1024 < len(big) < 3 * 1024 * 1024
    response = upload(client, big, "photo.png")
    assert response.status_code == 400
    assert "the logo can be at most 2 MB" in response.get_data(as_text=True)
    assert uploads(app) == []
    db.expire_all()
    assert db.scalars(select(CompanySettings)).one().logo_file == ""


def test_other_forms_keep_the_1_mb_body_limit(client, db, admin, saved):
    response = client.post("/staff/handoffs/new", data={"customer_name": "x" * (1024 * 1024 + 10)})
    assert response.status_code == 413


def test_a_valid_logo_is_refused_too_when_another_field_is_wrong(app, client, db, admin, saved):
    response = upload(client, png(), "logo.png", brand_color="nope")
    assert response.status_code == 400
    assert uploads(app) == []


# -- logo upload: what is stored and served ------------------------------------------------------


@pytest.mark.parametrize("fmt, filename", [("PNG", "logo.png"), ("JPEG", "logo.jpg"), ("WEBP", "logo.webp")])
def test_an_uploaded_logo_is_resized_stripped_of_metadata_and_served_as_png(
    app, client, db, admin, saved, fmt, filename
):
    original = with_exif(fmt)
    with Image.open(BytesIO(original)) as check:  # the upload really carries EXIF
        assert check.getexif().get(0x010F) == "SpyCam Inc"

    response = upload(client, original, filename)
    assert response.status_code == 302
    [stored] = uploads(app)
    assert re.fullmatch(r"logo-[0-9a-f]{16}\.png", stored)
    db.expire_all()
    assert db.scalars(select(CompanySettings)).one().logo_file == stored

    page = client.get("/staff/").get_data(as_text=True)
    assert f'<img src="/logo/{stored}"' in page.split("</header>")[0]
    served = client.get(f"/logo/{stored}")
    body = served.data
    served.close()  # a file response: closing it closes the file
    assert served.status_code == 200
    assert served.headers["Content-Type"] == "image/png"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    with Image.open(BytesIO(body)) as logo:
        assert logo.format == "PNG"
        assert logo.size == (600, 200)  # 1200 x 400 into the 600 x 200 box, shape kept
        assert not logo.getexif()
        assert "exif" not in logo.info and "Comment" not in logo.info
    assert b"SpyCam" not in body and b"Palm Ln" not in body


def test_a_small_logo_is_not_enlarged_and_transparency_is_kept(app, client, db, admin, saved):
    out = BytesIO()
    Image.new("RGBA", (120, 40), (0, 0, 0, 0)).save(out, "PNG")
    assert upload(client, out.getvalue(), "logo.png").status_code == 302
    [stored] = uploads(app)
    with Image.open(Path(app.config["UPLOAD_DIR"]) / stored) as logo:
        assert logo.size == (120, 40) and logo.mode == "RGBA"
        assert logo.getpixel((5, 5))[3] == 0


def test_only_logo_file_names_are_served(app, client, db, admin, saved):
    assert client.get("/logo/..%2Fportal.sqlite3").status_code == 404
    assert client.get("/logo/secret_key").status_code == 404
    assert client.get("/logo/logo-0123456789abcdef.png").status_code == 404  # well-formed, absent


def test_removing_the_logo_clears_it_from_every_page(app, client, db, admin, saved):
    assert upload(client, png(), "logo.png").status_code == 302
    assert "/logo/logo-" in client.get("/staff/").get_data(as_text=True)
    assert client.post("/staff/settings", data={**GOOD, "remove_logo": "y"}).status_code == 302
    db.expire_all()
    assert db.scalars(select(CompanySettings)).one().logo_file == ""
    assert "<img" not in client.get("/staff/").get_data(as_text=True).split("</header>")[0]


# -- brand colour: the contrast guard -----------------------------------------------------------


def test_a_colour_too_light_for_links_on_white_is_refused_with_a_darker_shade_offered(
    client, db, admin, saved
):
    response = client.post("/staff/settings", data={**GOOD, "brand_color": "#f5c518"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    offered = re.search(r"Try (#[0-9a-f]{6}), a darker shade", page).group(1)
    assert brand.contrast("#f5c518", "#ffffff") < 4.5
    # The shade passes on white and on the page's grey, is darker, and keeps the hue.
    assert brand.contrast(offered, "#ffffff") >= 4.5 and brand.contrast(offered, "#f5f7f9") >= 4.5
    assert brand.luminance(offered) < brand.luminance("#f5c518")
    assert _hue(offered) == pytest.approx(_hue("#f5c518"), abs=0.01)
    # Both swatches are drawn, and nothing was saved.
    assert 'id="swatch-entered"' in page and 'fill="#f5c518"' in page
    assert 'id="swatch-shade"' in page and f'fill="{offered}"' in page
    db.expire_all()
    assert db.scalars(select(CompanySettings)).one().brand_color == "#123456"

    # The offered shade is accepted as it is.
    assert client.post("/staff/settings", data={**GOOD, "brand_color": offered}).status_code == 302
    db.expire_all()
    assert db.scalars(select(CompanySettings)).one().brand_color == offered


def _hue(colour: str) -> float:
    import colorsys

    return colorsys.rgb_to_hls(*(int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)))[0]


@pytest.mark.parametrize("colour", ["#ffffff", "#777777", "#ff0000", "#00ff00", "#F5C518"])
def test_every_light_colour_is_refused_and_its_shade_passes(client, db, admin, saved, colour):
    response = client.post("/staff/settings", data={**GOOD, "brand_color": colour})
    assert response.status_code == 400
    offered = re.search(r"Try (#[0-9a-f]{6})", response.get_data(as_text=True)).group(1)
    assert brand.readable(offered)


def test_preview_shows_the_colour_without_saving_it(client, db, admin, saved):
    response = client.post("/staff/settings", data={**GOOD, "brand_color": "#1e6b34", "preview": "1"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'fill="#1e6b34"' in page
    assert f"contrast {brand.contrast_on_page('#1e6b34'):.1f}:1" in page
    db.expire_all()
    assert db.scalars(select(CompanySettings)).one().brand_color == "#123456"


def test_a_light_colour_saved_before_the_guard_is_drawn_in_its_readable_shade(client, db, saved):
    saved.brand_color = "#f5c518"
    db.commit()
    css = client.get("/brand.css").get_data(as_text=True)
    colour = re.search(r"--brand:(#[0-9a-f]{6})", css).group(1)
    assert colour == brand.darker_shade("#f5c518") and brand.readable(colour)
    assert "--brand-ink:#ffffff" in css


# -- time zone ---------------------------------------------------------------------------------


def test_the_time_zone_is_chosen_from_iana_zones_and_checked(client, db, admin, saved):
    page = client.get("/staff/settings").get_data(as_text=True)
    assert '<option selected value="America/Phoenix">' in page
    assert 'value="Europe/Berlin"' in page and 'value="UTC"' in page
    for bad in ("Mars/Olympus_Mons", "../../etc/passwd", "EST5EDT", ""):
        response = client.post("/staff/settings", data={**GOOD, "timezone": bad})
        assert response.status_code == 400, bad
        assert "Choose a time zone from the list" in response.get_data(as_text=True)
    db.expire_all()
    assert db.scalars(select(CompanySettings)).one().timezone == "America/Phoenix"
    assert client.post("/staff/settings", data={**GOOD, "timezone": "Europe/Berlin"}).status_code == 302
    db.expire_all()
    assert db.scalars(select(CompanySettings)).one().timezone == "Europe/Berlin"


def test_service_record_times_are_shown_in_the_company_zone(client, db, admin, saved, make_account):
    account = make_account()
    entry = record.entries_for(db, account.id)[0]
    stored = entry.created_at.astimezone(timezone.utc)
    db.commit()
    page = client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    phoenix = stored.astimezone(_zone("America/Phoenix")).strftime("%Y-%m-%d %H:%M MST")
    assert phoenix in page and "UTC</time>" not in page

    assert client.post("/staff/settings", data={**GOOD, "timezone": "Asia/Tokyo"}).status_code == 302
    page = client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    assert stored.astimezone(_zone("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M JST") in page


def test_the_local_filter_moves_utc_across_a_date_line(app, db, saved):
    from portal.company import local_time

    saved.timezone = "America/Phoenix"
    db.commit()
    with app.test_request_context():
        # 03:30 UTC on the 5th is still the evening of the 4th in Phoenix.
        assert local_time(datetime(2026, 12, 5, 3, 30, tzinfo=timezone.utc)) == "2026-12-04 20:30 MST"
        assert local_time(datetime(2026, 12, 5, 3, 30), "%Y-%m-%d") == "2026-12-04"  # naive = UTC
        assert local_time(None) == ""


def _zone(name: str):  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


# -- emails: sending name and Reply-To ---------------------------------------------------------


def test_emails_come_from_the_company_name_on_the_portal_address_with_its_reply_to(
    app, client, db, admin, saved, make_account
):
    app.config["MAIL_FROM"] = "Handoff Portal <portal@mail.example>"
    assert (
        client.post(
            "/staff/settings",
            data={
                **GOOD,
                "email": "hello@bluelagoon.example",
                "sender_name": "Blue Lagoon Service Team",
                "reply_to": "office@bluelagoon.example",
            },
        ).status_code
        == 302
    )
    account = make_account()
    send_welcome(db, account, "system")
    db.commit()
    report = deliver_pending(db)
    assert report.count("sent") == 1

    [path] = Path(app.config["MAIL_OUTBOX_DIR"]).glob("*.eml")
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["From"] == "Blue Lagoon Service Team <portal@mail.example>"
    assert message["Reply-To"] == "office@bluelagoon.example"
    assert message["To"] == account.customer.email


def test_without_a_sending_name_or_reply_to_the_company_name_and_email_are_used(
    app, client, db, admin, saved, make_account
):
    assert (
        client.post(
            "/staff/settings", data={**GOOD, "name": "Coral Reef Pools, Inc.", "email": "hello@coral.example"}
        ).status_code
        == 302
    )
    send_welcome(db, make_account(), "system")
    db.commit()
    deliver_pending(db)
    [path] = Path(app.config["MAIL_OUTBOX_DIR"]).glob("*.eml")
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["From"].addresses[0].display_name == "Coral Reef Pools, Inc."
    assert message["From"].addresses[0].addr_spec == "no-reply@localhost"
    assert message["Reply-To"] == "hello@coral.example"


def test_a_sending_name_with_a_line_break_is_refused(client, db, admin, saved):
    response = client.post("/staff/settings", data={**GOOD, "sender_name": "Blue\r\nBcc: x@example.com"})
    assert response.status_code == 400 and "must be one line" in response.get_data(as_text=True)
    db.expire_all()
    assert db.scalars(select(CompanySettings)).one().sender_name == ""
