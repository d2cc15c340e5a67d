"""Property-based tests (hypothesis) over every form and the JSON API: whatever is posted, the
answer is never a 500, and an answer that refuses the input (4xx) has changed no row count.

Each property starts from a submission the page itself would send (its hidden fields, a fresh
one-time form id, plausible answers) and changes a few fields at random: drops them, or puts in
unicode text, control characters, strings of up to 120,000 characters, repeated values (lists),
numbers and dates out of range, markup; sometimes it adds a field nobody asked for. Starting
from a valid submission lets the generated inputs reach the checks behind the first validator.
"""

from __future__ import annotations

import secrets
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from portal import api_tokens
from portal.confirmations import Answer, record_answers
from portal.models import (
    Account,
    CompanySettings,
    Customer,
    FormSubmission,
    Invoice,
    OutboxEmail,
    PromiseItem,
    RecordEntry,
    StaffAudit,
    StaffUser,
)
from portal.onboarding import send_welcome
from tests.conftest import PASSWORD, count_rows, form_fields
from tests.test_api import handoff_body
from tests.test_handoff_form import _edit_form, valid_form
from tests.test_welcome import answer_all, complete, token_of

TABLES = (
    Account,
    Customer,
    PromiseItem,
    RecordEntry,
    OutboxEmail,
    FormSubmission,
    StaffUser,
    CompanySettings,
    Invoice,
    StaffAudit,
)
FRESH = "<fresh one-time form id>"
FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

NASTY = [
    "",
    " ",
    "\t\n",
    "0",
    "-1",
    "1e309",
    "NaN",
    "Infinity",
    "-0.001",
    "99999999999999999999",
    "2026-02-30",
    "0000-00-00",
    "9999-12-31",
    "1969-12-31",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "%00",
    "\x00",
    "\ufeff",
    "\u202e",
    "null",
    "[]",
    "{}",
    "a@b",
    "@",
    "x@",
    "Friday",
    "Funday",
    "Card autopay",
    "yes",
    "no",
    "on",
    "accept",
    "keep",
    "assign",
]
odd_text = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8", categories=["Cc", "Cf", "Zl", "Zp", "Co"]), min_size=1, max_size=12),
    st.sampled_from(NASTY),
    st.builds(
        lambda before, odd, after: before + odd + after,
        st.text(max_size=10),
        st.sampled_from(["\x00", "\x1b", "\x7f", "\u2028", "\ufffe", "\U0010ffff"]),
        st.text(max_size=10),
    ),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.builds(
        lambda chunk, n: chunk * n,
        st.sampled_from(["x", "é", "💧", "\x00", " ", "<b>"]),
        st.integers(min_value=1000, max_value=120_000),
    ),
)


DROP = object()
change = st.one_of(st.just(DROP), odd_text, st.lists(odd_text, min_size=2, max_size=3))


@st.composite
def mutations(draw: st.DrawFn, names: tuple[str, ...]) -> list[tuple[str, Any]]:
    """Up to four fields dropped or given odd values, and now and then a stray field. Drawn
    from a fixed list of names (not from the page, which earlier examples may have changed),
    so that hypothesis can replay and shrink what it found."""
    chosen = sorted(draw(st.sets(st.sampled_from(names), max_size=min(4, len(names))))) if names else []
    plan = [(name, draw(change)) for name in chosen]
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        plan.append((draw(st.text(min_size=1, max_size=12)), draw(odd_text)))
    return plan


