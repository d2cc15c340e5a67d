"""Staff handoff form: create, validate, edit before sending, preview, send and re-send."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from portal import links, record
from portal.models import Account, Customer, OutboxEmail, PromiseItem, RecordEntry
from tests.conftest import count_rows, form_fields

IN_A_WEEK = (date.today() + timedelta(days=7)).isoformat()


def valid_form(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "customer_name": "Dana Reyes",
        "customer_email": "Dana@Example.com",
        "customer_phone": "+1 480 555 0134",
        "service_address": "1820 W Palm Ln, Phoenix, AZ 85007",
        "plan": "Weekly full service",
        "price": "165.00",
        "first_visit": IN_A_WEEK,
        "visit_days": ["Friday"],
        "gate_code": "Side gate, code 4412",
        "gate_lock": "Padlock",
        "safety_children": "Toddler at home: always re-latch the gate",
        "safety_pets": "",
        "equipment-0": "Salt cell check before summer",
        "equipment-1": "",
        "billing": "Card autopay",
        "custom-0-title": "Leaf net",
        "custom-0-value": "Free leaf net",
        "why_chose_us": "Previous company missed visits",
        "concerns": "",
        "contact_preference": "Text",
    }
    data.update(changes)
    return data


@pytest.fixture
def seller(staff, make_staff):
    user = make_staff("sales", name="Sam Seller")
    staff.login(user)
    return user


def post_new(client, **changes):
    fields = form_fields(client.get("/staff/handoffs/new").get_data(as_text=True))
    return client.post("/staff/handoffs/new", data={**fields, **valid_form(**changes)})


def test_valid_handoff_writes_account_items_and_one_entry_per_promise(client, db, seller):
    response = post_new(client)
    assert response.status_code == 302 and response.headers["Location"].endswith("/preview")
    account = db.scalars(select(Account)).one()
    assert account.customer.email == "dana@example.com"
    assert account.price_cents == 16500 and account.salesperson_id == seller.id
    kinds = [(item.kind, item.label, item.promised_value) for item in account.items]
    assert ("visit_day", "Visit day", "Friday") in kinds
    assert ("gate_access", "Gate code", "Side gate, code 4412") in kinds
    assert ("gate_access", "Lock", "Padlock") in kinds
    assert ("equipment", "Equipment", "Salt cell check before summer") in kinds
    assert ("custom", "Leaf net", "Free leaf net") in kinds
    assert ("price", "Price", "Weekly full service, $165.00 per month") in kinds
    assert ("start_date", "First visit", IN_A_WEEK) in kinds
    entries = record.entries_for(db, account.id)
    assert len(entries) == len(account.items)
    assert {e.item_id for e in entries} == {i.id for i in account.items}
    assert all(e.outcome == "promised" and e.note == "promised by Sam Seller" for e in entries)
    assert all(e.actor == f"staff:{seller.id}" for e in entries)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("customer_name", "", "Enter the customer&#39;s name."),
        ("customer_email", "not-an-email", "Enter a valid email address"),
        ("customer_phone", "call me", "Enter a phone number like"),
        ("service_address", "", "Enter the service address."),
        ("plan", "", "Enter the plan."),
        ("price", "lots", "Enter an amount in dollars and cents"),
        ("price", "0", "The price must be more than 0"),
        ("price", "12.345", "at most two decimal places"),
        ("first_visit", "", "Enter the first visit date."),
        ("first_visit", "2020-01-01", "cannot be in the past"),
        ("first_visit", "tomorrow", "Enter the first visit as a date"),
        ("custom-0-value", "", "Enter the promise."),
        ("gate_code", "x" * 1001, "at most 1000 characters"),
    ],
)
def test_each_invalid_field_is_refused_next_to_the_field_and_nothing_is_written(
    client, db, seller, field, value, message
):
    response = post_new(client, **{field: value})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in page
    assert 'aria-invalid="true"' in page
    assert "Salt cell check before summer" in page  # what was typed is kept
    assert count_rows(db, Account) == 0 and count_rows(db, RecordEntry) == 0
    assert count_rows(db, Customer) == 0


def test_unknown_weekday_is_refused(client, db, seller):
    response = post_new(client, visit_days=["Funday"])
    assert response.status_code == 400
    assert "weekdays" in response.get_data(as_text=True)
    assert count_rows(db, Account) == 0


def test_the_same_form_posted_twice_creates_one_handoff(client, db, seller):
    fields = form_fields(client.get("/staff/handoffs/new").get_data(as_text=True))
    first = client.post("/staff/handoffs/new", data={**fields, **valid_form()})
    second = client.post("/staff/handoffs/new", data={**fields, **valid_form()})
    assert first.status_code == second.status_code == 302
    account = db.scalars(select(Account)).one()
    assert second.headers["Location"] == f"/staff/accounts/{account.id}"


def test_add_row_without_javascript_keeps_what_was_typed(client, db, seller):
    fields = form_fields(client.get("/staff/handoffs/new").get_data(as_text=True))
    response = client.post("/staff/handoffs/new", data={**fields, **valid_form(), "add_row": "custom"})
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'name="custom-1-title"' in page and "Free leaf net" in page
    assert count_rows(db, Account) == 0


@pytest.mark.csrf
def test_post_without_csrf_token_is_refused(client, db, seller):
    fields = form_fields(client.get("/staff/handoffs/new").get_data(as_text=True))
    fields.pop("csrf_token")
    response = client.post("/staff/handoffs/new", data={**fields, **valid_form()})
    assert response.status_code == 400
    assert count_rows(db, Account) == 0


def test_technician_cannot_create_handoffs(client, db, staff, make_staff):
    staff.login(make_staff("technician"))
    assert client.get("/staff/handoffs/new").status_code == 403
    assert client.post("/staff/handoffs/new", data=valid_form()).status_code == 403
    assert count_rows(db, Account) == 0


def test_office_chooses_the_salesperson(client, db, staff, make_staff):
    seller = make_staff("sales", name="Sam")
    staff.login(make_staff("office"))
    fields = form_fields(client.get("/staff/handoffs/new").get_data(as_text=True))
    missing = client.post("/staff/handoffs/new", data={**fields, **valid_form(), "salesperson_id": "999"})
    assert missing.status_code == 400 and "Choose who made the sale." in missing.get_data(as_text=True)
    ok = client.post("/staff/handoffs/new", data={**fields, **valid_form(), "salesperson_id": seller.id})
    assert ok.status_code == 302
    assert db.scalars(select(Account)).one().salesperson_id == seller.id


def test_sales_see_only_their_own_accounts(client, db, seller, make_account):
    theirs = make_account()  # sold by another salesperson
    assert client.get(f"/staff/accounts/{theirs.id}").status_code == 404
    assert client.get(f"/staff/accounts/{theirs.id}/edit").status_code == 404
    assert client.post(f"/staff/accounts/{theirs.id}/send").status_code == 404


def test_preview_shows_exactly_what_the_customer_confirms(client, db, seller):
    post_new(client)
    account = db.scalars(select(Account)).one()
    page = client.get(f"/staff/accounts/{account.id}/preview").get_data(as_text=True)
    for item in account.items:
        assert item.label in page
    assert "Previous company missed visits" not in page  # staff-only context stays out


def _send(client, account_id):
    page = client.get(f"/staff/accounts/{account_id}").get_data(as_text=True)
    fields = form_fields(page.split(f'action="/staff/accounts/{account_id}/send"', 1)[1])
    return client.post(f"/staff/accounts/{account_id}/send", data=fields), fields


def test_sending_queues_the_welcome_email_and_records_it(client, db, seller):
    post_new(client)
    account = db.scalars(select(Account)).one()
    response, fields = _send(client, account.id)
    assert response.status_code == 302
    again = client.post(f"/staff/accounts/{account.id}/send", data=fields)  # double click
    assert again.status_code == 302
    email = db.scalars(select(OutboxEmail)).one()
    assert email.to_address == "dana@example.com" and email.status == "pending"
    assert "/welcome/t/" in email.text_body and "/welcome/t/" in email.html_body
    db.refresh(account)
    assert account.status == "link_sent" and account.link_nonce_hash
    sent = [e for e in record.entries_for(db, account.id) if e.event.startswith("link_")]
    assert [e.event for e in sent] == ["link_sent"]


def test_resending_rotates_the_link_so_the_old_one_stops_working(client, db, seller, app):
    post_new(client)
    account = db.scalars(select(Account)).one()
    _send(client, account.id)
    first_link = db.scalars(select(OutboxEmail)).one().text_body.split("/welcome/t/")[1].split()[0]
    assert links.check_token(db, first_link).status is links.LinkStatus.OK
    _send(client, account.id)
    emails = db.scalars(select(OutboxEmail).order_by(OutboxEmail.id)).all()
    second_link = emails[1].text_body.split("/welcome/t/")[1].split()[0]
    db.expire_all()
    assert links.check_token(db, first_link).status is links.LinkStatus.INVALID
    assert links.check_token(db, second_link).status is links.LinkStatus.OK
    assert "earlier link we sent no longer works" in emails[1].text_body
    assert [e.event for e in record.entries_for(db, account.id) if e.event.startswith("link_")] == [
        "link_sent",
        "link_resent",
    ]


def _edit_form(client, account_id):
    page = client.get(f"/staff/accounts/{account_id}/edit").get_data(as_text=True)
    import re

    values = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page))
    values.update(dict(re.findall(r'<input[^>]*value="([^"]*)"[^>]*name="([^"]+)"', page)[::-1]))
    selects = re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', page, re.S)
    for name, body in selects:
        chosen = re.search(r'<option selected value="([^"]*)"|<option value="([^"]*)" selected', body)
        first = re.search(r'<option[^>]*value="([^"]*)"', body)
        values[name] = (chosen.group(1) or chosen.group(2)) if chosen else first.group(1)
    for name, text in re.findall(r'<textarea[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', page, re.S):
        values[name] = text.strip()
    return values


def test_edit_before_sending_changes_withdraws_and_adds_promises(client, db, seller):
    post_new(client)
    account = db.scalars(select(Account)).one()
    form = _edit_form(client, account.id)
    rows = {form[f"rows-{i}-title"]: i for i in range(10) if f"rows-{i}-title" in form}
    form[f"rows-{rows['Gate code']}-value"] = "Side gate, code 9999"
    form[f"rows-{rows['Leaf net']}-remove"] = "remove"
    blank = max(rows.values()) + 1
    form.update(
        {
            f"rows-{blank}-kind": "equipment",
            f"rows-{blank}-title": "Pump",
            f"rows-{blank}-value": "Pump timer set to night",
        }
    )
    form["price"] = "180.00"
    response = client.post(f"/staff/accounts/{account.id}/edit", data=form)
    assert response.status_code == 302, response.get_data(as_text=True)
    db.expire_all()
    account = db.get(Account, account.id)
    values = {item.label: item.promised_value for item in account.items}
    assert values["Gate code"] == "Side gate, code 9999"
    assert "Leaf net" not in values and values["Pump"] == "Pump timer set to night"
    assert values["Price"] == "Weekly full service, $180.00 per month"
    events = [e.event for e in record.entries_for(db, account.id)]
    assert events.count("promise_edited") == 2  # the gate code and the derived price
    assert events.count("promise_withdrawn") == 1
    assert events.count("promised") == 9 + 1  # the nine of the handoff and the pump
    assert record.verify_chain(db, account.id) is None


def test_second_of_two_edits_is_refused_with_a_clear_message(client, db, seller):
    post_new(client)
    account = db.scalars(select(Account)).one()
    first = _edit_form(client, account.id)
    second = _edit_form(client, account.id)
    first["plan"] = "Bi-weekly"
    assert client.post(f"/staff/accounts/{account.id}/edit", data=first).status_code == 302
    second["plan"] = "Monthly"
    refused = client.post(f"/staff/accounts/{account.id}/edit", data=second)
    assert refused.status_code == 409
    assert "Someone else saved this account" in refused.get_data(as_text=True)
    db.expire_all()
    assert db.get(Account, account.id).plan == "Bi-weekly"


def test_edit_with_bad_input_changes_nothing(client, db, seller):
    post_new(client)
    account = db.scalars(select(Account)).one()
    before = count_rows(db, RecordEntry), [(i.id, i.promised_value) for i in account.items]
    form = _edit_form(client, account.id)
    form["customer_email"] = "broken"
    form["rows-0-value"] = ""
    response = client.post(f"/staff/accounts/{account.id}/edit", data=form)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Enter a valid email address" in page and "Enter the promise." in page
    db.expire_all()
    account = db.get(Account, account.id)
    assert (count_rows(db, RecordEntry), [(i.id, i.promised_value) for i in account.items]) == before


def test_changing_the_email_after_sending_revokes_the_old_link(client, db, seller):
    post_new(client)
    account = db.scalars(select(Account)).one()
    _send(client, account.id)
    old_link = db.scalars(select(OutboxEmail)).one().text_body.split("/welcome/t/")[1].split()[0]
    form = _edit_form(client, account.id)
    form["customer_email"] = "dana.new@example.com"
    assert client.post(f"/staff/accounts/{account.id}/edit", data=form).status_code == 302
    db.expire_all()
    assert links.check_token(db, old_link).status is links.LinkStatus.INVALID
    assert "email_changed" in [e.event for e in record.entries_for(db, account.id)]


def test_a_failure_in_the_middle_of_saving_leaves_nothing_half_written(app, client, db, seller, monkeypatch):
    from portal import handoffs

    calls = {"n": 0}
    real_append = handoffs.record.append

    def failing_append(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real_append(*args, **kwargs)

    monkeypatch.setattr(handoffs.record, "append", failing_append)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = post_new(client)
    assert response.status_code == 500 and calls["n"] == 3
    for model in (Account, Customer, PromiseItem, RecordEntry):
        assert count_rows(db, model) == 0


def test_signed_accounts_cannot_be_edited(client, db, seller):
    # (Re-sending to a signed customer sends a new service link: tests/test_service_link.py.)
    post_new(client)
    account = db.scalars(select(Account)).one()
    _send(client, account.id)
    edit = _edit_form(client, account.id)
    signed = db.get(Account, account.id)
    signed.status, signed.signed_at = "signed", signed.created_at
    db.commit()
    before = (count_rows(db, RecordEntry), count_rows(db, OutboxEmail))
    edited = client.post(f"/staff/accounts/{account.id}/edit", data={**edit, "plan": "Other"})
    assert edited.status_code == 302
    assert "signed" in client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    assert (count_rows(db, RecordEntry), count_rows(db, OutboxEmail)) == before
    db.expire_all()
    assert db.get(Account, account.id).plan == "Weekly full service"
