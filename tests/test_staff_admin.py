"""Staff run from the browser: an admin invites, changes roles, deactivates and reactivates;
anyone resets a forgotten password by emailed link or changes their own. Each is a staff audit
entry; links work once and expire; bad input and other roles change nothing."""

from __future__ import annotations

import email.policy
import re
import time
from email.parser import BytesParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from portal import staff_admin
from portal.models import AppendOnlyError, OutboxEmail, RecordEntry, StaffAudit, StaffUser
from tests.conftest import PASSWORD, StaffBrowser, count_rows, form_fields

NEW_PASSWORD = "a-brand-new-password"


# -- helpers ---------------------------------------------------------------------------------


def _emails(db: Session, kind: str) -> list[OutboxEmail]:
    return list(db.scalars(select(OutboxEmail).where(OutboxEmail.kind == kind).order_by(OutboxEmail.id)))


def _link_path(db: Session, kind: str, to: str) -> str:
    """The link in the latest email of this kind to this address, as a path on this site."""
    found = [e for e in _emails(db, kind) if e.to_address == to]
    assert found, f"no {kind} email to {to}"
    url = re.search(r"https?://\S+/staff/password/\S+", found[-1].text_body)
    assert url is not None, found[-1].text_body
    assert url.group(0) in found[-1].html_body
    return urlsplit(url.group(0)).path


def _audit(db: Session) -> list[tuple[str, str | None, str | None]]:
    """(action, target email, actor email), oldest first."""
    rows = db.scalars(select(StaffAudit).order_by(StaffAudit.id)).all()
    return [
        (row.action, row.target.email if row.target else None, row.actor.email if row.actor else None)
        for row in rows
    ]


def _page_fields(client, url: str = "/staff/staff") -> dict[str, str]:  # type: ignore[no-untyped-def]
    return form_fields(client.get(url).get_data(as_text=True))


def _invite(client, **data: str):  # type: ignore[no-untyped-def]
    fields = {k: v for k, v in _page_fields(client).items() if not k.startswith(("role-", "active-"))}
    return client.post(
        "/staff/staff/invite",
        data={**fields, "name": "Nia Park", "email": "nia@example.com", "role": "sales", **data},
    )


def _row_post(client, user: StaffUser, what: str, value: str):  # type: ignore[no-untyped-def]
    """Post one row's role or active form as the staff page renders it."""
    fields = _page_fields(client)
    prefix = f"{what}-{user.id}-"
    data = {k: v for k, v in fields.items() if k.startswith(prefix) or k == "csrf_token"}
    data[prefix + what] = value
    return client.post(f"/staff/staff/{user.id}/{what}", data=data)


def _open_link(client, path: str):  # type: ignore[no-untyped-def]
    """Open an emailed link; returns the set-password page's response (or the refusal)."""
    opened = client.get(path)
    if opened.status_code != 302:
        return opened
    assert opened.headers["Location"] == "/staff/password/new"  # the token leaves the address bar
    return client.get(opened.headers["Location"])


def _choose(client, page, password: str = NEW_PASSWORD, confirm: str | None = None):  # type: ignore[no-untyped-def]
    return client.post(
        "/staff/password/new",
        data={
            **form_fields(page.get_data(as_text=True)),
            "password": password,
            "confirm": password if confirm is None else confirm,
        },
    )


def _browser(app: Flask):  # type: ignore[no-untyped-def]
    """Another person's browser."""
    return StaffBrowser(app.test_client())


def _reload(db: Session, user: StaffUser) -> StaffUser:
    db.expire_all()
    found = db.get(StaffUser, user.id)
    assert found is not None
    return found


@pytest.fixture
def admin(make_staff, staff) -> StaffUser:  # type: ignore[no-untyped-def]
    user = make_staff("admin", email="ada@example.com", name="Ada Admin")
    assert staff.login(user).status_code == 302
    return user


# -- invite ----------------------------------------------------------------------------------


