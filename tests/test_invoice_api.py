"""Invoices from other systems through the JSON API: created as staff create them (record entry,
email with a pay link), idempotent by external_id (also under two requests at once), every
error answered with nothing stored."""

from __future__ import annotations

import copy
import re
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import api_tokens, external_invoices, record
from portal.db import utcnow
from portal.models import Invoice, InvoiceLine, OutboxEmail, RecordEntry
from portal.payments import invoices as invoice_service
from tests.conftest import count_rows, run_at_once

TABLES = (Invoice, InvoiceLine, OutboxEmail, RecordEntry)


def invoice_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "external_id": "QB-1042",
        "currency": "USD",
        "due_date": (date.today() + timedelta(days=14)).isoformat(),
        "lines": [
            {"description": "Weekly service, March", "amount_cents": 16500, "quantity": 1},
            {"description": "Chlorine tablets", "amount_cents": 1200, "quantity": 3},
        ],
    }
    body.update(changes)
    return body


def counts(db: Session) -> dict[str, int]:
    return {model.__tablename__: count_rows(db, model) for model in TABLES}


@pytest.fixture
def token(db: Session) -> str:
    issued = api_tokens.create_token(db, "quickbooks")
    db.commit()
    return issued.plaintext


@pytest.fixture
def account(make_account):  # type: ignore[no-untyped-def]
    return make_account()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post_invoice(client, token: str | None, account_id: int, body: Any = None):  # type: ignore[no-untyped-def]
    return client.post(
        f"/api/v1/accounts/{account_id}/invoices",
        json=invoice_body() if body is None else body,
        headers=bearer(token) if token else {},
    )


def invoice_emails(db: Session) -> list[OutboxEmail]:
    return list(db.scalars(select(OutboxEmail).where(OutboxEmail.kind == "invoice")))


def invoice_entries(db: Session, account_id: int) -> list[RecordEntry]:
    return [e for e in record.entries_for(db, account_id) if e.event == "invoice_created"]


# ---------------------------------------------------------------- creating


def test_an_invoice_is_created_like_a_staff_invoice_emailed_with_a_pay_link_and_recorded(
    client, db, account, token
):
    response = post_invoice(client, token, account.id)

    assert response.status_code == 201
    body = response.get_json()
    invoice = db.get(Invoice, body["id"])
    assert body["number"] == invoice.number and invoice.number.startswith("INV-")
    assert body["external_id"] == invoice.external_id == "QB-1042"
    assert (body["status"], body["paid"], body["currency"], body["total_cents"]) == (
        "open",
        False,
        "USD",
        20100,
    )
    assert body["lines"] == [
        {"description": "Weekly service, March", "amount_cents": 16500},
        {"description": "Chlorine tablets (3 × $12.00)", "amount_cents": 3600},
    ]
    assert response.headers["Location"].endswith(f"/api/v1/accounts/{account.id}/invoices")
    [entry] = invoice_entries(db, account.id)
    assert entry.actor == "api:quickbooks"
    assert entry.details["invoice_id"] == invoice.id and entry.details["external_id"] == "QB-1042"
    assert record.verify_chain(db, account.id) is None
    [email] = invoice_emails(db)
    assert email.to_address == account.customer.email and "$201.00" in email.text_body
    assert "Chlorine tablets (3 × $12.00)" in email.html_body
    token_part = re.search(r"http://localhost/pay/t/(\S+)", email.text_body).group(1)
    check = invoice_service.check_pay_token(db, token_part)
    assert check.ok and check.invoice.id == invoice.id


def test_the_same_external_id_again_is_200_with_the_same_invoice_and_nothing_new(client, db, account, token):
    first = post_invoice(client, token, account.id)
    before = counts(db)

    again = post_invoice(client, token, account.id)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json() == first.get_json()
    assert counts(db) == before
    assert len(invoice_emails(db)) == 1


