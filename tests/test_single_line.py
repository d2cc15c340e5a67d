"""Single-line fields (names, phones, addresses, plan, labels, email addresses) refuse line
breaks and other control characters at every door: the staff form, the API, the CSV import and
the customer's own forms. Each refusal says why and stores nothing."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from portal.models import Account, CompanySettings, Customer, OutboxEmail, PromiseItem, RecordEntry
from tests.conftest import count_rows, form_fields, sign_as_shown
from tests.test_api import handoff_body, post_handoff, sales, token  # noqa: F401 (fixtures)
from tests.test_handoff_form import post_new, seller  # noqa: F401 (fixture)
from tests.test_import import row as csv_row
from tests.test_import import run_import, write_csv
from tests.test_welcome import answer_all, complete, invited, open_link  # noqa: F401 (fixture)

TABLES = (Customer, Account, PromiseItem, RecordEntry, OutboxEmail)
# Line feed, carriage return, tab, escape, and the Unicode line separator.
BREAKS = ["\n", "\r", "\t", "\x1b", "\u2028"]
ONE_LINE = "must be one line, without line breaks or control characters"


def counts(db):
    return {model.__tablename__: count_rows(db, model) for model in TABLES}


@pytest.mark.parametrize("char", BREAKS)
def test_api_refuses_a_name_with_a_line_break(client, db, sales, token, char):
    before = counts(db)
    body = handoff_body(customer={"name": f"Dana{char}Reyes", "email": "dana@example.com"})
    response = post_handoff(client, token, body)
    assert response.status_code == 400
    assert response.get_json()["errors"]["customer.name"] == f"The customer's name {ONE_LINE}."
    assert counts(db) == before


def test_api_refuses_nul_in_a_name(client, db, sales, token):
    before = counts(db)
    body = handoff_body(customer={"name": "Dana\x00Reyes", "email": "dana@example.com"})
    response = post_handoff(client, token, body)
    assert response.status_code == 400 and response.get_json()["errors"]
    assert counts(db) == before


@pytest.mark.parametrize("field", ["phone", "email"])
def test_api_refuses_line_breaks_in_the_customers_phone_and_email(client, db, sales, token, field):
    customer = {"name": "Dana Reyes", "email": "dana@example.com", "phone": "+1 480 555 0134"}
    customer[field] = (
        customer[field].replace(" ", "\r\n", 1)
        if field == "phone"
        else "dana@example.com\r\nBcc: x@example.com"
    )
    before = counts(db)
    response = post_handoff(client, token, handoff_body(customer=customer))
    assert response.status_code == 400
    assert ONE_LINE in response.get_json()["errors"][f"customer.{field}"]
    assert counts(db) == before


@pytest.mark.parametrize(
    "path, change",
    [
        ("service_address", {"service_address": "1820 W Palm Ln\nPhoenix"}),
        ("plan", {"plan": "Weekly\rfull service"}),
        ("promises.0.label", {"promises": [{"kind": "custom", "label": "Leaf\nnet", "value": "Free"}]}),
    ],
)
def test_api_refuses_line_breaks_in_other_single_line_fields(client, db, sales, token, path, change):
    before = counts(db)
    response = post_handoff(client, token, handoff_body(**change))
    assert response.status_code == 400 and ONE_LINE in response.get_json()["errors"][path]
    assert counts(db) == before


def test_multi_line_fields_keep_their_lines_and_store_browser_line_ends_as_lf(client, db, sales, token):
    body = handoff_body(
        why_chose_us="Missed visits\r\nBad chemistry",
        concerns="Price\rdogs",
        promises=[{"kind": "safety", "value": "Toddler:\r\nre-latch the gate"}],
    )
    assert post_handoff(client, token, body).status_code == 201
    account = db.scalars(select(Account)).one()
    assert (account.why_chose_us, account.concerns) == ("Missed visits\nBad chemistry", "Price\ndogs")
    assert [i.promised_value for i in account.items if i.kind == "safety"] == ["Toddler:\nre-latch the gate"]


@pytest.mark.parametrize("char", BREAKS)
def test_staff_form_refuses_a_name_with_a_line_break_next_to_the_field(client, db, seller, char):
    before = counts(db)
    response = post_new(client, customer_name=f"Dana{char}Reyes")
    assert response.status_code == 400
    assert f"The customer&#39;s name {ONE_LINE}." in response.get_data(as_text=True)
    assert counts(db) == before


def test_staff_form_refuses_a_phone_with_a_line_break(client, db, seller):
    before = counts(db)
    response = post_new(client, customer_phone="+1 480\n555 0134")
    assert response.status_code == 400 and f"The phone number {ONE_LINE}." in response.get_data(as_text=True)
    assert counts(db) == before


@pytest.mark.parametrize("char", BREAKS)
def test_csv_import_refuses_a_name_with_a_line_break(runner, db, sales, tmp_path, char):
    before = counts(db)
    path = write_csv(tmp_path / "handoffs.csv", [csv_row(1), csv_row(2, customer_name=f"Dana{char}Reyes")])
    result = run_import(runner, path)
    assert result.exit_code == 1
    assert f"customer_name: The customer's name {ONE_LINE}." in result.stderr
    assert counts(db) == before


def test_csv_import_refuses_line_breaks_in_phone_and_address(runner, db, sales, tmp_path):
    before = counts(db)
    path = write_csv(
        tmp_path / "handoffs.csv",
        [csv_row(1, customer_phone="+1 480\r555 0134", service_address="1 Palm Ln\nPhoenix")],
    )
    result = run_import(runner, path)
    assert result.exit_code == 1
    assert f"customer_phone: The phone number {ONE_LINE}." in result.stderr
    assert f"service_address: The service address {ONE_LINE}." in result.stderr
    assert counts(db) == before


# --- The customer's own forms ------------------------------------------------------------


def test_signing_refuses_a_name_with_a_line_break(client, db, invited):
    account, path = invited
    open_link(client, path)
    complete(client, stop_before="/step/review")
    html = client.get("/welcome/step/review").get_data(as_text=True)
    before = counts(db)
    response = client.post("/welcome/step/review", data=answer_all(html, full_name="Dana\r\nReyes"))
    assert response.status_code == 400
    assert f"Your name {ONE_LINE}." in response.get_data(as_text=True)
    assert counts(db) == before
    db.expire_all()
    assert db.get(Account, account.id).signed_at is None


@pytest.mark.parametrize(
    "field, value, what",
    [
        ("phone", "+1 480\n555 0134", "The phone number"),
        ("preferred_times", "evenings\r\nBcc: x", "The times"),
    ],
)
def test_contact_step_refuses_line_breaks(client, db, invited, field, value, what):
    _, path = invited
    open_link(client, path)
    location = complete(client, stop_before="/step/contact")
    html = client.get(location).get_data(as_text=True)
    before = counts(db)
    data = {"channels": ["email", "call"], "phone": "+1 480 555 0134", field: value}
    response = client.post(location, data=answer_all(html, **data))
    assert response.status_code == 400 and f"{what} {ONE_LINE}." in response.get_data(as_text=True)
    assert counts(db) == before


def test_a_gate_correction_refuses_a_line_break(client, db, invited):
    account, path = invited
    open_link(client, path)
    location = complete(client, stop_before="/step/access")
    html = client.get(location).get_data(as_text=True)
    gate = next(item.id for item in account.items if item.kind == "gate_access")
    before = counts(db)
    response = client.post(
        location,
        data=answer_all(html, **{f"i{gate}_answer": "no", f"i{gate}_value": "Code 1234\nand the side door"}),
    )
    assert response.status_code == 400 and f"The correction {ONE_LINE}." in response.get_data(as_text=True)
    assert counts(db) == before


def test_new_link_request_refuses_a_line_break_in_the_address(client, db, invited):
    before = counts(db)
    fields = form_fields(client.get("/welcome/session-ended").get_data(as_text=True))
    response = client.post("/welcome/new-link", data={**fields, "email": "dana@example.com\nBcc: x@y.z"})
    assert response.status_code == 400
    assert f"The email address {ONE_LINE}." in response.get_data(as_text=True)
    assert counts(db) == before


# --- Company settings -------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("name", "Blue\r\nLagoon", f"The company name {ONE_LINE}."),
        ("phone", "+1 480\n555", f"The phone number {ONE_LINE}."),
        ("office_email", "office@example.com\nBcc: x@example.com", f"The email address {ONE_LINE}."),
    ],
)
def test_company_settings_refuse_line_breaks(client, db, staff, make_staff, field, value, message):
    staff.login(make_staff("admin"))
    data = {"name": "Blue Lagoon", "brand_color": "#123456", "currency": "USD", field: value}
    response = client.post("/staff/settings", data=data)
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    assert count_rows(db, CompanySettings) == 0


def test_a_well_formed_handoff_still_goes_through(client, db, sales, token):
    """Control: the doors still take a good handoff (the refusals above are not blanket)."""
    first = (date.today() + timedelta(days=3)).isoformat()
    assert post_handoff(client, token, handoff_body(first_visit=first)).status_code == 201


def test_an_alert_about_a_name_saved_with_a_line_break_earlier_is_still_delivered(app, db, make_account):
    """Names saved before these checks may hold a line break; the alert's subject is one line."""
    from portal.confirmations import Answer, record_answers
    from portal.onboarding import send_welcome
    from portal.outbox import deliver_pending

    app.config["MAIL_BACKEND"] = "file"
    account = make_account(customer_name="Dana\r\nBcc: everyone@example.com")
    send_welcome(db, account, "system")
    item = next(i for i in account.items if i.kind == "equipment")
    record_answers(db, account, [Answer(item, "disputed", None, "not what I was told")])
    db.commit()
    sign_as_shown(db, account, "Dana Reyes")
    db.commit()
    report = deliver_pending(db)
    assert report.deliveries and {d.result for d in report.deliveries} == {"sent"}
    alert = db.scalars(select(OutboxEmail).where(OutboxEmail.kind == "differences_alert")).first()
    assert alert is not None and alert.status == "sent"
    assert alert.subject == "Dana Bcc: everyone@example.com changed 1 promise"
