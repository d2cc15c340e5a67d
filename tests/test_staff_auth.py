"""Staff sign-in: passwords, sessions, cookies, roles, CSRF and rate limits."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import select

from portal.auth import set_active
from portal.models import CompanySettings, StaffUser
from tests.conftest import PASSWORD, count_rows


def test_login_success_reaches_the_dashboard(client, staff, make_staff):
    user = make_staff("office")
    response = staff.login(user)
    assert response.status_code == 302
    assert response.headers["Location"] == "/staff/"
    page = client.get("/staff/").get_data(as_text=True)
    assert "Onboarding" in page and user.display_name in page


def test_wrong_password_is_refused_with_a_clear_message(client, staff, make_staff):
    user = make_staff("office")
    response = staff.login(user, password="not-the-password")
    assert response.status_code == 400
    assert "do not match an active account" in response.get_data(as_text=True)
    assert client.get("/staff/").status_code == 302  # still signed out


def test_unknown_email_gets_the_same_answer(client, staff, make_staff):
    user = make_staff("office")
    wrong_password = staff.login(user, password="not-the-password").get_data(as_text=True)
    unknown = client.post(
        "/staff/login", data={"email": "nobody@example.com", "password": PASSWORD}
    ).get_data(as_text=True)
    assert "do not match an active account" in unknown
    assert wrong_password.count("field-errors") == unknown.count("field-errors")


def test_inactive_user_cannot_sign_in(client, staff, make_staff, db):
    user = make_staff("office")
    set_active(user, False)
    db.commit()
    assert staff.login(user).status_code == 400
    assert client.get("/staff/").status_code == 302


def test_deactivated_user_is_signed_out_on_the_next_request(client, staff, make_staff, db):
    user = make_staff("office")
    staff.login(user, remember="y")
    assert client.get("/staff/").status_code == 200
    set_active(db.get(StaffUser, user.id), False)
    db.commit()
    response = client.get("/staff/")
    assert response.status_code == 302 and "/staff/login" in response.headers["Location"]


def test_staff_pages_need_a_login(client):
    response = client.get("/staff/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/staff/login?next=")


def test_role_refused_gets_403(client, staff, make_staff, db):
    staff.login(make_staff("technician"))
    response = client.post(
        "/staff/settings", data={"name": "Hacked", "brand_color": "#000000", "currency": "USD"}
    )
    assert response.status_code == 403
    assert count_rows(db, CompanySettings) == 0


def test_admin_saves_company_settings_and_bad_input_changes_nothing(client, staff, make_staff, db):
    staff.login(make_staff("admin"))
    bad = client.post(
        "/staff/settings",
        data={"name": "", "brand_color": "red", "currency": "XXX1", "timezone": "Mars/Olympus_Mons"},
    )
    assert bad.status_code == 400
    page = bad.get_data(as_text=True)
    assert "Enter the company name." in page and "Use a colour like #0b5cab" in page
    assert "Choose a time zone from the list" in page
    assert count_rows(db, CompanySettings) == 0

    good = client.post(
        "/staff/settings",
        data={
            "name": "Blue Lagoon",
            "brand_color": "#123456",
            "currency": "usd",
            "readiness_checklist": "Dog inside\n\nGate unlocked\n",
        },
    )
    assert good.status_code == 302
    company = db.scalars(select(CompanySettings)).one()
    assert (company.name, company.currency, company.readiness_checklist) == (
        "Blue Lagoon",
        "USD",
        ["Dog inside", "Gate unlocked"],
    )


def test_saved_company_settings_show_at_once_here_and_within_the_cache_time_elsewhere(
    app, client, staff, make_staff, db, monkeypatch
):
    staff.login(make_staff("admin"))
    assert (
        client.post(
            "/staff/settings", data={"name": "Blue Lagoon", "brand_color": "#123456", "currency": "USD"}
        ).status_code
        == 302
    )
    assert "<title>Dashboard · Blue Lagoon</title>" in client.get("/staff/").get_data(as_text=True)
    # Another process saves (a plain UPDATE this process's ORM never sees).
    with app.extensions["portal.engine"].begin() as conn:
        conn.execute(CompanySettings.__table__.update().values(name="Coral Reef Pools"))
    page = client.get("/staff/").get_data(as_text=True)
    assert "Blue Lagoon" in page and "Coral Reef Pools" not in page
    later = time.monotonic() + app.config["COMPANY_CACHE_SECONDS"] + 1
    monkeypatch.setattr("portal.company.time.monotonic", lambda: later)
    page = client.get("/staff/").get_data(as_text=True)
    assert "Coral Reef Pools" in page and "Blue Lagoon" not in page


def test_every_staff_view_checks_roles(app):
    """A new staff view without the role decorator fails here."""
    open_views = {"staff.login", "staff.forgot_password", "staff.password_link", "staff.set_password"}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("staff.") and rule.endpoint not in open_views:
            view = app.view_functions[rule.endpoint]
            assert getattr(view, "allowed_roles", None), f"{rule.endpoint} has no role check"


@pytest.mark.csrf
def test_login_without_csrf_token_is_400_and_signs_nobody_in(client, make_staff):
    user = make_staff("office")
    response = client.post("/staff/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 400
    assert "expired" in response.get_data(as_text=True)
    assert client.get("/staff/").status_code == 302


@pytest.mark.csrf
def test_login_with_csrf_token_works(client, make_staff):
    import re

    user = make_staff("office")
    page = client.get("/staff/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = client.post(
        "/staff/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302


def test_login_attempts_are_limited_per_account(app, client, make_staff):
    app.config["LOGIN_LIMIT_PER_ACCOUNT"] = "3 per 15 minutes"
    user = make_staff("office")
    for _ in range(3):
        assert client.post("/staff/login", data={"email": user.email, "password": "wrong"}).status_code == 400
    blocked = client.post("/staff/login", data={"email": user.email, "password": PASSWORD})
    assert blocked.status_code == 429
    assert "Too many attempts" in blocked.get_data(as_text=True)
    other = make_staff("office")
    assert client.post("/staff/login", data={"email": other.email, "password": PASSWORD}).status_code == 302


def test_login_attempts_are_limited_per_client_address(app, client, make_staff):
    app.config["LOGIN_LIMIT_PER_CLIENT"] = "4 per 15 minutes"
    for n in range(4):
        client.post("/staff/login", data={"email": f"guess{n}@example.com", "password": "x"})
    user = make_staff("office")
    assert client.post("/staff/login", data={"email": user.email, "password": PASSWORD}).status_code == 429
    elsewhere = app.test_client()
    response = elsewhere.post(
        "/staff/login",
        data={"email": user.email, "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "10.9.9.9"},
    )
    assert response.status_code == 302


@pytest.mark.parametrize(
    "target, expected",
    [
        ("/staff/settings", "/staff/settings"),
        ("https://evil.example/phish", "/staff/"),
        ("//evil.example/phish", "/staff/"),
        ("/\\evil.example", "/staff/"),
        ("javascript:alert(1)", "/staff/"),
    ],
)
def test_next_is_followed_only_to_paths_on_this_site(staff, make_staff, target, expected):
    response = staff.login(make_staff("admin"), next=target)
    assert response.headers["Location"] == expected


def test_session_and_remember_cookies_are_locked_down(app, staff, make_staff):
    app.config.update(SESSION_COOKIE_SECURE=True, REMEMBER_COOKIE_SECURE=True)
    response = staff.login(make_staff("office"), remember="y")
    cookies = {c.split("=", 1)[0]: c for c in response.headers.getlist("Set-Cookie")}
    for name in ("session", "remember_token"):
        flags = cookies[name].lower()
        assert "httponly" in flags and "samesite=lax" in flags and "secure" in flags, cookies[name]


def test_login_clears_what_was_in_the_session_before(app, client, staff, make_staff):
    with client.session_transaction() as session:
        session["planted"] = "by-an-attacker"
    staff.login(make_staff("office"))
    with client.session_transaction() as session:
        assert "planted" not in session
        assert "_user_id" in session


def test_changed_user_agent_drops_the_staff_session(client, staff, make_staff):
    staff.login(make_staff("office"))
    assert client.get("/staff/", headers={"User-Agent": "browser-a"}).status_code in (200, 302)
    client.get("/staff/")
    response = client.get("/staff/", headers={"User-Agent": "a-different-browser"})
    assert response.status_code == 302


def test_passwords_are_hashed_and_never_logged(runner, db, caplog, client):
    caplog.set_level(logging.DEBUG)
    secret = "a-very-secret-password-123"
    result = runner.invoke(args=["create-staff", "new@example.com", "--role", "sales", "--password", secret])
    assert result.exit_code == 0, result.output
    user = db.scalars(select(StaffUser).where(StaffUser.email == "new@example.com")).one()
    assert user.password_hash.startswith(("pbkdf2:", "scrypt:")) and secret not in user.password_hash
    client.post("/staff/login", data={"email": "new@example.com", "password": secret})
    client.post("/staff/login", data={"email": "new@example.com", "password": secret + "x"})
    assert secret not in caplog.text and secret not in result.output


def test_create_staff_refuses_bad_input_and_changes_nothing(runner, db):
    bad_role = runner.invoke(
        args=["create-staff", "x@example.com", "--role", "boss", "--password", "long-enough-pw"]
    )
    short = runner.invoke(args=["create-staff", "x@example.com", "--role", "sales", "--password", "short"])
    assert bad_role.exit_code != 0 and short.exit_code != 0
    assert "at least 10 characters" in short.output
    assert count_rows(db, StaffUser) == 0
    runner.invoke(args=["create-staff", "x@example.com", "--role", "sales", "--password", "long-enough-pw"])
    again = runner.invoke(
        args=["create-staff", "X@example.com", "--role", "sales", "--password", "long-enough-pw"]
    )
    assert "already exists" in again.output and count_rows(db, StaffUser) == 1


def test_logout_ends_the_session(client, staff, make_staff):
    staff.login(make_staff("office"))
    assert staff.logout().status_code == 302
    assert client.get("/staff/").status_code == 302
