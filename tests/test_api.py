"""The JSON API: bearer tokens, creating handoffs, reading the service record, every error."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import api_tokens, imports, links, record
from portal.db import utcnow
from portal.models import Account, ApiToken, Customer, OutboxEmail, PromiseItem, RecordEntry
from tests.conftest import count_rows

TABLES = (Customer, Account, PromiseItem, RecordEntry, OutboxEmail)
SALES_EMAIL = "sam@example.com"


def handoff_body(**changes: Any) -> dict[str, Any]:
    """The contract's example body (DESIGN.md), with a first visit a week from today."""
    body: dict[str, Any] = {
        "customer": {"name": "Dana Reyes", "email": "dana@example.com", "phone": "+1 480 555 0134"},
        "service_address": "1820 W Palm Ln, Phoenix, AZ 85007",
        "plan": "Weekly full service",
        "price_cents": 16500,
        "first_visit": (date.today() + timedelta(days=7)).isoformat(),
        "salesperson_email": SALES_EMAIL,
        "promises": [
            {"kind": "visit_day", "value": "Friday"},
            {"kind": "gate_access", "value": "Side gate, code 4412"},
            {"kind": "safety", "value": "Toddler at home: always re-latch the gate"},
            {"kind": "equipment", "value": "Salt cell check before summer"},
            {"kind": "billing", "value": "Card autopay"},
        ],
    }
    body.update(changes)
    return body


def counts(db: Session) -> dict[str, int]:
    return {model.__tablename__: count_rows(db, model) for model in TABLES}


@pytest.fixture
def sales(make_staff):  # type: ignore[no-untyped-def]
    return make_staff("sales", email=SALES_EMAIL, name="Sam Sales")


@pytest.fixture
def token(db: Session) -> str:
    issued = api_tokens.create_token(db, "crm")
    db.commit()
    return issued.plaintext


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post_handoff(client, token: str | None, body: Any = None, **kwargs: Any):  # type: ignore[no-untyped-def]
    headers = bearer(token) if token else {}
    if "data" not in kwargs:
        kwargs["json"] = handoff_body() if body is None else body
    return client.post("/api/v1/handoffs", headers=headers, **kwargs)


# ---------------------------------------------------------------- creating a handoff


def test_a_handoff_is_created_with_its_record_and_welcome_email(client, db, sales, token):
    response = post_handoff(client, token)

    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"id", "welcome_url"}
    assert response.headers["Location"].endswith(f"/api/v1/accounts/{body['id']}/record")
    account = db.get(Account, body["id"])
    assert account.customer.email == "dana@example.com"
    assert account.salesperson_id == sales.id
    assert account.price_cents == 16500
    assert account.status == "link_sent"
    # Five promises as sent, plus the price and first visit the customer confirms too.
    kinds = sorted(item.kind for item in account.items)
    assert kinds == sorted(
        ["visit_day", "gate_access", "safety", "equipment", "billing", "price", "start_date"]
    )
    entries = record.entries_for(db, account.id)
    promised = [e for e in entries if e.event == "promised"]
    assert sorted(e.item_id for e in promised) == sorted(item.id for item in account.items)
    assert all(e.actor == f"staff:{sales.id}" and e.outcome == "promised" for e in promised)
    assert [e.event for e in entries][-1] == "link_sent"
    assert entries[-1].actor == "api:crm"
    assert record.verify_chain(db, account.id) is None
    emails = db.scalars(select(OutboxEmail)).all()
    assert [(e.account_id, e.to_address, e.kind) for e in emails] == [
        (account.id, "dana@example.com", "welcome")
    ]
    assert body["welcome_url"] in emails[0].text_body
    check = links.check_token(db, body["welcome_url"].rsplit("/", 1)[1])
    assert check.status is links.LinkStatus.OK and check.account.id == account.id