def test_the_same_request_with_blank_space_and_quantity_left_out_is_still_a_repeat(
    client, db, account, token
):
    body = invoice_body(lines=[{"description": "Weekly service", "amount_cents": 16500, "quantity": 1}])
    assert post_invoice(client, token, account.id, body).status_code == 201
    same = invoice_body(
        external_id=" QB-1042 ",
        currency="usd",
        lines=[{"description": "  Weekly service ", "amount_cents": 16500}],
    )
    assert post_invoice(client, token, account.id, same).status_code == 200
    assert count_rows(db, Invoice) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"due_date": (date.today() + timedelta(days=30)).isoformat()},
        {"lines": [{"description": "Weekly service, March", "amount_cents": 16501, "quantity": 1}]},
        {"lines": [{"description": "Chlorine tablets", "amount_cents": 3600, "quantity": 1}]},
    ],
)
def test_the_same_external_id_with_a_different_request_is_409_and_changes_nothing(
    client, db, account, token, change
):
    first = post_invoice(client, token, account.id).get_json()
    before = counts(db)

    response = post_invoice(client, token, account.id, invoice_body(**change))

    assert response.status_code == 409
    body = response.get_json()
    assert "QB-1042" in body["error"] and "nothing was changed" in body["error"]
    assert body["invoice"] == first
    assert counts(db) == before
    assert db.get(Invoice, first["id"]).total_cents == first["total_cents"]


def test_an_external_id_is_unique_per_account_only(client, db, make_account, token):
    one, two = make_account(), make_account(service_address="9 Elm St, Phoenix, AZ")
    assert post_invoice(client, token, one.id).status_code == 201
    assert post_invoice(client, token, two.id).status_code == 201
    assert sorted(i.account_id for i in db.scalars(select(Invoice))) == sorted([one.id, two.id])


def test_two_identical_requests_at_once_make_one_invoice(app, client, db, account, token):
    url = f"/api/v1/accounts/{account.id}/invoices"

    # Each thread is its own client, with its own database connection.
    def post() -> tuple[int, int]:
        response = app.test_client().post(url, json=invoice_body(), headers=bearer(token))
        return response.status_code, response.get_json()["id"]

    client.get("/healthz")  # ends the test's transaction, as a request from a user would
    results = run_at_once(app, 2, post)
    db.rollback()  # read what the threads committed

    assert sorted(status for status, _ in results) == [200, 201]
    assert len({invoice_id for _, invoice_id in results}) == 1
    assert count_rows(db, Invoice) == 1
    assert len(invoice_emails(db)) == 1
    assert len(invoice_entries(db, account.id)) == 1


def test_the_database_refuses_a_second_invoice_with_the_id_when_the_look_up_misses_it(
    client, db, account, token, monkeypatch
):
    """What a race between look-up and insert comes to: the unique constraint, not the look-up,
    keeps it at one invoice, and the request is answered as a repeat."""
    first = post_invoice(client, token, account.id).get_json()
    real = external_invoices.by_external_id
    missed: list[int] = []

    def miss_once(session, found_account, external_id):  # type: ignore[no-untyped-def]
        if not missed:
            missed.append(1)
            return None
        return real(session, found_account, external_id)

    monkeypatch.setattr(external_invoices, "by_external_id", miss_once)
    before = counts(db)

    response = post_invoice(client, token, account.id)

    assert missed and response.status_code == 200
    assert response.get_json() == first
    assert counts(db) == before


def test_a_different_request_that_loses_the_race_is_409_and_changes_nothing(
    client, db, account, token, monkeypatch
):
    first = post_invoice(client, token, account.id).get_json()
    real = external_invoices.by_external_id
    missed: list[int] = []

    def miss_once(session, found_account, external_id):  # type: ignore[no-untyped-def]
        if not missed:
            missed.append(1)
            return None
        return real(session, found_account, external_id)

    monkeypatch.setattr(external_invoices, "by_external_id", miss_once)
    before = counts(db)

    response = post_invoice(
        client, token, account.id, invoice_body(due_date=(date.today() + timedelta(days=9)).isoformat())
    )

    assert missed and response.status_code == 409
    assert response.get_json()["invoice"] == first
    assert counts(db) == before


# ---------------------------------------------------------------- bad input


