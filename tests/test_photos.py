"""Photos for the technician: customers add them during onboarding and from My service, staff from
the account page; each is checked by decoding, re-encoded (no EXIF, no GPS, nothing appended),
stored through portal/storage.py (local files here, S3 in test_photos_s3.py) and served only to
the account's customer and to staff the access policy lets read the account."""

from __future__ import annotations

import io
import re
from datetime import date
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from portal.models import Photo, RecordEntry
from tests.conftest import count_rows, sign_as_shown
from tests.test_welcome import invited, open_link  # noqa: F401  (fixtures and helpers)

PAYLOAD = b"<html><body><script>alert('polyglot')</script></body></html>PK\x03\x04zip-payload"


# -- pictures a phone might send -----------------------------------------------------------------


def jpeg_with_gps(size: tuple[int, int] = (3000, 2000), orientation: int = 6) -> bytes:
    """A camera JPEG: the maker and model, GPS coordinates and an orientation in its EXIF. Left
    half red, right half blue, so a rotation shows in the pixels."""
    image = Image.new("RGB", size, "red")
    image.paste(Image.new("RGB", (size[0] // 2, size[1]), "blue"), (size[0] // 2, 0))
    exif = Image.Exif()
    exif[0x010F] = "PhoneCo"  # Make
    exif[0x0110] = "Pool Cam 12"  # Model
    exif[0x0112] = orientation
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (33.0, 26.0, 52.0)
    gps[3] = "W"
    gps[4] = (112.0, 4.0, 26.0)
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, quality=80)
    return out.getvalue()


def png_bytes(size: tuple[int, int] = (800, 600)) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", size, (0, 128, 0, 128)).save(out, "PNG")
    return out.getvalue()


def stored_files(app) -> list[Path]:
    root = Path(app.config["UPLOAD_DIR"]) / "photos"
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


def photo_fields(html: str, prefix: str = "photo") -> dict[str, str]:
    return dict(
        re.findall(rf'<input[^>]*name="({prefix}-[^"]+)"[^>]*type="hidden"[^>]*value="([^"]*)"', html)
    )


def post_photo(client, page: str, data: bytes, caption: str = "Side gate, latch on the left", **kwargs):
    """Post a photo with the form on `page`, as the browser would (multipart). The body is
    encoded in memory: the test client would spool a large one to a file it never closes."""
    html = client.get(page).get_data(as_text=True)
    action = re.search(r'<form method="post" action="([^"]+)" enctype="multipart/form-data"', html)
    assert action is not None, "no photo form on " + page
    return post_multipart(
        client,
        action.group(1),
        {**photo_fields(html), "photo-caption": caption},
        data,
        kwargs.pop("filename", "IMG_0042.jpg"),
    )


def post_multipart(client, url: str, fields: dict[str, str], data: bytes, filename: str):
    upload = FileStorage(io.BytesIO(data), filename=filename, content_type="application/octet-stream")
    boundary, body = encode_multipart({**fields, "photo-photo": upload})
    return client.post(url, data=body, content_type=f"multipart/form-data; boundary={boundary}")


def photo_entries(db) -> list[RecordEntry]:
    return list(
        db.scalars(
            select(RecordEntry)
            .where(RecordEntry.event.in_(("photo_added", "photo_removed")))
            .order_by(RecordEntry.id)
        )
    )


# -- the customer ---------------------------------------------------------------------------------


def test_a_customer_adds_a_photo_in_the_access_step_and_it_is_stored_without_exif_or_gps(
    app, client, db, invited
):
    account, path = invited
    open_link(client, path)
    page = client.get("/welcome/step/access").get_data(as_text=True)
    assert 'type="file"' in page and 'accept="image/*"' in page and "capture" in page
    assert 'enctype="multipart/form-data"' in page

    original = jpeg_with_gps()
    assert b"PhoneCo" in original and Image.open(io.BytesIO(original)).getexif().get_ifd(0x8825)
    response = post_photo(client, "/welcome/step/access", original)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/welcome/step/access#photos")

    photo = db.scalars(select(Photo)).one()
    assert (photo.account_id, photo.caption, photo.added_by) == (
        account.id,
        "Side gate, latch on the left",
        "customer",
    )
    files = stored_files(app)
    assert len(files) == 2  # the photo and its thumbnail
    full = (Path(app.config["UPLOAD_DIR"]) / photo.storage_key).read_bytes()
    thumb = (Path(app.config["UPLOAD_DIR"]) / photo.thumb_key).read_bytes()
    for stored in (full, thumb):
        assert b"PhoneCo" not in stored and b"Pool Cam" not in stored and b"Exif" not in stored
        image = Image.open(io.BytesIO(stored))
        assert image.format == "JPEG"
        assert not image.getexif() and not image.getexif().get_ifd(0x8825)
    # Upright (orientation 6: turned a quarter clockwise), then at most 2000 px on its long side.
    image = Image.open(io.BytesIO(full)).convert("RGB")
    assert image.size == (1333, 2000) == (photo.width, photo.height)
    top, bottom = image.getpixel((666, 50)), image.getpixel((666, 1950))
    assert top[0] > 200 and top[2] < 60, top  # the left (red) half is on top now
    assert bottom[2] > 200 and bottom[0] < 60, bottom
    assert max(Image.open(io.BytesIO(thumb)).size) == 400

    # The record says so, by id and hash, without the image.
    (entry,) = photo_entries(db)
    assert (entry.event, entry.actor, entry.confirmed_value) == ("photo_added", "customer", photo.caption)
    assert entry.details["photo_id"] == photo.id and len(entry.details["sha256"]) == 64
    assert len(str(entry.details)) < 300

    # The step shows its thumbnail, which opens; the answers form is still there.
    page = client.get("/welcome/step/access").get_data(as_text=True)
    assert (
        f'src="/welcome/photos/{photo.id}/thumb"' in page
        and f'href="/welcome/photos/{photo.id}/full"' in page
    )
    assert re.search(r'name="i\d+_answer"', page)
    served = client.get(f"/welcome/photos/{photo.id}/full")
    assert served.status_code == 200 and served.data == full
    assert served.headers["Content-Type"] == "image/jpeg"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert served.headers["Cache-Control"].startswith("private")
    assert client.get(f"/welcome/photos/{photo.id}/thumb").data == thumb
    assert client.get(f"/welcome/photos/{photo.id}/original").status_code == 404


def test_png_webp_and_heic_photos_are_all_stored_as_fresh_jpegs(app, client, db, invited):
    import pillow_heif

    open_link(client, invited[1])
    webp, heic = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (640, 480), "navy").save(webp, "WEBP")
    pillow_heif.from_pillow(Image.new("RGB", (640, 480), "teal")).save(heic, format="HEIF")
    for data, name in (
        (png_bytes(), "pad.png"),
        (webp.getvalue(), "pool.webp"),
        (heic.getvalue(), "gate.heic"),
    ):
        response = post_photo(client, "/welcome/step/access", data, caption=name, filename=name)
        assert response.status_code == 302, response.get_data(as_text=True)
    stored = db.scalars(select(Photo).order_by(Photo.id)).all()
    assert [photo.caption for photo in stored] == ["pad.png", "pool.webp", "gate.heic"]
    for photo in stored:
        image = Image.open(io.BytesIO((Path(app.config["UPLOAD_DIR"]) / photo.storage_key).read_bytes()))
        assert image.format == "JPEG" and image.mode == "RGB"
    # The half-transparent PNG is laid on white, not black.
    assert (
        Image.open(
            io.BytesIO((Path(app.config["UPLOAD_DIR"]) / stored[0].storage_key).read_bytes())
        ).getpixel((5, 5))[1]
        > 150
    )


def test_a_polyglot_is_stored_re_encoded_without_its_payload(app, client, db, invited):
    open_link(client, invited[1])
    polyglot = jpeg_with_gps((600, 400), orientation=1) + PAYLOAD
    response = post_photo(client, "/welcome/step/access", polyglot)
    assert response.status_code == 302
    photo = db.scalars(select(Photo)).one()
    for key in (photo.storage_key, photo.thumb_key):
        stored = (Path(app.config["UPLOAD_DIR"]) / key).read_bytes()
        assert b"<script" not in stored and b"PK\x03\x04" not in stored and b"zip-payload" not in stored
        assert stored.startswith(b"\xff\xd8") and stored.endswith(b"\xff\xd9")
        assert stored != polyglot[: len(stored)]  # re-encoded, not cut short
    served = client.get(f"/welcome/photos/{photo.id}/full")
    assert b"<script" not in served.data and served.headers["Content-Type"] == "image/jpeg"


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"


@pytest.mark.parametrize(
    "data, filename, message",
    [
        (b"this is a text file, not a picture", "gate.jpg", "not a photo we can read"),
        (b"<html><script>alert(1)</script></html>", "gate.jpg", "not a photo we can read"),
        (SVG, "gate.svg", "SVG files are not accepted"),
        (GIF, "gate.gif", "not a photo we can read"),
        (jpeg_with_gps((200, 200), 1)[:-400], "cut.jpg", "not a photo we can read"),
        (b"", "", "Choose a photo to add"),
        (b"\xff\xd8" + b"\0" * (10 * 1024 * 1024), "huge.jpg", "a photo can be at most 10 MB"),
    ],
    ids=["text", "html", "svg", "gif", "truncated", "no-file", "over-10-mb"],
)
def test_refused_uploads_store_nothing_and_keep_the_caption(
    app, client, db, invited, data, filename, message
):
    open_link(client, invited[1])
    entries = count_rows(db, RecordEntry)
    response = post_photo(
        client, "/welcome/step/access", data, caption="Gate from the street", filename=filename
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in page
    assert 'value="Gate from the street"' in page  # nothing typed is lost
    assert re.search(r'name="i\d+_answer"', page)  # the step itself is still there to answer
    assert count_rows(db, Photo) == 0 and count_rows(db, RecordEntry) == entries
    assert stored_files(app) == []


def test_a_body_over_the_upload_limit_gets_the_413_page_and_stores_nothing(app, client, db, invited):
    open_link(client, invited[1])
    response = post_photo(client, "/welcome/step/access", b"\xff\xd8" + b"\0" * (11 * 1024 * 1024))
    assert response.status_code == 413
    assert "larger than we accept" in response.get_data(as_text=True)
    assert count_rows(db, Photo) == 0 and stored_files(app) == []


def test_a_caption_too_long_or_with_a_line_break_is_refused(app, client, db, invited):
    open_link(client, invited[1])
    for caption, message in (
        ("x" * 201, "under 200 characters"),
        ("Gate\r\ncode", "line break"),
        ("", "Say what"),
    ):
        response = post_photo(client, "/welcome/step/access", png_bytes(), caption=caption)
        assert response.status_code == 400
        assert message in response.get_data(as_text=True), caption
    assert count_rows(db, Photo) == 0 and stored_files(app) == []


def test_without_a_session_nothing_is_stored_and_no_photo_is_served(app, client, db, invited):
    open_link(client, invited[1])
    post_photo(client, "/welcome/step/access", png_bytes())
    photo = db.scalars(select(Photo)).one()
    client.post("/welcome/sign-out")
    response = client.post(
        "/welcome/photos",
        data={
            "photo-caption": "x",
            "photo-form_id": "a" * 24,
            "photo-photo": (io.BytesIO(png_bytes()), "a.png"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 302 and response.headers["Location"].endswith("/welcome/session-ended")
    assert count_rows(db, Photo) == 1 and len(stored_files(app)) == 2
    served = client.get(f"/welcome/photos/{photo.id}/full")
    assert served.status_code == 302 and served.headers["Content-Type"] != "image/jpeg"


def test_another_customers_photo_id_answers_404_and_an_upload_lands_on_ones_own_account(
    app, client, db, make_account
):
    from portal.onboarding import send_welcome

    first, second = make_account(), make_account()
    paths = {}
    for account in (first, second):
        paths[account.id] = (
            "/welcome/t/" + send_welcome(db, account, "system").url.rsplit("/welcome/t/", 1)[1]
        )
    db.commit()
    open_link(client, paths[first.id])
    post_photo(client, "/welcome/step/access", png_bytes(), caption="First's gate")
    theirs = db.scalars(select(Photo)).one()

    open_link(client, paths[second.id])
    for size in ("full", "thumb"):
        assert client.get(f"/welcome/photos/{theirs.id}/{size}").status_code == 404
    assert client.get("/welcome/photos/99999/full").status_code == 404
    assert "First's gate" not in client.get("/welcome/step/access").get_data(as_text=True)
    post_photo(client, "/welcome/step/access", png_bytes(), caption="Second's pad")
    mine = db.scalars(select(Photo).where(Photo.id != theirs.id)).one()
    assert mine.account_id == second.id
    assert client.get(f"/welcome/photos/{mine.id}/thumb").status_code == 200


@pytest.mark.csrf
def test_a_photo_without_the_csrf_token_is_refused_and_nothing_is_stored(app, client, db, invited):
    open_link(client, invited[1])
    html = client.get("/welcome/step/access").get_data(as_text=True)
    fields = {k: v for k, v in photo_fields(html).items() if not k.endswith("csrf_token")}
    response = client.post(
        "/welcome/photos",
        data={**fields, "photo-caption": "Gate", "photo-photo": (io.BytesIO(png_bytes()), "a.png")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert count_rows(db, Photo) == 0 and stored_files(app) == []
    assert post_photo(client, "/welcome/step/access", png_bytes()).status_code == 302
    assert count_rows(db, Photo) == 1


def test_the_same_photo_form_posted_twice_adds_one_photo(app, client, db, invited):
    open_link(client, invited[1])
    html = client.get("/welcome/step/access").get_data(as_text=True)
    fields = {**photo_fields(html), "photo-caption": "Gate"}
    for _ in range(2):
        response = client.post(
            "/welcome/photos",
            data={**fields, "photo-photo": (io.BytesIO(png_bytes()), "a.png")},
            content_type="multipart/form-data",
        )
        assert response.status_code == 302
    assert count_rows(db, Photo) == 1 and len(stored_files(app)) == 2


def test_after_signing_the_customer_adds_photos_from_my_service(app, client, db, invited):
    account, path = invited
    open_link(client, path)
    sign_as_shown(db, account, "Dana Reyes")
    db.commit()
    page = client.get("/welcome/service").get_data(as_text=True)
    assert "Photos for your technician" in page
    response = post_photo(client, "/welcome/service", png_bytes(), caption="Equipment pad")
    assert response.status_code == 302 and response.headers["Location"].endswith("/welcome/service#photos")
    photo = db.scalars(select(Photo)).one()
    assert f"/welcome/photos/{photo.id}/thumb" in client.get("/welcome/service").get_data(as_text=True)
    refused = post_photo(client, "/welcome/service", b"not a picture", caption="Pool")
    assert refused.status_code == 400 and "not a photo we can read" in refused.get_data(as_text=True)
    assert 'value="Pool"' in refused.get_data(as_text=True)
    assert count_rows(db, Photo) == 1


# -- staff and the technician ---------------------------------------------------------------------


def test_staff_add_a_photo_the_technician_sees_it_on_the_brief_and_day_list_and_office_removes_it(
    app, client, db, staff, make_staff, make_account
):
    seller = make_staff("sales")
    account = make_account(salesperson=seller)
    staff.login(seller)
    response = post_photo(
        client, f"/staff/accounts/{account.id}", jpeg_with_gps((1200, 900), 1), caption="Back gate"
    )
    assert response.status_code == 302
    photo = db.scalars(select(Photo)).one()
    assert (photo.added_by, photo.added_by_staff_id) == ("sales", seller.id)
    (entry,) = photo_entries(db)
    assert entry.actor == f"staff:{seller.id}"
    staff.logout()

    staff.login(make_staff("technician"))
    brief = client.get(f"/staff/accounts/{account.id}/brief").get_data(as_text=True)
    thumb = f"/staff/accounts/{account.id}/photos/{photo.id}/thumb"
    full = f"/staff/accounts/{account.id}/photos/{photo.id}/full"
    assert thumb in brief and full in brief and "Back gate" in brief
    day = client.get(f"/staff/day?date={account.first_visit.isoformat()}").get_data(as_text=True)
    assert thumb in day and "1 photo" in day
    served = client.get(full)
    assert served.status_code == 200 and served.headers["Content-Type"] == "image/jpeg"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert not Image.open(io.BytesIO(served.data)).getexif()
    # A technician reads photos; adding or removing one is not theirs to do.
    fields = {"photo-caption": "Gate", "photo-form_id": "t" * 24}
    assert (
        post_multipart(
            client, f"/staff/accounts/{account.id}/photos", fields, png_bytes(), "a.png"
        ).status_code
        == 403
    )
    assert count_rows(db, Photo) == 1
    staff.logout()

    staff.login(make_staff("office"))
    page = client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    fields = photo_fields(page, f"remove{photo.id}")
    refused = client.post(f"/staff/accounts/{account.id}/photos/{photo.id}/remove", data=fields)
    assert refused.status_code == 302 and db.get(Photo, photo.id).removed_at is None  # no reason given
    response = client.post(
        f"/staff/accounts/{account.id}/photos/{photo.id}/remove",
        data={**fields, f"remove{photo.id}-reason": "Not this house"},
    )
    assert response.status_code == 302
    db.expire_all()
    removed = db.get(Photo, photo.id)
    assert removed.removed_at is not None and removed.removed_reason == "Not this house"
    assert stored_files(app) == []
    assert [e.event for e in photo_entries(db)] == ["photo_added", "photo_removed"]
    assert photo_entries(db)[-1].note == "Not this house"
    assert client.get(full).status_code == 404
    assert thumb not in client.get(f"/staff/accounts/{account.id}/brief").get_data(as_text=True)
    assert "Photo removed: Back gate" in client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)


def test_staff_outside_the_accounts_scope_get_404_for_its_photos_and_cannot_add_one(
    app, client, db, staff, make_staff, make_account, invited
):
    account, path = invited
    open_link(client, path)
    post_photo(client, "/welcome/step/access", png_bytes())
    photo = db.scalars(select(Photo)).one()
    client.post("/welcome/sign-out")

    other_seller = make_staff("sales")
    staff.login(other_seller)
    for size in ("full", "thumb"):
        assert client.get(f"/staff/accounts/{account.id}/photos/{photo.id}/{size}").status_code == 404
    mine = make_account(salesperson=other_seller)
    # Their own account's URL with this photo's id: still not theirs.
    assert client.get(f"/staff/accounts/{mine.id}/photos/{photo.id}/full").status_code == 404
    response = client.post(
        f"/staff/accounts/{account.id}/photos",
        data={
            "photo-caption": "x",
            "photo-form_id": "b" * 24,
            "photo-photo": (io.BytesIO(png_bytes()), "a.png"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 404
    remove = client.post(
        f"/staff/accounts/{account.id}/photos/{photo.id}/remove",
        data={f"remove{photo.id}-form_id": "c" * 24, f"remove{photo.id}-reason": "gone"},
    )
    assert remove.status_code == 404
    assert count_rows(db, Photo) == 1 and db.get(Photo, photo.id).removed_at is None
    assert len(stored_files(app)) == 2
    staff.logout()
    # Signed out: the sign-in page, never the photo.
    served = client.get(f"/staff/accounts/{account.id}/photos/{photo.id}/full")
    assert served.status_code == 302 and "/staff/login" in served.headers["Location"]


def test_the_day_list_takes_the_same_queries_at_2_and_6_visits_with_photos(
    app, client, db, staff, make_staff, make_account
):
    from portal import photos
    from portal.storage import get_storage
    from tests.test_page_queries import _statements

    staff.login(make_staff("technician"))
    cleaned = photos.clean(png_bytes((300, 200)))
    counts = []
    for visits, day in ((2, date(2031, 3, 4)), (6, date(2031, 3, 5))):
        for n in range(visits):
            account = make_account(
                first_visit=day, customer_email=f"v{visits}-{n}@example.com", customer_name=f"Visit {n}"
            )
            photos.add(db, get_storage(), account, cleaned, f"Gate {n}")
            photos.add(db, get_storage(), account, cleaned, f"Pad {n}")
            db.commit()
        pages: list[str] = []
        counts.append(
            _statements(
                app,
                lambda day=day, pages=pages: pages.append(
                    client.get(f"/staff/day?date={day}").get_data(as_text=True)
                ),
            )
        )
        assert pages[0].count("2 photos") == visits
    assert counts[0] == counts[1]


def test_past_the_per_account_limit_a_photo_is_refused_and_nothing_is_stored(
    app, client, db, invited, monkeypatch
):
    from portal import photos

    monkeypatch.setattr(photos, "MAX_PER_ACCOUNT", 1)
    open_link(client, invited[1])
    assert post_photo(client, "/welcome/step/access", png_bytes()).status_code == 302
    entries = count_rows(db, RecordEntry)
    response = post_photo(client, "/welcome/step/access", png_bytes(), caption="One too many")
    assert response.status_code == 400
    assert "has 1 photos already" in response.get_data(as_text=True)
    assert 'value="One too many"' in response.get_data(as_text=True)
    assert count_rows(db, Photo) == 1 and count_rows(db, RecordEntry) == entries
    assert len(stored_files(app)) == 2