def test_salesperson_is_optional(client, db, token):
    body = handoff_body()
    del body["salesperson_email"]
    response = post_handoff(client, token, body)
    assert response.status_code == 201
    account = db.get(Account, response.get_json()["id"])
    assert account.salesperson_id is None
    assert {e.actor for e in record.entries_for(db, account.id) if e.event == "promised"} == {"system"}


def test_using_a_token_notes_when_it_was_last_used(client, db, sales, token):
    assert db.scalars(select(ApiToken)).one().last_used_at is None
    assert post_handoff(client, token).status_code == 201
    used = db.scalars(select(ApiToken)).one().last_used_at
    assert used is not None and utcnow() - used < timedelta(minutes=1)


def _drop_customer_email(body: dict[str, Any]) -> None:
    del body["customer"]["email"]


def _set(path: str, value: Any):  # type: ignore[no-untyped-def]
    def change(body: dict[str, Any]) -> None:
        target = body
        *parents, last = path.split(".")
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return change


@pytest.mark.parametrize(
    "change, field",
    [
        (_drop_customer_email, "customer.email"),
        (_set("customer.email", "dana@"), "customer.email"),
        (_set("price_cents", -100), "price_cents"),
        (_set("promises.0.kind", "pony"), "promises.0.kind"),
        (_set("promises.0.value", "Someday"), "promises.0.value"),
        (_set("salesperson_email", "nobody@example.com"), "salesperson_email"),
        (_set("first_visit", (date.today() - timedelta(days=1)).isoformat()), "first_visit"),
        (_set("first_visit", "next friday"), "first_visit"),
        (_set("promises.0", {"kind": ["visit_day"], "value": "Friday"}), "promises.0.kind"),
        # The label's column holds 120 characters: a longer one is refused, not a database error.
        (_set("promises.1.label", "L" * 121), "promises.1.label"),
        (_set("promises.1.value", "V" * 1001), "promises.1.value"),
    ],
)
def test_bad_input_is_400_with_the_field_and_changes_nothing(client, db, sales, token, change, field):
    body = handoff_body()
    change(body)
    before = counts(db)

    response = post_handoff(client, token, body)

    assert response.status_code == 400
    errors = response.get_json()["errors"]
    assert field in errors and errors[field]
    assert counts(db) == before


def test_every_error_is_reported_at_once(client, db, sales, token):
    body = handoff_body(price_cents=0, salesperson_email="ghost@example.com")
    body["customer"]["email"] = "not-an-email"
    response = post_handoff(client, token, body)
    assert response.status_code == 400
    assert set(response.get_json()["errors"]) == {"customer.email", "price_cents", "salesperson_email"}


@pytest.mark.parametrize("role, active", [("technician", True), ("sales", False)])
def test_salesperson_must_be_active_and_selling(client, db, make_staff, token, role, active):
    user = make_staff(role, email="tess@example.com")
    user.active = active
    db.commit()
    response = post_handoff(client, token, handoff_body(salesperson_email="tess@example.com"))
    assert response.status_code == 400
    assert "salesperson_email" in response.get_json()["errors"]
    assert count_rows(db, Account) == 0


def test_office_and_admin_may_be_named_case_insensitively(client, db, make_staff, token):
    office = make_staff("office", email="olivia@example.com")
    response = post_handoff(client, token, handoff_body(salesperson_email="  Olivia@Example.COM "))
    assert response.status_code == 201
    assert db.get(Account, response.get_json()["id"]).salesperson_id == office.id