def _line(**changes: Any) -> dict[str, Any]:
    return {"lines": [{"description": "Weekly service", "amount_cents": 16500, "quantity": 1, **changes}]}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"lines": []}, "lines"),
        ({"lines": "Weekly service"}, "lines"),
        ({"lines": ["Weekly service"]}, "lines.0"),
        (_line(description=""), "lines.0.description"),
        (_line(description="Weekly\r\nBcc: x@example.com"), "lines.0.description"),
        (_line(description="x" * 301), "lines.0.description"),
        (_line(amount_cents=0), "lines.0.amount_cents"),
        (_line(amount_cents=-500), "lines.0.amount_cents"),
        (_line(amount_cents=165.5), "lines.0.amount_cents"),
        (_line(amount_cents="165.00"), "lines.0.amount_cents"),
        (_line(amount_cents=True), "lines.0.amount_cents"),
        (_line(quantity=0), "lines.0.quantity"),
        (_line(quantity=1.5), "lines.0.quantity"),
        (_line(amount_cents=10, quantity=2), "lines"),
        (_line(amount_cents=99_999_999, quantity=2), "lines"),
        ({"lines": [_line()["lines"][0]] * 31}, "lines"),
        ({"external_id": ""}, "external_id"),
        ({"external_id": None}, "external_id"),
        ({"external_id": "x" * 101}, "external_id"),
        ({"external_id": "QB\n1042"}, "external_id"),
        ({"currency": "EUR"}, "currency"),
        ({"currency": 840}, "currency"),
        ({"due_date": "31/12/2026"}, "due_date"),
        ({"due_date": None}, "due_date"),
        ({"due_date": (date.today() - timedelta(days=2)).isoformat()}, "due_date"),
        ({"due_date": (date.today() + timedelta(days=400)).isoformat()}, "due_date"),
    ],
)
def test_bad_input_is_400_with_the_field_and_stores_nothing(client, db, account, token, change, field):
    before = counts(db)

    response = post_invoice(client, token, account.id, invoice_body(**change))

    assert response.status_code == 400
    assert field in response.get_json()["errors"], response.get_json()
    assert counts(db) == before


def test_every_error_is_reported_at_once(client, db, account, token):
    body = invoice_body(external_id="", due_date="soon", lines=[{"description": "", "amount_cents": -1}])
    errors = post_invoice(client, token, account.id, body).get_json()["errors"]
    assert set(errors) == {"external_id", "due_date", "lines.0.description", "lines.0.amount_cents"}


@pytest.mark.parametrize("body", [[], "invoice", None])
def test_a_body_that_is_not_an_object_is_400(client, db, account, token, body):
    response = client.post(
        f"/api/v1/accounts/{account.id}/invoices",
        data=__import__("json").dumps(body),
        content_type="application/json",
        headers=bearer(token),
    )
    assert response.status_code == 400 and response.get_json()["errors"]
    assert count_rows(db, Invoice) == 0


def test_a_body_that_is_not_json_is_415_and_one_over_the_limit_413(app, client, db, account, token):
    url = f"/api/v1/accounts/{account.id}/invoices"
    assert client.post(url, data="external_id=1", headers=bearer(token)).status_code == 415
    big = invoice_body(external_id="x" * (app.config["MAX_CONTENT_LENGTH"] + 1))
    assert client.post(url, json=big, headers=bearer(token)).status_code == 413
    assert count_rows(db, Invoice) == 0


# ---------------------------------------------------------------- tokens and accounts


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer hp_not-a-real-token"}, {"Authorization": "Basic c2FtOnB3"}]
)
def test_without_a_valid_token_both_methods_are_401_and_nothing_is_stored(
    client, db, account, token, headers
):
    url = f"/api/v1/accounts/{account.id}/invoices"
    for response in (
        client.post(url, json=invoice_body(), headers=headers),
        client.get(url, headers=headers),
    ):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "invoices" not in response.get_json()
    assert count_rows(db, Invoice) == 0


def test_a_revoked_token_is_401(client, db, account, token):
    api_tokens.revoke_token(db, "quickbooks")
    db.commit()
    assert post_invoice(client, token, account.id).status_code == 401
    assert count_rows(db, Invoice) == 0