def test_an_invite_is_emailed_and_its_link_lets_the_colleague_choose_a_password_and_sign_in(
    app, client, db, admin, runner
):
    response = _invite(client)
    assert response.status_code == 302
    nia = db.scalars(select(StaffUser).where(StaffUser.email == "nia@example.com")).one()
    assert nia.role == "sales" and nia.name == "Nia Park" and nia.password_set_at is None
    page = client.get("/staff/staff").get_data(as_text=True)
    assert "Nia Park" in page and "invited" in page

    # Delivered like any email: an .eml file with the link in both parts.
    result = runner.invoke(args=["outbox", "send"])
    assert result.exit_code == 0 and "Delivered 1," in result.output, result.output
    [eml] = sorted(Path(app.config["MAIL_OUTBOX_DIR"]).glob("*.eml"))
    with eml.open("rb") as handle:
        message = BytesParser(policy=email.policy.default).parse(handle)
    assert message["To"] == "nia@example.com" and "invited" in message["Subject"]
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "Ada Admin has invited you" in text
    path = urlsplit(re.search(r"https?://\S+/staff/password/invite/\S+", text).group(0)).path

    nia_browser = _browser(app)
    form = _open_link(nia_browser.client, path)
    assert form.status_code == 200 and "nia@example.com" in form.get_data(as_text=True)
    saved = _choose(nia_browser.client, form)
    assert saved.status_code == 302 and saved.headers["Location"] == "/staff/login"
    assert nia_browser.login(_reload(db, nia), NEW_PASSWORD).status_code == 302
    assert nia_browser.client.get("/staff/").status_code == 200

    assert _audit(db) == [
        ("invited", "nia@example.com", "ada@example.com"),
        ("invite_accepted", "nia@example.com", "nia@example.com"),
    ]
    listed = client.get("/staff/staff").get_data(as_text=True).split("<tbody>")[1].split("</tbody>")[0]
    assert "invited" not in listed


def test_an_invited_colleague_cannot_sign_in_before_choosing_a_password(app, client, db, admin):
    _invite(client)
    nia = db.scalars(select(StaffUser).where(StaffUser.email == "nia@example.com")).one()
    for guess in ("", PASSWORD, "nia@example.com"):
        assert _browser(app).login(nia, guess).status_code in (400, 429)


@pytest.mark.parametrize(
    ("data", "field_message"),
    [
        ({"name": ""}, "Enter their name"),
        ({"name": "Nia\nPark"}, "line break"),
        ({"email": "not-an-email"}, "valid email"),
        ({"email": "ADA@example.com"}, "already has this email"),
        ({"role": "owner"}, "Choose a role"),
    ],
)
def test_a_bad_invite_is_refused_with_a_message_and_changes_nothing(client, db, admin, data, field_message):
    before = (count_rows(db, StaffUser), count_rows(db, OutboxEmail), count_rows(db, StaffAudit))
    response = _invite(client, **data)
    assert response.status_code == 400
    assert field_message in response.get_data(as_text=True)
    assert (count_rows(db, StaffUser), count_rows(db, OutboxEmail), count_rows(db, StaffAudit)) == before


def test_an_invite_posted_twice_invites_once(client, db, admin):
    fields = {k: v for k, v in _page_fields(client).items() if not k.startswith(("role-", "active-"))}
    data = {**fields, "name": "Nia Park", "email": "nia@example.com", "role": "sales"}
    assert client.post("/staff/staff/invite", data=data).status_code == 302
    assert client.post("/staff/staff/invite", data=data).status_code == 302
    assert len(_emails(db, "staff_invite")) == 1 and count_rows(db, StaffAudit) == 1


# -- links: once, expiry, tampering ----------------------------------------------------------