@pytest.mark.parametrize(
    "data, message",
    [
        (b'{"customer": ', "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),
        (b'["a list"]', "JSON object"),
    ],
)
def test_malformed_json_is_400_on_the_body(client, db, token, data, message):
    response = post_handoff(client, token, data=data, content_type="application/json")
    assert response.status_code == 400
    assert message in response.get_json()["errors"]["body"]
    assert counts(db) == dict.fromkeys(counts(db), 0)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_json_is_415(client, db, sales, token, content_type):
    kwargs: dict[str, Any] = {"data": json.dumps(handoff_body())}
    if content_type:
        kwargs["content_type"] = content_type
    response = post_handoff(client, token, **kwargs)
    assert response.status_code == 415
    assert "JSON" in response.get_json()["error"]
    assert count_rows(db, Account) == 0


def test_a_body_over_the_limit_is_413(app, client, db, sales, token):
    limit = app.config["MAX_CONTENT_LENGTH"]
    body = handoff_body(why_chose_us="x" * (limit + 1))
    response = post_handoff(client, token, body)
    assert response.status_code == 413
    assert response.is_json and response.get_json()["error"]
    assert counts(db) == dict.fromkeys(counts(db), 0)


@pytest.fixture
def errors_not_propagated(settings: dict[str, Any]) -> None:
    """Answer an unexpected exception with the 500 handler, as in production."""
    settings["PROPAGATE_EXCEPTIONS"] = False


def test_a_failure_after_the_first_write_leaves_nothing(
    errors_not_propagated, client, db, sales, token, monkeypatch
):
    real_send = imports.send_welcome

    def send_then_fail(session, account, actor):  # type: ignore[no-untyped-def]
        real_send(session, account, actor)
        session.flush()
        assert session.get(Account, account.id) is not None  # the account was written
        raise RuntimeError("the mail renderer fell over")

    monkeypatch.setattr(imports, "send_welcome", send_then_fail)
    before = counts(db)

    response = post_handoff(client, token)

    assert response.status_code == 500
    assert response.is_json
    assert counts(db) == before


# ---------------------------------------------------------------- tokens


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic c2FtOnB3"},
        {"Authorization": "Bearer hp_not-a-real-token"},
        {"Authorization": "Bearer " + "x" * 500},
    ],
)
def test_missing_or_unknown_tokens_are_401(client, db, sales, token, headers):
    response = client.post("/api/v1/handoffs", json=handoff_body(), headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.is_json
    assert counts(db) == dict.fromkeys(counts(db), 0)


def test_a_revoked_token_is_401(client, db, sales, token):
    api_tokens.revoke_token(db, "crm")
    db.commit()
    response = post_handoff(client, token)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert count_rows(db, Account) == 0


def test_tokens_are_stored_only_as_a_hash(db):
    issued = api_tokens.create_token(db, "crm")
    db.commit()
    row = db.execute(select(ApiToken.__table__)).one()
    assert issued.plaintext.startswith(api_tokens.PREFIX) and len(issued.plaintext) > 40
    assert issued.plaintext not in [str(value) for value in row]
    assert row.token_hash == hashlib.sha256(issued.plaintext.encode()).hexdigest()
    assert api_tokens.verify_token(db, issued.plaintext).id == row.id
    assert api_tokens.verify_token(db, issued.plaintext[:-1]) is None


def test_token_names_identify_one_live_token(db):
    api_tokens.create_token(db, "crm")
    with pytest.raises(api_tokens.TokenError, match="exists already"):
        api_tokens.create_token(db, "crm")
    with pytest.raises(api_tokens.TokenError, match="name"):
        api_tokens.create_token(db, "  ")
    api_tokens.revoke_token(db, "crm")
    assert api_tokens.create_token(db, "crm").token.name == "crm"  # a replacement is fine


def test_create_and_revoke_api_token_commands(client, db, runner, sales):
    created = runner.invoke(args=["create-api-token", "hubspot"])
    assert created.exit_code == 0, created.output
    plaintext = created.stdout.strip()
    assert "not be shown again" in created.stderr
    assert db.scalars(select(ApiToken.token_hash)).one() == api_tokens.hash_token(plaintext)
    assert post_handoff(client, plaintext).status_code == 201

    token_id = db.scalars(select(ApiToken.id)).one()
    revoked = runner.invoke(args=["revoke-api-token", str(token_id)])
    assert revoked.exit_code == 0, revoked.output
    assert "Revoked API token" in revoked.output
    assert post_handoff(client, plaintext, handoff_body(service_address="2 Elm St")).status_code == 401
    again = runner.invoke(args=["revoke-api-token", "hubspot"])
    assert again.exit_code == 1 and "No active token" in again.output


@pytest.mark.csrf
def test_the_api_needs_no_csrf_token(client, db, sales, token):
    assert post_handoff(client, token).status_code == 201


@pytest.fixture
def low_rate_limit(settings: dict[str, Any]) -> None:
    settings["API_RATE_LIMIT"] = "2 per minute"


def test_requests_are_rate_limited_per_token(low_rate_limit, client, db, sales, token):
    statuses = [
        post_handoff(client, token, handoff_body(service_address=f"{n} Elm St")).status_code for n in range(3)
    ]
    assert statuses == [201, 201, 429]
    assert client.get("/api/v1/accounts/1/record", headers=bearer(token)).status_code == 429
    other = api_tokens.create_token(db, "other crm").plaintext
    db.commit()
    assert post_handoff(client, other, handoff_body(service_address="9 Elm St")).status_code == 201
    assert count_rows(db, Account) == 3


# ---------------------------------------------------------------- the service record


def test_the_record_lists_every_entry_in_order(client, db, sales, token):
    account_id = post_handoff(client, token).get_json()["id"]

    response = client.get(f"/api/v1/accounts/{account_id}/record", headers=bearer(token))

    assert response.status_code == 200
    body = response.get_json()
    assert body["account_id"] == account_id
    entries = body["entries"]
    stored = record.entries_for(db, account_id)
    assert [e["seq"] for e in entries] == [e.seq for e in stored] == list(range(1, 9))
    assert [e["hash"] for e in entries] == [e.hash for e in stored]
    assert entries[0]["prev_hash"] == record.GENESIS
    first = entries[0]
    assert set(first) == {
        "seq",
        "event",
        "item_id",
        "item",
        "promised_value",
        "confirmed_value",
        "outcome",
        "actor",
        "note",
        "created_at",
        "request_id",
        "hash",
        "prev_hash",
    }
    item = db.get(PromiseItem, first["item_id"])
    assert first["item"] == {"kind": item.kind, "label": item.label}
    assert first["promised_value"] == item.promised_value and first["outcome"] == "promised"
    assert date.fromisoformat(first["created_at"][:10]) == stored[0].created_at.date()
    assert entries[-1]["event"] == "link_sent" and entries[-1]["item"] is None


def test_the_record_needs_a_token(client, db, make_account):
    account = make_account()
    response = client.get(f"/api/v1/accounts/{account.id}/record")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_and_deleted_accounts_are_404(client, db, make_account, token):
    account = make_account()
    account.deleted_at = utcnow()
    db.commit()
    for account_id in (account.id, account.id + 1000):
        response = client.get(f"/api/v1/accounts/{account_id}/record", headers=bearer(token))
        assert response.status_code == 404
        assert response.is_json and "entries" not in response.get_json()


# ---------------------------------------------------------------- no input makes a 500

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)
FIELDS = [
    "customer",
    "customer.name",
    "customer.email",
    "customer.phone",
    "service_address",
    "plan",
    "price_cents",
    "first_visit",
    "salesperson_email",
    "promises",
    "promises.0",
    "promises.0.kind",
    "promises.0.value",
    "promises.0.label",
    "why_chose_us",
]


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(field=st.sampled_from(FIELDS), value=JSON_VALUES)
def test_any_value_in_any_field_gets_201_or_400(client, sales, token, field, value):
    body = copy.deepcopy(handoff_body(service_address=f"{abs(hash(repr(value)))} Elm St"))
    _set(field, value)(body)
    response = post_handoff(client, token, body)
    assert response.status_code in (201, 400), response.get_data(as_text=True)
    if response.status_code == 400:
        assert response.get_json()["errors"]
