"""Staff sessions end for real: sign-out deletes the remember-me cookie and makes every copy of
it useless; the per-account sign-in limit counts failures only and a success resets it."""

from __future__ import annotations

from http.cookies import SimpleCookie

from portal.auth import set_password
from portal.models import StaffUser
from tests.conftest import PASSWORD


def _set_cookies(response) -> dict[str, SimpleCookie]:  # type: ignore[no-untyped-def]
    cookies = {}
    for header in response.headers.getlist("Set-Cookie"):
        parsed = SimpleCookie()
        parsed.load(header)
        cookies.update({name: parsed for name in parsed})
    return cookies


def _remember_cookie(response) -> str:  # type: ignore[no-untyped-def]
    return _set_cookies(response)["remember_token"]["remember_token"].value


def _with_cookie(app, value: str):  # type: ignore[no-untyped-def]
    """Another browser holding only a copy of the remember-me cookie."""
    other = app.test_client()
    other.set_cookie("remember_token", value)
    return other


def test_a_copied_remember_cookie_signs_in_until_sign_out_and_never_after(app, client, staff, make_staff):
    user = make_staff("office")
    copied = _remember_cookie(staff.login(user, remember="y"))
    # The copy works while the owner is signed in: it is a real sign-in credential.
    thief = _with_cookie(app, copied)
    assert thief.get("/staff/").status_code == 200

    assert staff.logout().status_code == 302
    assert client.get("/staff/").status_code == 302
    replay = _with_cookie(app, copied).get("/staff/")
    assert replay.status_code == 302 and "/staff/login" in replay.headers["Location"]
    # The session the copy had already started ends too.
    assert thief.get("/staff/").status_code == 302


def test_sign_out_deletes_the_remember_cookie(staff, make_staff):
    staff.login(make_staff("office"), remember="y")
    response = staff.logout()
    deleted = _set_cookies(response)["remember_token"]["remember_token"]
    assert deleted.value == "" and (deleted["max-age"] == "0" or "1970" in deleted["expires"])


def test_signing_in_again_after_sign_out_works_and_gives_a_new_cookie(app, client, staff, make_staff):
    user = make_staff("office")
    first = _remember_cookie(staff.login(user, remember="y"))
    staff.logout()
    second = _remember_cookie(staff.login(user, remember="y"))
    assert second != first
    assert client.get("/staff/").status_code == 200
    assert _with_cookie(app, second).get("/staff/").status_code == 200
    assert _with_cookie(app, first).get("/staff/").status_code == 302


def test_a_password_change_ends_remembered_sessions(app, db, staff, make_staff):
    user = make_staff("office")
    copied = _remember_cookie(staff.login(user, remember="y"))
    set_password(db.get(StaffUser, user.id), "a-brand-new-password")
    db.commit()
    assert _with_cookie(app, copied).get("/staff/").status_code == 302


# --- The sign-in limit per account --------------------------------------------------------


def _attempt(client, user, password):  # type: ignore[no-untyped-def]
    return client.post("/staff/login", data={"email": user.email, "password": password}).status_code


def test_the_failure_after_the_limit_gets_429(app, client, make_staff):
    app.config["LOGIN_LIMIT_PER_ACCOUNT"] = "4 per 15 minutes"
    user = make_staff("office")
    assert [_attempt(client, user, "wrong") for _ in range(4)] == [400] * 4
    assert _attempt(client, user, "wrong") == 429
    assert _attempt(client, user, PASSWORD) == 429  # locked: the right password waits too


def test_a_success_resets_the_accounts_count(app, client, staff, make_staff):
    app.config["LOGIN_LIMIT_PER_ACCOUNT"] = "4 per 15 minutes"
    user = make_staff("office")
    assert [_attempt(client, user, "wrong") for _ in range(3)] == [400] * 3
    assert _attempt(client, user, PASSWORD) == 302
    staff.logout()
    assert [_attempt(client, user, "wrong") for _ in range(3)] == [400] * 3
    assert _attempt(client, user, PASSWORD) == 302


def test_successes_do_not_count_against_the_account(app, client, staff, make_staff):
    app.config.update(LOGIN_LIMIT_PER_ACCOUNT="3 per 15 minutes", LOGIN_LIMIT_PER_CLIENT="100 per 15 minutes")
    user = make_staff("office")
    for _ in range(5):
        assert _attempt(client, user, PASSWORD) == 302
        staff.logout()


def test_a_success_on_one_account_leaves_anothers_count(app, client, staff, make_staff):
    app.config["LOGIN_LIMIT_PER_ACCOUNT"] = "3 per 15 minutes"
    target, own = make_staff("office"), make_staff("office")
    assert [_attempt(client, target, "wrong") for _ in range(3)] == [400] * 3
    assert _attempt(client, own, PASSWORD) == 302
    staff.logout()
    assert _attempt(client, target, PASSWORD) == 429


def test_the_per_client_limit_still_counts_every_attempt(app, client, staff, make_staff):
    app.config["LOGIN_LIMIT_PER_CLIENT"] = "3 per 15 minutes"
    user = make_staff("office")
    for _ in range(3):
        assert _attempt(client, user, PASSWORD) == 302
        staff.logout()
    assert _attempt(client, user, PASSWORD) == 429