def test_unknown_and_deleted_accounts_are_404_and_nothing_is_stored(client, db, account, token):
    account.deleted_at = utcnow()
    db.commit()
    before = counts(db)
    for account_id in (account.id, account.id + 1000):
        response = post_invoice(client, token, account_id)
        assert response.status_code == 404 and response.get_json()["error"]
        listing = client.get(f"/api/v1/accounts/{account_id}/invoices", headers=bearer(token))
        assert listing.status_code == 404 and "invoices" not in listing.get_json()
    assert counts(db) == before


@pytest.mark.csrf
def test_the_invoice_api_needs_no_csrf_token(client, db, account, token):
    assert post_invoice(client, token, account.id).status_code == 201


def test_invoice_calls_share_the_token_rate_limit(settings, client, db, account, token):
    client.application.config["API_RATE_LIMIT"] = "2 per minute"
    statuses = [
        post_invoice(client, token, account.id, invoice_body(external_id=f"QB-{n}")).status_code
        for n in range(3)
    ]
    assert statuses == [201, 201, 429]
    assert client.get(f"/api/v1/accounts/{account.id}/invoices", headers=bearer(token)).status_code == 429
    assert count_rows(db, Invoice) == 2


# ---------------------------------------------------------------- listing


def test_the_list_shows_each_invoice_with_status_totals_external_id_and_pay_state(client, db, account, token):
    staff_made, _ = invoice_service.create_invoice(
        db,
        account,
        [invoice_service.Line("Weekly service", 16500)],
        date.today() - timedelta(days=1),
        "staff:1",
    )
    db.commit()
    paid_id = post_invoice(client, token, account.id).get_json()["id"]
    paid = db.get(Invoice, paid_id)
    invoice_service.mark_paid(
        db,
        [paid],
        invoice_service.StripeFacts("evt_1", "checkout.session.completed"),
        payment_intent="pi_1",
        amount=paid.total_cents,
        currency="usd",
    )
    db.commit()

    response = client.get(f"/api/v1/accounts/{account.id}/invoices", headers=bearer(token))

    assert response.status_code == 200
    body = response.get_json()
    assert body["account_id"] == account.id
    shown = {i["id"]: i for i in body["invoices"]}
    assert set(shown) == {staff_made.id, paid_id}
    assert (shown[paid_id]["status"], shown[paid_id]["paid"], shown[paid_id]["external_id"]) == (
        "paid",
        True,
        "QB-1042",
    )
    assert shown[paid_id]["paid_at"] and shown[paid_id]["total_cents"] == 20100
    assert (shown[staff_made.id]["status"], shown[staff_made.id]["paid"]) == ("overdue", False)
    assert shown[staff_made.id]["external_id"] is None and shown[staff_made.id]["total_cents"] == 16500


def test_another_accounts_invoices_are_not_listed(client, db, make_account, token):
    one, two = make_account(), make_account(service_address="9 Elm St, Phoenix, AZ")
    post_invoice(client, token, one.id)
    listing = client.get(f"/api/v1/accounts/{two.id}/invoices", headers=bearer(token)).get_json()
    assert listing == {"account_id": two.id, "invoices": []}


# ---------------------------------------------------------------- no input makes a 500


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    _containers,
    max_leaves=8,
)
FIELDS = [
    "external_id",
    "currency",
    "due_date",
    "lines",
    "lines.0",
    "lines.0.description",
    "lines.0.amount_cents",
    "lines.0.quantity",
]


def _set(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    target: Any = body
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = value


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(field=st.sampled_from(FIELDS), value=JSON_VALUES)
def test_any_value_in_any_field_gets_an_answer_not_a_500(client, account, token, field, value):
    body = copy.deepcopy(invoice_body(external_id=f"fuzz-{abs(hash(repr((field, value))))}"))
    _set(body, field, value)
    response = post_invoice(client, token, account.id, body)
    assert response.status_code in (200, 201, 400, 409), response.get_data(as_text=True)
    if response.status_code == 400:
        assert response.get_json()["errors"]