def test_a_link_used_once_is_refused_the_second_time_and_changes_nothing(app, client, db, admin):
    _invite(client)
    path = _link_path(db, "staff_invite", "nia@example.com")
    late = _browser(app).client
    late_form = _open_link(late, path)  # opened, then left open in another tab
    assert late_form.status_code == 200

    first = _browser(app).client
    assert _choose(first, _open_link(first, path)).status_code == 302
    nia = _reload(db, db.scalars(select(StaffUser).where(StaffUser.email == "nia@example.com")).one())
    state = (nia.password_hash, nia.session_token, count_rows(db, StaffAudit))

    again = _open_link(_browser(app).client, path)
    assert again.status_code == 400 and "does not work" in again.get_data(as_text=True)
    stale = _choose(late, late_form, "someone-elses-password")
    assert stale.status_code == 400 and "does not work" in stale.get_data(as_text=True)
    nia = _reload(db, nia)
    assert (nia.password_hash, nia.session_token, count_rows(db, StaffAudit)) == state
    assert _browser(app).login(nia, NEW_PASSWORD).status_code == 302


@pytest.mark.parametrize(("kind", "late_by"), [("reset", 61 * 60), ("invite", 73 * 3600)])
def test_an_expired_link_is_refused_and_changes_nothing(app, client, db, admin, monkeypatch, kind, late_by):
    if kind == "invite":
        _invite(client)
        path, who = _link_path(db, "staff_invite", "nia@example.com"), "nia@example.com"
    else:
        staff_admin.request_reset(db, admin.email)
        db.commit()
        path, who = _link_path(db, "password_reset", admin.email), admin.email
    user = db.scalars(select(StaffUser).where(StaffUser.email == who)).one()
    before = (user.password_hash, count_rows(db, StaffAudit))
    real_time = time.time
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: real_time() + late_by)
    refused = _open_link(_browser(app).client, path)
    assert refused.status_code == 400 and "expired" in refused.get_data(as_text=True)
    user = _reload(db, user)
    assert (user.password_hash, count_rows(db, StaffAudit)) == before


def test_an_expired_link_left_open_cannot_be_used(app, client, db, admin, monkeypatch):
    staff_admin.request_reset(db, admin.email)
    db.commit()
    browser = _browser(app).client
    form = _open_link(browser, _link_path(db, "password_reset", admin.email))
    assert form.status_code == 200
    real_time = time.time
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: real_time() + 61 * 60)
    before = _reload(db, admin).password_hash
    assert _choose(browser, form).status_code == 400
    assert _reload(db, admin).password_hash == before


def test_tampered_and_wrong_purpose_links_are_refused(app, client, db, admin):
    staff_admin.request_reset(db, admin.email)
    db.commit()
    path = _link_path(db, "password_reset", admin.email)
    token = path.rsplit("/", 1)[1]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for bad in (
        f"/staff/password/reset/{tampered}",
        f"/staff/password/invite/{token}",
        f"/welcome/t/{token}",
    ):
        assert _browser(app).client.get(bad).status_code == 400, bad
    assert _browser(app).client.get(f"/staff/password/other/{token}").status_code == 404
    # Without an opened link the form is not there at all.
    fresh = _browser(app).client
    assert fresh.get("/staff/password/new").status_code == 400
    assert (
        fresh.post(
            "/staff/password/new", data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
        ).status_code
        == 400
    )
    assert count_rows(db, StaffAudit) == 1  # the request only


def test_a_deactivated_users_links_stop_working(app, client, db, admin, make_staff):
    leaver = make_staff("sales", email="leo@example.com", name="Leo")
    staff_admin.request_reset(db, leaver.email)
    db.commit()
    path = _link_path(db, "password_reset", leaver.email)
    assert _row_post(client, leaver, "active", "0").status_code == 302
    assert _open_link(_browser(app).client, path).status_code == 400


