"""Photos in S3-compatible object storage (`STORAGE_URL=s3://bucket/prefix`), against moto's
S3 server on a local port driven by the real boto3: stored under the prefix, private in the
bucket, handed out through the access-checked view as a short-lived presigned URL."""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from PIL import Image
from sqlalchemy import select

from portal.models import Photo
from tests.conftest import count_rows
from tests.test_photos import jpeg_with_gps, post_photo
from tests.test_welcome import invited, open_link  # noqa: F401  (fixtures and helpers)

BUCKET = "handoff-photos"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint, settings, monkeypatch):
    """A fresh bucket on the local S3 server, and the app's settings pointed at it."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    settings.update(STORAGE_URL=f"s3://{BUCKET}/portal/photos-test", STORAGE_ENDPOINT_URL=s3_endpoint)
    yield client
    for found in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=found["Key"])
    client.delete_bucket(Bucket=BUCKET)


def keys(client) -> list[str]:
    return sorted(found["Key"] for found in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def fetch(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read(), ""


def test_a_photo_goes_to_the_bucket_privately_and_is_served_by_a_presigned_redirect(
    s3, s3_endpoint, app, client, db, invited
):
    account, path = invited
    open_link(client, path)
    response = post_photo(client, "/welcome/step/access", jpeg_with_gps((900, 600), 1))
    assert response.status_code == 302
    photo = db.scalars(select(Photo)).one()
    assert keys(s3) == sorted(f"portal/photos-test/{key}" for key in (photo.storage_key, photo.thumb_key))
    stored = s3.get_object(Bucket=BUCKET, Key=f"portal/photos-test/{photo.storage_key}")
    body = stored["Body"].read()
    assert stored["ContentType"] == "image/jpeg"
    assert b"PhoneCo" not in body and not Image.open(io.BytesIO(body)).getexif()

    # The page lets the browser follow the redirect to the store for images, and nothing more.
    policy = client.get("/welcome/step/access").headers["Content-Security-Policy"]
    assert f"img-src 'self' data: {s3_endpoint};" in policy
    assert "default-src 'self';" in policy and policy.count(s3_endpoint) == 1

    served = client.get(f"/welcome/photos/{photo.id}/full")
    assert served.status_code == 302
    assert "no-store" in served.headers["Cache-Control"]
    url = served.headers["Location"]
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == s3_endpoint
    query = parse_qs(parts.query)
    assert int(query["X-Amz-Expires"][0]) == app.config["STORAGE_URL_SECONDS"] == 300
    status, fetched, content_type = fetch(url)
    assert (status, fetched, content_type) == (200, body, "image/jpeg")

    # The same object without the signature: refused by the store.
    status, fetched, _ = fetch(f"{s3_endpoint}/{BUCKET}/portal/photos-test/{photo.storage_key}")
    assert status == 403 and fetched != body
    # No public grant on the object.
    grants = s3.get_object_acl(Bucket=BUCKET, Key=f"portal/photos-test/{photo.storage_key}")["Grants"]
    assert all("AllUsers" not in str(grant.get("Grantee", {})) for grant in grants)


def test_on_s3_another_customers_photo_is_404_with_no_presigned_url(s3, app, client, db, make_account):
    from portal.onboarding import send_welcome

    first, second = make_account(), make_account()
    paths = [
        "/welcome/t/" + send_welcome(db, account, "system").url.rsplit("/welcome/t/", 1)[1]
        for account in (first, second)
    ]
    db.commit()
    open_link(client, paths[0])
    post_photo(client, "/welcome/step/access", jpeg_with_gps((300, 200), 1))
    photo = db.scalars(select(Photo)).one()
    open_link(client, paths[1])
    response = client.get(f"/welcome/photos/{photo.id}/full")
    assert response.status_code == 404 and "Location" not in response.headers


def test_on_s3_a_refused_upload_puts_nothing_in_the_bucket(s3, app, client, db, invited):
    open_link(client, invited[1])
    response = post_photo(client, "/welcome/step/access", b"<html>not a photo</html>")
    assert response.status_code == 400
    assert keys(s3) == [] and count_rows(db, Photo) == 0


def test_on_s3_removing_a_photo_deletes_its_objects(s3, app, client, db, staff, make_staff, invited):
    account, path = invited
    open_link(client, path)
    post_photo(client, "/welcome/step/access", jpeg_with_gps((300, 200), 1))
    photo = db.scalars(select(Photo)).one()
    assert len(keys(s3)) == 2
    staff.login(make_staff("office"))
    prefix = f"remove{photo.id}"
    page = client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    from tests.test_photos import photo_fields

    response = client.post(
        f"/staff/accounts/{account.id}/photos/{photo.id}/remove",
        data={**photo_fields(page, prefix), f"{prefix}-reason": "Wrong house"},
    )
    assert response.status_code == 302
    assert keys(s3) == []
