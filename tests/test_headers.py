"""Security headers on the pages people actually use — a customer's step in the welcome portal,
a signed-in staff page, error pages (404, 413, 429, 503) — and the cookies' flags.

(tests/test_app.py checks the front page, the sign-in page and a 404 the same way.)
"""

from __future__ import annotations

from http.cookies import SimpleCookie

import pytest

from tests.test_faults import database_away
from tests.test_welcome import invited, open_link  # noqa: F401  (a fixture)

HTTPS = "https://localhost"


def assert_security_headers(response, https: bool = False) -> None:  # type: ignore[no-untyped-def]
    headers = response.headers
    csp = headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] in {"no-referrer", "same-origin"}
    if https:
        hsts = headers["Strict-Transport-Security"]
        assert hsts.startswith("max-age=") and int(hsts.split("=")[1].split(";")[0]) >= 31536000
    else:
        assert "Strict-Transport-Security" not in headers


def cookies(response) -> dict[str, dict[str, str | bool]]:  # type: ignore[no-untyped-def]
    """Each Set-Cookie by name, with its attributes (flags as True)."""
    found: dict[str, dict[str, str | bool]] = {}
    for header in response.headers.getlist("Set-Cookie"):
        name = header.split("=", 1)[0]
        attributes = {
            part.split("=", 1)[0].strip().lower(): (part.split("=", 1)[1] if "=" in part else True)
            for part in header.split(";")[1:]
        }
        found[name] = attributes
    assert all(SimpleCookie(h) for h in response.headers.getlist("Set-Cookie"))
    return found


@pytest.mark.parametrize("https", [False, True])
def test_a_customer_step_page_carries_the_headers(client, invited, https):
    _account, path = invited
    base = HTTPS if https else "http://localhost"
    client.get(path, base_url=base)
    response = client.get("/welcome/step/welcome", base_url=base)
    assert response.status_code == 200
    assert_security_headers(response, https)
    assert response.headers["Cache-Control"] == "no-store"  # a customer's details: never cached


@pytest.mark.parametrize("https", [False, True])
def test_a_signed_in_staff_page_carries_the_headers(client, staff, make_staff, https):
    staff.login(make_staff("office"))
    response = client.get("/staff/differences", base_url=HTTPS if https else "http://localhost")
    assert response.status_code == 200
    assert_security_headers(response, https)
    assert response.headers["Cache-Control"] == "no-store"


def test_error_pages_carry_the_headers(app, client, invited, tmp_path):
    _account, path = invited
    open_link(client, path)
    not_found = client.get("/welcome/no-such-page", base_url=HTTPS)
    assert not_found.status_code == 404
    assert_security_headers(not_found, https=True)

    app.config["MAX_CONTENT_LENGTH"] = 100
    too_big = client.post("/welcome/step/welcome", data={"x": "y" * 500})
    assert too_big.status_code == 413
    assert_security_headers(too_big)
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024

    app.config["LOGIN_LIMIT_PER_CLIENT"] = "1 per minute"
    client.post("/staff/login", data={"email": "a@example.com", "password": "x"})
    limited = client.post("/staff/login", data={"email": "b@example.com", "password": "x"})
    assert limited.status_code == 429
    assert_security_headers(limited)

    with database_away(app, tmp_path):
        unavailable = client.get("/welcome/step/welcome", base_url=HTTPS)
    assert unavailable.status_code == 503
    assert_security_headers(unavailable, https=True)


def test_customer_session_cookie_is_secure_httponly_and_lax_over_https(settings, app, invited):
    app.config.update(SESSION_COOKIE_SECURE=True)  # as in production (PORTAL_ENV=production)
    _account, path = invited
    response = app.test_client().get(path, base_url=HTTPS)
    assert response.status_code == 302
    session = cookies(response)["session"]
    assert session["secure"] is True and session["httponly"] is True
    assert str(session["samesite"]).lower() == "lax"


def test_staff_session_and_remember_cookies_are_secure_httponly_and_lax(app, make_staff, db):
    from tests.conftest import PASSWORD, form_fields

    app.config.update(SESSION_COOKIE_SECURE=True, REMEMBER_COOKIE_SECURE=True)
    user = make_staff("office")
    client = app.test_client()
    page = client.get("/staff/login", base_url=HTTPS).get_data(as_text=True)
    response = client.post(
        "/staff/login",
        base_url=HTTPS,
        data={**form_fields(page), "email": user.email, "password": PASSWORD, "remember": "y"},
    )
    assert response.status_code == 302
    found = cookies(response)
    assert {"session", "remember_token"} <= set(found)
    for name in ("session", "remember_token"):
        assert found[name]["secure"] is True and found[name]["httponly"] is True, name
        assert str(found[name]["samesite"]).lower() == "lax", name


def test_production_settings_make_cookies_secure(monkeypatch, tmp_path, database_url):
    from portal import create_app

    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "x" * 64)
    monkeypatch.setenv("RECORD_KEY", "r" * 64)
    monkeypatch.delenv("SESSION_COOKIE_SECURE", raising=False)
    app = create_app({"DATABASE_URL": database_url})
    assert app.config["SESSION_COOKIE_SECURE"] and app.config["REMEMBER_COOKIE_SECURE"]
    assert app.config["SESSION_COOKIE_HTTPONLY"] and app.config["REMEMBER_COOKIE_HTTPONLY"]
    assert app.config["SESSION_COOKIE_SAMESITE"] == app.config["REMEMBER_COOKIE_SAMESITE"] == "Lax"
    app.extensions["portal.engine"].dispose()