@pytest.mark.parametrize(
    ("password", "confirm", "message"),
    [
        ("short", "short", "between 10 and 200"),
        (NEW_PASSWORD, NEW_PASSWORD + "x", "differ"),
    ],
)
def test_a_bad_new_password_is_refused_and_the_link_still_works(
    app, client, db, admin, password, confirm, message
):
    staff_admin.request_reset(db, admin.email)
    db.commit()
    browser = _browser(app).client
    form = _open_link(browser, _link_path(db, "password_reset", admin.email))
    before = (_reload(db, admin).password_hash, count_rows(db, StaffAudit))
    refused = _choose(browser, form, password, confirm)
    assert refused.status_code == 400 and message in refused.get_data(as_text=True)
    assert (_reload(db, admin).password_hash, count_rows(db, StaffAudit)) == before
    assert _choose(browser, refused).status_code == 302


# -- forgotten password ----------------------------------------------------------------------


def _ask_reset(client, address: str):  # type: ignore[no-untyped-def]
    fields = _page_fields(client, "/staff/password/forgot")
    return client.post("/staff/password/forgot", data={**fields, "email": address})


def test_forgotten_password_end_to_end_ends_the_other_sessions(app, client, db, make_staff):
    user = make_staff("office", email="olu@example.com", name="Olu")
    elsewhere = _browser(app)
    assert elsewhere.login(user).status_code == 302

    page = client.get("/staff/login").get_data(as_text=True)
    assert "Email me a reset link" in page
    assert _ask_reset(client, "OLU@example.com").status_code == 200
    path = _link_path(db, "password_reset", "olu@example.com")
    assert _choose(client, _open_link(client, path)).status_code == 302

    assert elsewhere.client.get("/staff/").status_code == 302  # signed out there
    assert _browser(app).login(_reload(db, user), PASSWORD).status_code == 400
    assert _browser(app).login(_reload(db, user), NEW_PASSWORD).status_code == 302
    assert _audit(db) == [
        ("password_reset_requested", "olu@example.com", None),
        ("password_reset_used", "olu@example.com", "olu@example.com"),
    ]


def test_forgotten_password_answers_the_same_for_known_and_unknown_addresses(client, db, make_staff):
    make_staff("office", email="olu@example.com")
    gone = make_staff("office", email="gone@example.com")
    gone.active = False
    db.commit()
    known = _ask_reset(client, "olu@example.com")
    unknown = _ask_reset(client, "nobody@example.com")
    inactive = _ask_reset(client, "gone@example.com")
    assert known.status_code == unknown.status_code == inactive.status_code == 200
    assert known.get_data(as_text=True) == unknown.get_data(as_text=True) == inactive.get_data(as_text=True)
    assert [e.to_address for e in _emails(db, "password_reset")] == ["olu@example.com"]
    assert _audit(db) == [("password_reset_requested", "olu@example.com", None)]


def test_forgotten_password_is_rate_limited_per_address_and_per_client(app, client, db, make_staff):
    make_staff("office", email="olu@example.com")
    app.config.update(RESET_LIMIT_PER_ADDRESS="2 per hour", RESET_LIMIT_PER_CLIENT="4 per hour")
    for _ in range(2):
        assert _ask_reset(client, "olu@example.com").status_code == 200
    assert _ask_reset(client, "olu@example.com").status_code == 429
    for n in range(2):
        assert _ask_reset(client, f"x{n}@example.com").status_code == 200
    assert _ask_reset(client, "y@example.com").status_code == 429
    assert len(_emails(db, "password_reset")) == 2


def test_a_bad_reset_request_is_refused_and_sends_nothing(client, db, make_staff):
    make_staff("office", email="olu@example.com")
    response = _ask_reset(client, "olu@example.com\nBcc: x@example.com")
    assert response.status_code == 400
    assert count_rows(db, OutboxEmail) == 0 and count_rows(db, StaffAudit) == 0


# -- own password ----------------------------------------------------------------------------


def _change(client, current: str, new: str = NEW_PASSWORD, confirm: str | None = None):  # type: ignore[no-untyped-def]
    return client.post(
        "/staff/password",
        data={
            **_page_fields(client, "/staff/password"),
            "current": current,
            "password": new,
            "confirm": new if confirm is None else confirm,
        },
    )