def mutate(baseline: dict[str, Any], plan: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(baseline)
    for name, value in plan:
        if value is DROP:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def field_names(app: Any, key: str, baseline: dict[str, Any]) -> tuple[str, ...]:
    """The baseline's field names as the first example saw them, kept for the whole test."""
    known = app.extensions.setdefault("fuzz_field_names", {})
    return known.setdefault(key, tuple(sorted(baseline)))


def fuzz(app: Any, data: st.DataObject, key: str, baseline: dict[str, Any]) -> dict[str, Any]:
    return mutate(baseline, data.draw(mutations(field_names(app, key, baseline))))


def snapshot(db: Session) -> dict[str, int]:
    db.commit()  # end the test's read transaction: the counts are fresh
    return {model.__tablename__: count_rows(db, model) for model in TABLES}


def fresh_ids(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (secrets.token_urlsafe(18) if v == FRESH else v) for k, v in data.items()}


def post_and_check(
    client: Any, db: Session, path: str, data: dict[str, Any] | None = None, **kwargs: Any
) -> Any:
    before = snapshot(db)
    response = client.post(path, data=fresh_ids(data) if data is not None else None, **kwargs)
    assert response.status_code < 500, (path, response.status_code)
    if 400 <= response.status_code < 500:
        assert snapshot(db) == before, (path, response.status_code)
    return response


class _Forms(HTMLParser):
    """The forms of a page as a browser would submit them, untouched."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, list[tuple[str, str]]]] = []
        self._radios: dict[str, str] = {}
        self._textarea: list[str] | None = None
        self._select: list[str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag == "form":
            self.forms.append((a.get("action", ""), []))
            return
        if not self.forms or not a.get("name") and tag != "option":
            return
        fields = self.forms[-1][1]
        kind = a.get("type", "text").lower()
        if tag == "input" and kind not in ("submit", "button", "image", "reset", "file"):
            if kind == "checkbox" and "checked" in a:
                fields.append((a["name"], a.get("value") or "on"))
            elif kind == "radio" and (a["name"] not in self._radios or "checked" in a):
                if a["name"] in self._radios:
                    fields.remove((a["name"], self._radios[a["name"]]))
                self._radios[a["name"]] = a.get("value", "on")
                fields.append((a["name"], self._radios[a["name"]]))
            elif kind not in ("checkbox", "radio"):
                fields.append((a["name"], a.get("value", "")))
        elif tag == "textarea":
            self._textarea = [a["name"], ""]
        elif tag == "select":
            self._select = [a["name"], None]
        elif tag == "option" and self._select is not None and (self._select[1] is None or "selected" in a):
            self._select[1] = a.get("value", "")

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._textarea[1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea" and self._textarea is not None:
            self.forms[-1][1].append((self._textarea[0], self._textarea[1]))
            self._textarea = None
        elif tag == "select" and self._select is not None:
            if self._select[1] is not None:
                self.forms[-1][1].append((str(self._select[0]), self._select[1]))
            self._select = None


def page_form(html: str, action: str) -> dict[str, Any]:
    """The submission of the form posting to `action`, repeated names as lists."""
    parser = _Forms()
    parser.feed(html)
    for form_action, fields in parser.forms:
        if form_action.split("?")[0] == action:
            data: dict[str, Any] = {}
            for name, value in fields:
                data[name] = (
                    [*data[name], value]
                    if isinstance(data.get(name), list)
                    else ([data[name], value] if name in data else value)
                )
            return {k: (FRESH if k == "form_id" else v) for k, v in data.items()}
    raise AssertionError(f"no form posts to {action}")


# -- staff ------------------------------------------------------------------------------------
# Fixtures run once per test; hypothesis then runs its examples against the same app.


@pytest.fixture
def unlimited(app):  # type: ignore[no-untyped-def]
    """Rate limits out of the way: the properties are about input, not about counting."""
    app.config.update(
        LOGIN_LIMIT_PER_ACCOUNT="10000 per minute",
        LOGIN_LIMIT_PER_CLIENT="10000 per minute",
        NEW_LINK_LIMIT_PER_ADDRESS="10000 per minute",
        NEW_LINK_LIMIT_PER_CLIENT="10000 per minute",
    )
    return app


def signed_in(client, staff, make_staff, role: str):  # type: ignore[no-untyped-def]
    user = make_staff(role)
    assert staff.login(user).status_code == 302
    return user


@FUZZ
@given(data=st.data())
def test_staff_login(unlimited, db, make_staff, data):
    user = getattr(unlimited, "fuzz_user", None)
    if user is None:
        user = unlimited.fuzz_user = make_staff("office")
    baseline = {"email": user.email, "password": PASSWORD, "remember": "y", "next": "/staff/"}
    # A new browser each time: a signed-in one is sent on to the dashboard before any check.
    post_and_check(unlimited.test_client(), db, "/staff/login", fuzz(unlimited, data, "login", baseline))


@pytest.fixture
def admin(client, staff, make_staff):  # type: ignore[no-untyped-def]
    return signed_in(client, staff, make_staff, "admin")


@FUZZ
@given(data=st.data())
def test_company_settings(client, db, admin, data):
    baseline = page_form(client.get("/staff/settings").get_data(as_text=True), "")
    baseline.update(name="Blue Lagoon Pool Care", brand_color="#0b5cab")
    post_and_check(client, db, "/staff/settings", fuzz(client.application, data, "settings", baseline))


@pytest.fixture
def seller(client, staff, make_staff):  # type: ignore[no-untyped-def]
    return signed_in(client, staff, make_staff, "sales")


@FUZZ
@given(data=st.data())
def test_new_handoff(client, db, seller, data):
    baseline = {
        **form_fields(client.get("/staff/handoffs/new").get_data(as_text=True)),
        **valid_form(),
        "form_id": FRESH,
    }
    post_and_check(client, db, "/staff/handoffs/new", fuzz(client.application, data, "new", baseline))


@pytest.fixture
def draft(seller, make_account):  # type: ignore[no-untyped-def]
    return make_account(salesperson=seller).id


@FUZZ
@given(data=st.data())
def test_edit_handoff(client, db, draft, data):
    baseline = _edit_form(client, draft)  # the current version each time
    post_and_check(
        client, db, f"/staff/accounts/{draft}/edit", fuzz(client.application, data, "edit", baseline)
    )


@pytest.fixture
def differences(client, db, staff, make_staff, make_account):  # type: ignore[no-untyped-def]
    """Three customer answers that differ from the promise, and an office user signed in."""
    office = signed_in(client, staff, make_staff, "office")
    items = []
    for n in range(3):
        account = make_account(customer_email=f"diff{n}@example.com")
        visit = next(item for item in account.items if item.kind == "visit_day")
        record_answers(db, account, [Answer(visit, "changed", "Monday", "please")])
        items.append(visit.id)
    db.commit()
    return items, office.id


@FUZZ
@given(data=st.data(), action=st.sampled_from(["accept", "keep", "assign"]))
def test_resolve_a_difference(client, db, differences, data, action):
    items, office_id = differences
    item_id = data.draw(st.sampled_from(items))
    baseline = {
        "form_id": FRESH,
        "action": action,
        "note": "Called the customer",
        "assignee": str(office_id),
        "back": "/staff/differences",
    }
    post_and_check(
        client,
        db,
        f"/staff/differences/{item_id}/resolve",
        fuzz(client.application, data, "resolve", baseline),
    )


# -- customers ----------------------------------------------------------------------------------


def open_portal(client, db, make_account):  # type: ignore[no-untyped-def]
    account = make_account()
    sent = send_welcome(db, account, "system")
    db.commit()
    assert client.get("/welcome/t/" + token_of(sent.url)).status_code == 302
    return account


@pytest.fixture
def customer(client, db, make_account):  # type: ignore[no-untyped-def]
    return open_portal(client, db, make_account)


@pytest.mark.parametrize(
    "step", ["welcome", "schedule", "access", "readiness", "contact", "promises", "billing", "review"]
)
@FUZZ
@given(data=st.data())
def test_each_customer_step(client, db, make_account, customer, step, data):
    if step == "review" and not getattr(customer, "fuzz_ready", False):
        complete(client, stop_before="/welcome/step/review")  # the review needs the rest done
        customer.fuzz_ready = True
    page = client.get(f"/welcome/step/{step}")
    if page.status_code == 302:  # an earlier example signed: carry on with a new customer
        assert step == "review"
        open_portal(client, db, make_account)
        complete(client, stop_before="/welcome/step/review")
        page = client.get(f"/welcome/step/{step}")
    assert page.status_code == 200
    baseline = {**answer_all(page.get_data(as_text=True)), "form_id": FRESH}
    post_and_check(client, db, f"/welcome/step/{step}", fuzz(client.application, data, step, baseline))


@FUZZ
@given(data=st.data())
def test_new_link_request(unlimited, client, db, make_account, data):
    email = getattr(unlimited, "fuzz_email", None)
    if email is None:
        email = unlimited.fuzz_email = open_portal(unlimited.test_client(), db, make_account).customer.email
    page = client.get("/welcome/session-ended").get_data(as_text=True)
    baseline = {**page_form(page, "/welcome/new-link"), "email": email}
    post_and_check(client, db, "/welcome/new-link", fuzz(unlimited, data, "new-link", baseline))


@pytest.fixture
def signed_customer(client, customer):  # type: ignore[no-untyped-def]
    assert complete(client).endswith("/welcome/thanks")
    return customer


@FUZZ
@given(data=st.data())
def test_change_request(client, db, signed_customer, data):
    page = client.get("/welcome/service").get_data(as_text=True)
    baseline = {**page_form(page, "/welcome/service/change"), "details": "Please come on Mondays instead"}
    post_and_check(client, db, "/welcome/service/change", fuzz(client.application, data, "change", baseline))


# -- the JSON API -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | odd_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def api_bodies(draw: st.DrawFn) -> Any:
    body = handoff_body()
    if draw(st.integers(min_value=0, max_value=5)) == 0:
        return draw(json_values)  # not even the right shape
    paths = [
        ("customer", "name"),
        ("customer", "email"),
        ("customer", "phone"),
        ("service_address",),
        ("plan",),
        ("price_cents",),
        ("first_visit",),
        ("salesperson_email",),
        ("promises",),
        ("promises", 0, "kind"),
        ("promises", 0, "value"),
        ("promises", 1),
    ]
    # Deepest first, so that replacing a list does not pull a later path out from under it.
    for path in sorted(draw(st.sets(st.sampled_from(paths), max_size=3)), key=lambda p: (-len(p), repr(p))):
        drop, value = draw(st.booleans()), draw(json_values)
        parent = body
        for key in path[:-1]:
            parent = parent[key]
        if drop:
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
    return body


@pytest.fixture
def api_token(db, make_staff):  # type: ignore[no-untyped-def]
    make_staff("sales", email="sam@example.com")  # the body's salesperson
    token = api_tokens.create_token(db, "fuzz").plaintext
    db.commit()
    return token


@FUZZ
@given(body=api_bodies())
def test_api_create_handoff(client, db, api_token, body):
    response = post_and_check(
        client, db, "/api/v1/handoffs", json=body, headers={"Authorization": f"Bearer {api_token}"}
    )
    assert response.is_json
    if response.status_code == 400:
        assert isinstance(response.get_json().get("errors"), dict)


# -- NUL, which PostgreSQL cannot store in text: refused alike on both databases ------------------


def test_nul_is_refused_in_a_form_field_a_json_body_and_a_query_parameter(client, db, customer, api_token):
    html = client.get("/welcome/step/access").get_data(as_text=True)
    form = {**answer_all(html), "technician_note": "gate\x00code"}
    response = post_and_check(client, db, "/welcome/step/access", form)
    assert response.status_code == 400 and "cannot be saved (NUL" in response.get_data(as_text=True)

    response = post_and_check(
        client,
        db,
        "/api/v1/handoffs",
        json=handoff_body(plan="Weekly\x00"),
        headers={"Authorization": f"Bearer {api_token}"},
    )
    assert response.status_code == 400 and "NUL" in response.get_json()["errors"]["body"]

    assert client.get("/welcome/step/access?x=%00").status_code == 400
    assert (
        post_and_check(client, db, "/welcome/step/access", {**form, "technician_note": "ok"}).status_code
        == 302
    )  # without it, the same answer goes through


# -- forms exactly as a browser sends them -------------------------------------------------------


def test_resolve_forms_work_as_a_browser_submits_them(client, db, differences):
    """Every field of the rendered form, in order, repeated names and all (a hidden `action`
    from hidden_tag() once shadowed the button's own, so real browsers were refused)."""
    items, _office_id = differences
    action = f"/staff/differences/{items[0]}/resolve"
    submission = page_form(client.get(action).get_data(as_text=True), action)  # first choice: accept
    assert submission["action"] == "accept"
    response = post_and_check(client, db, action, submission)
    assert response.status_code == 302
    follow = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Accepted the customer" in follow and "not understood" not in follow
