"""The staff forms under hypothesis (see tests/test_fuzz.py): whatever is posted to invite,
change a role, deactivate, ask for a reset, choose or change a password, the answer is never a
500 and a refusal changes no row count."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from portal import staff_admin
from portal.models import OutboxEmail, StaffUser
from tests.conftest import PASSWORD
from tests.test_fuzz import FRESH, FUZZ, fuzz, page_form, post_and_check, signed_in


def _fresh_row_ids(data: dict[str, Any]) -> dict[str, Any]:
    """Row forms carry their one-time id under a prefix: a fresh one per example too."""
    return {k: (FRESH if k.endswith("-form_id") else v) for k, v in data.items()}


@pytest.fixture
def admin(client, staff, make_staff):  # type: ignore[no-untyped-def]
    return signed_in(client, staff, make_staff, "admin")


@pytest.fixture
def colleague(make_staff):  # type: ignore[no-untyped-def]
    return make_staff("sales", email="sam@example.com", name="Sam")


@FUZZ
@given(data=st.data())
def test_invite(client, db, admin, data):
    page = client.get("/staff/staff").get_data(as_text=True)
    baseline = {
        **page_form(page, "/staff/staff/invite"),
        "name": "Nia Park",
        "email": "nia@example.com",
        "role": "sales",
    }
    post_and_check(client, db, "/staff/staff/invite", fuzz(client.application, data, "invite", baseline))


@FUZZ
@given(data=st.data(), what=st.sampled_from(["role", "active"]))
def test_role_and_active_rows(client, db, admin, colleague, data, what):
    action = f"/staff/staff/{colleague.id}/{what}"
    baseline = _fresh_row_ids(page_form(client.get("/staff/staff").get_data(as_text=True), action))
    post_and_check(client, db, action, fuzz(client.application, data, f"row-{what}", baseline))


@pytest.fixture
def unlimited_resets(app):  # type: ignore[no-untyped-def]
    app.config.update(RESET_LIMIT_PER_ADDRESS="10000 per minute", RESET_LIMIT_PER_CLIENT="10000 per minute")
    return app


@FUZZ
@given(data=st.data())
def test_forgotten_password(unlimited_resets, client, db, colleague, data):
    page = client.get("/staff/password/forgot").get_data(as_text=True)
    baseline = {**page_form(page, "/staff/password/forgot"), "email": colleague.email}
    post_and_check(client, db, "/staff/password/forgot", fuzz(unlimited_resets, data, "forgot", baseline))


@FUZZ
@given(data=st.data())
def test_choose_a_password_from_a_link(client, db, colleague, data):
    staff_admin.request_reset(db, colleague.email)
    db.commit()
    body = db.scalars(select(OutboxEmail).order_by(OutboxEmail.id.desc())).first().text_body
    path = re.search(r"/staff/password/reset/\S+", body).group(0)
    assert client.get(path).status_code == 302
    page = client.get("/staff/password/new").get_data(as_text=True)
    baseline = {**page_form(page, ""), "password": "pool-days-all-summer", "confirm": "pool-days-all-summer"}
    post_and_check(client, db, "/staff/password/new", fuzz(client.application, data, "set", baseline))


@FUZZ
@given(data=st.data())
def test_change_own_password(client, db, staff, make_staff, data):
    user = getattr(client.application, "fuzz_staff", None)
    if user is None:
        user = client.application.fuzz_staff = make_staff("technician")
    user = db.get(StaffUser, user.id)
    staff.login(user, PASSWORD)  # signed in again if an earlier example changed the password
    page = client.get("/staff/password").get_data(as_text=True)
    baseline = {**page_form(page, ""), "current": PASSWORD, "password": PASSWORD, "confirm": PASSWORD}
    post_and_check(client, db, "/staff/password", fuzz(client.application, data, "change", baseline))