def test_changing_ones_password_needs_the_current_one_and_ends_other_sessions(
    app, client, db, staff, make_staff
):
    user = make_staff("technician", email="tia@example.com", name="Tia")
    staff.login(user)
    elsewhere = _browser(app)
    elsewhere.login(user)
    before = _reload(db, user).password_hash

    wrong = _change(client, "not-my-password")
    assert wrong.status_code == 400 and "not your current password" in wrong.get_data(as_text=True)
    assert _change(client, PASSWORD, confirm="something-else").status_code == 400
    assert _change(client, PASSWORD, new="short").status_code == 400
    assert _reload(db, user).password_hash == before and count_rows(db, StaffAudit) == 0
    assert elsewhere.client.get("/staff/day").status_code == 200

    assert _change(client, PASSWORD).status_code == 302
    assert client.get("/staff/day").status_code == 200  # still signed in here
    assert elsewhere.client.get("/staff/day").status_code == 302  # signed out elsewhere
    assert _browser(app).login(_reload(db, user), NEW_PASSWORD).status_code == 302
    assert _audit(db) == [("password_changed", "tia@example.com", "tia@example.com")]


def test_changing_a_password_needs_a_sign_in(client):
    response = client.get("/staff/password")
    assert response.status_code == 302 and "/staff/login" in response.headers["Location"]


# -- role and deactivation -------------------------------------------------------------------


def test_an_admin_changes_a_role_and_the_new_role_applies_at_once(app, client, db, admin, make_staff):
    sam = make_staff("sales", email="sam@example.com", name="Sam")
    sams = _browser(app)
    sams.login(sam)
    assert sams.client.get("/staff/reports").status_code == 403
    assert _row_post(client, sam, "role", "office").status_code == 302
    assert _reload(db, sam).role == "office"
    assert sams.client.get("/staff/reports").status_code == 200
    assert _audit(db) == [("role_changed", "sam@example.com", "ada@example.com")]
    entry = db.scalars(select(StaffAudit)).one()
    assert entry.details == {"from": "sales", "to": "office"} and entry.request_id
    # The same role again is no change and no entry; a role that does not exist is refused.
    _row_post(client, sam, "role", "office")
    refused = _row_post(client, sam, "role", "owner")
    assert "Choose a role" in client.get(refused.headers["Location"]).get_data(as_text=True)
    assert _reload(db, sam).role == "office" and count_rows(db, StaffAudit) == 1


def test_deactivation_signs_out_everywhere_keeps_the_record_and_reactivation_lets_back_in(
    app, client, db, admin, make_staff, make_account
):
    sam = make_staff("sales", email="sam@example.com", name="Sam Seller")
    account = make_account(salesperson=sam)
    entries = count_rows(db, RecordEntry)
    phone, laptop = _browser(app), _browser(app)
    phone.login(sam)
    laptop.login(sam, remember="y")
    assert phone.client.get("/staff/").status_code == 200

    assert _row_post(client, sam, "active", "0").status_code == 302
    for device in (phone, laptop):
        response = device.client.get("/staff/")
        assert response.status_code == 302 and "/staff/login" in response.headers["Location"]
    assert _browser(app).login(_reload(db, sam)).status_code == 400
    assert count_rows(db, RecordEntry) == entries
    page = client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    assert "Sam Seller" in page
    assert "deactivated" in client.get("/staff/staff").get_data(as_text=True)

    assert _row_post(client, sam, "active", "1").status_code == 302
    assert _browser(app).login(_reload(db, sam)).status_code == 302
    assert _audit(db) == [
        ("deactivated", "sam@example.com", "ada@example.com"),
        ("reactivated", "sam@example.com", "ada@example.com"),
    ]


def test_the_last_active_admin_cannot_demote_or_deactivate_themself(app, client, db, admin, make_staff):
    other = make_staff("admin", email="old@example.com", name="Old Admin")
    other.active = False
    db.commit()
    for what, value in (("role", "office"), ("active", "0")):
        response = _row_post(client, admin, what, value)
        assert "At least one active admin" in client.get(response.headers["Location"]).get_data(as_text=True)
    me = _reload(db, admin)
    assert (me.role, me.active) == ("admin", True) and count_rows(db, StaffAudit) == 0
    assert client.get("/staff/staff").status_code == 200  # still signed in

    # With another active admin it is allowed.
    assert _row_post(client, other, "active", "1").status_code == 302
    assert _row_post(client, admin, "role", "office").status_code == 302
    assert _reload(db, admin).role == "office"
    assert client.get("/staff/staff").status_code == 403


def test_the_last_admin_rule_holds_when_two_admins_demote_each_other_at_once(app, db, make_staff):
    from tests.conftest import run_at_once

    first = make_staff("admin", email="a1@example.com")
    second = make_staff("admin", email="a2@example.com")
    ids = iter([(first.id, second.id), (second.id, first.id)])
    lock = __import__("threading").Lock()

    def demote() -> str:
        from portal.db import unit_of_work

        with lock:
            actor_id, target_id = next(ids)
        try:
            with unit_of_work() as session:
                staff_admin.change_role(
                    session, session.get(StaffUser, actor_id), session.get(StaffUser, target_id), "office"
                )
        except staff_admin.StaffError:
            return "refused"
        return "done"

    assert sorted(run_at_once(app, 2, demote)) == ["done", "refused"]
    db.expire_all()
    assert count_rows(db, StaffAudit) == 1
    assert sorted(u.role for u in db.scalars(select(StaffUser))) == ["admin", "office"]


@pytest.mark.parametrize("role", ["office", "sales", "technician"])
def test_other_roles_cannot_reach_staff_admin(app, client, db, staff, make_staff, role):
    target = make_staff("sales", email="sam@example.com")
    staff.login(make_staff(role))
    before = (count_rows(db, StaffUser), count_rows(db, StaffAudit), count_rows(db, OutboxEmail))
    assert client.get("/staff/staff").status_code == 403
    assert (
        client.post(
            "/staff/staff/invite", data={"name": "X", "email": "x@example.com", "role": "admin"}
        ).status_code
        == 403
    )
    assert (
        client.post(f"/staff/staff/{target.id}/role", data={f"role-{target.id}-role": "admin"}).status_code
        == 403
    )
    assert (
        client.post(f"/staff/staff/{target.id}/active", data={f"active-{target.id}-active": "0"}).status_code
        == 403
    )
    assert (count_rows(db, StaffUser), count_rows(db, StaffAudit), count_rows(db, OutboxEmail)) == before
    assert _reload(db, target).role == "sales" and _reload(db, target).active


def test_an_unknown_colleague_is_404(client, admin):
    assert client.post("/staff/staff/999999/active", data={"active-999999-active": "0"}).status_code == 404


# -- CSRF ------------------------------------------------------------------------------------


@pytest.mark.csrf
def test_staff_forms_without_the_csrf_token_are_refused_and_change_nothing(
    app, client, db, admin, make_staff
):
    sam = make_staff("sales", email="sam@example.com")
    before = (count_rows(db, StaffUser), count_rows(db, StaffAudit), count_rows(db, OutboxEmail))
    fields = {k: v for k, v in _page_fields(client).items() if k != "csrf_token" and "csrf" not in k}
    posts = [
        ("/staff/staff/invite", {**fields, "name": "Nia", "email": "nia@example.com", "role": "sales"}),
        (f"/staff/staff/{sam.id}/role", {**fields, f"role-{sam.id}-role": "office"}),
        (f"/staff/staff/{sam.id}/active", {**fields, f"active-{sam.id}-active": "0"}),
        ("/staff/password", {"current": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}),
        ("/staff/password/forgot", {"email": sam.email}),
    ]
    for url, data in posts:
        assert client.post(url, data=data).status_code == 400, url
    assert (count_rows(db, StaffUser), count_rows(db, StaffAudit), count_rows(db, OutboxEmail)) == before
    sam = _reload(db, sam)
    assert (sam.role, sam.active) == ("sales", True)
    # With the token the same invite goes through.
    assert _invite(client).status_code == 302
    assert count_rows(db, StaffUser) == before[0] + 1


@pytest.mark.csrf
def test_setting_a_password_without_the_csrf_token_is_refused(app, client, db, admin):
    staff_admin.request_reset(db, admin.email)
    db.commit()
    browser = _browser(app).client
    form = _open_link(browser, _link_path(db, "password_reset", admin.email))
    before = _reload(db, admin).password_hash
    assert (
        browser.post(
            "/staff/password/new", data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
        ).status_code
        == 400
    )
    assert _reload(db, admin).password_hash == before
    assert _choose(browser, form).status_code == 302


# -- the audit -------------------------------------------------------------------------------


def test_staff_audit_entries_are_never_changed_or_deleted(client, db, admin, make_staff):
    sam = make_staff("sales", email="sam@example.com")
    _row_post(client, sam, "role", "office")
    entry = db.scalars(select(StaffAudit)).one()
    entry.action = "nothing_happened"
    with pytest.raises(AppendOnlyError):
        db.flush()
    db.rollback()
    db.delete(db.scalars(select(StaffAudit)).one())
    with pytest.raises(AppendOnlyError):
        db.flush()
    db.rollback()
    for statement in (update(StaffAudit).values(action="x"), delete(StaffAudit)):
        with pytest.raises(AppendOnlyError):
            db.execute(statement)
        db.rollback()
    assert _audit(db) == [("role_changed", "sam@example.com", "ada@example.com")]


def test_the_staff_page_shows_the_audit_latest_first_one_page_at_a_time(client, db, admin, make_staff):
    sam = make_staff("sales", email="sam@example.com", name="Sam")
    roles = ["office", "sales"] * 11  # 22 changes: a page and a bit
    for role in roles:
        staff_admin.change_role(db, admin, sam, role)
    db.commit()
    first = client.get("/staff/staff").get_data(as_text=True)
    audit = first.split('id="audit"')[1]
    assert audit.index("from office to sales") < audit.index("from sales to office")
    assert audit.count("<li>") == 20 and "Older" in audit and "Newer" not in audit
    second = client.get("/staff/staff?page=2").get_data(as_text=True).split('id="audit"')[1]
    assert second.count("<li>") == 2 and "Newer" in second and "Older" not in second
    assert "from sales to office" in second  # the very first change is on the last page


def test_the_staff_list_shows_names_roles_and_last_sign_in(app, client, db, admin, make_staff):
    sam = make_staff("sales", email="sam@example.com", name="Sam Seller")

    def row() -> str:
        rows = client.get("/staff/staff").get_data(as_text=True).split("<tr")
        return next(r for r in rows if "Sam Seller" in r)

    assert "sam@example.com" in row() and "never" in row() and 'selected value="sales"' in row()
    _browser(app).login(sam)
    assert "never" not in row() and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", row())


def test_the_header_shows_the_display_name_not_the_email(client, staff, make_staff):
    user = make_staff("office", email="olu.private@example.com", name="Olu Office")
    staff.login(user)
    page = client.get("/staff/").get_data(as_text=True)
    header = page.split("</header>")[0]
    assert "Olu Office" in header and "olu.private@example.com" not in header


def test_the_service_record_names_colleagues_by_display_name(client, db, staff, make_staff, make_account):
    sam = make_staff("sales", email="sam@example.com", name="Sam Seller")
    account = make_account(salesperson=sam)
    actors = {
        entry.actor for entry in db.scalars(select(RecordEntry).where(RecordEntry.account_id == account.id))
    }
    assert f"staff:{sam.id}" in actors  # the record keeps the id; the page shows the name
    staff.login(make_staff("office"))
    record = client.get(f"/staff/accounts/{account.id}").get_data(as_text=True).split("<time", 1)[1]
    assert "Sam Seller" in record and f"staff:{sam.id}" not in record
