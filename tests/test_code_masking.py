"""Gate and alarm codes on the office's screens (issue 20): masked on the account page (its
promises and its service record), the inbox, the decision pages and the handoff and
agreed-value forms until someone presses "Show codes"; each showing is a record entry naming
who and where, and the next visit masks them again. A form that showed a code masked keeps it
when saved as shown, and a blank it cannot place is refused with nothing changed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import access_card, confirmations, record
from portal.company import company_today
from portal.models import Account, ChangeRequest, OutboxEmail, PromiseItem, RecordEntry
from tests.conftest import count_rows, form_fields
from tests.test_decisions import _ask, _sign, _staff, company  # noqa: F401 (company is a fixture)
from tests.test_handoff_form import _edit_form
from tests.test_welcome import invited, item_id  # noqa: F401 (invited is a fixture)
from tests.test_workspace import answer

CODE = "4412"  # the demo handoff's gate: "Side gate, code 4412"
NEW_CODE = "9911"
MASK = "\N{BULLET}" * 4


def shown_entries(db, account):
    db.expire_all()
    return list(
        db.scalars(
            select(RecordEntry)
            .where(RecordEntry.account_id == account.id, RecordEntry.event == "access_code_shown")
            .order_by(RecordEntry.seq)
        )
    )


def gate_value(db, account):
    db.expire_all()
    item = db.scalars(
        select(PromiseItem).where(PromiseItem.account_id == account.id, PromiseItem.kind == "gate_access")
    ).one()
    return record.ItemState(item, record.latest_entries_by_item(db, [account.id]).get(item.id)).current_value


# -- the account page ----------------------------------------------------------------------------


def test_account_page_masks_codes_until_shown_and_each_showing_is_recorded(
    client, db, make_account, staff, make_staff
):
    account = make_account()
    answer(
        db, account, "gate_access", "changed", f"Back gate, code {NEW_CODE}", f"the code is {NEW_CODE} now"
    )
    staff.login(make_staff("office", name="Olive Office"))

    page = client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    assert CODE not in page and NEW_CODE not in page  # promises table, customer's note, record
    assert f"Side gate, code {MASK}" in page and f"Back gate, code {MASK}" in page
    assert 'Show codes<span class="visually-hidden"> for Dana Reyes' in page
    assert shown_entries(db, account) == []

    shown = client.post(f"/staff/accounts/{account.id}/show-codes", data=form_fields(page))
    assert shown.status_code == 200
    body = shown.get_data(as_text=True)
    assert f"Side gate, code {CODE}" in body and f"Back gate, code {NEW_CODE}" in body
    assert "Show codes<span" not in body  # nothing left to show
    [entry] = shown_entries(db, account)
    assert entry.note == "Code shown to Olive Office (account page)" and CODE not in entry.note

    again = client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    assert CODE not in again and NEW_CODE not in again  # shown once, not remembered
    assert "Code shown to Olive Office (account page)" in again
    assert record.verify_chain(db, account.id) is None


def test_the_account_page_after_a_showing_still_sends_its_other_forms(
    client, db, make_account, staff, make_staff
):
    """The page that answers the showing is a POST's: its own forms start fresh, with ids."""
    account = make_account()
    staff.login(make_staff("office"))
    page = client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    body = client.post(f"/staff/accounts/{account.id}/show-codes", data=form_fields(page)).get_data(
        as_text=True
    )
    note_form = body[body.index(f'action="/staff/accounts/{account.id}/notes"') :]
    fields = form_fields(note_form)
    assert len(fields.get("form_id", "")) >= 16
    response = client.post(
        f"/staff/accounts/{account.id}/notes", data={**fields, "item": "0", "note": "Called about the gate"}
    )
    assert response.status_code == 302
    db.expire_all()
    assert [e.note for e in record.entries_for(db, account.id) if e.event == "note"] == [
        "Called about the gate"
    ]


@pytest.mark.csrf
def test_show_codes_without_its_csrf_token_is_refused_and_records_nothing(
    client, db, make_account, staff, make_staff
):
    account = make_account()
    staff.login(make_staff("office"))
    before = count_rows(db, RecordEntry)
    response = client.post(f"/staff/accounts/{account.id}/show-codes", data={})
    assert response.status_code == 400
    assert CODE not in response.get_data(as_text=True)
    assert count_rows(db, RecordEntry) == before


def test_show_codes_follows_the_access_rule(client, db, make_account, staff, make_staff):
    owner, other = make_staff("sales"), make_staff("sales")
    account = make_account(salesperson=owner)
    before = count_rows(db, RecordEntry)
    staff.login(other)  # another salesperson's account: not found
    assert client.post(f"/staff/accounts/{account.id}/show-codes").status_code == 404
    assert client.post(f"/staff/accounts/{account.id}/edit/show-codes").status_code == 404
    staff.logout()
    staff.login(make_staff("technician"))  # technicians read codes on the brief, not here
    assert client.post(f"/staff/accounts/{account.id}/show-codes").status_code == 403
    assert client.post(f"/staff/differences/{account.items[0].id}/resolve/show-codes").status_code == 403
    assert count_rows(db, RecordEntry) == before


# -- the inbox and the decision pages ------------------------------------------------------------


def test_resolve_page_masks_codes_and_says_when_hidden_codes_differ(
    client, db, make_account, staff, make_staff
):
    account = make_account()
    gate = answer(db, account, "gate_access", "changed", f"Side gate, code {NEW_CODE}", "new code")
    staff.login(make_staff("office", name="Olive Office"))

    inbox = client.get("/staff/differences").get_data(as_text=True)
    assert CODE not in inbox and NEW_CODE not in inbox
    page = client.get(f"/staff/differences/{gate.id}/resolve").get_data(as_text=True)
    assert CODE not in page and NEW_CODE not in page
    assert "The hidden codes differ" in page  # the masked words are the same; the codes are not

    shown = client.post(
        f"/staff/differences/{gate.id}/resolve/show-codes?back=/staff/differences", data=form_fields(page)
    )
    body = shown.get_data(as_text=True)
    assert shown.status_code == 200 and CODE in body and NEW_CODE in body
    assert "The hidden codes differ" not in body
    [entry] = shown_entries(db, account)
    assert entry.note == "Code shown to Olive Office (difference)"

    # The decision form that came back with the codes still decides.
    decision = form_fields(body[body.index(f'action="/staff/differences/{gate.id}/resolve"') :])
    response = client.post(f"/staff/differences/{gate.id}/resolve", data={**decision, "action": "accept"})
    assert response.status_code == 302
    assert gate_value(db, account) == f"Side gate, code {NEW_CODE}"


@pytest.fixture
def gate_change(app, client, db, invited, make_staff, company):
    """Dana signed, then asked for a new gate code; Olive of the office is signed in."""
    account, path = invited
    _sign(client, account, path)
    _ask(client, item_id(account, "gate_access"), f"Back gate, code {NEW_CODE}")
    change = db.scalars(select(ChangeRequest)).one()
    return account, change, _staff(app, db, make_staff("office", name="Olive Office"))


def test_change_request_page_keeps_a_masked_code_when_accepted_as_shown(db, gate_change):
    account, change, office = gate_change
    # Her card has the side gate sales promised (the helper that signed posted no card).
    access_card.save(db, account, access_card.prefill(account), company_today(), actor="customer", how="test")
    db.commit()
    page = office.get(f"/staff/changes/{change.id}").get_data(as_text=True)
    assert CODE not in page and NEW_CODE not in page
    assert f'value="Back gate, code {MASK}"' in page  # the agreed-value box, masked
    fields = form_fields(page[page.index(f'action="/staff/changes/{change.id}"') :])
    accepted = office.post(
        f"/staff/changes/{change.id}",
        data={**fields, "action": "accept", "value": f"Back gate (left of the garage), code {MASK}"},
    )
    assert accepted.status_code == 302
    assert gate_value(db, account) == f"Back gate (left of the garage), code {NEW_CODE}"
    assert shown_entries(db, account) == []  # kept without anyone seeing it
    # The access card follows the agreed gate: the brief shows one code, not two.
    card = access_card.card_on(db, db.get(Account, account.id), company_today()).card
    assert card.gates == (access_card.Gate("Back gate (left of the garage)", NEW_CODE),)


def test_change_request_page_shows_the_code_on_request(db, gate_change):
    account, change, office = gate_change
    page = office.get(f"/staff/changes/{change.id}").get_data(as_text=True)
    body = office.post(f"/staff/changes/{change.id}/show-codes", data=form_fields(page)).get_data(
        as_text=True
    )
    assert f'value="Back gate, code {NEW_CODE}"' in body and f"Side gate, code {CODE}" in body
    [entry] = shown_entries(db, account)
    assert entry.note == "Code shown to Olive Office (change request)"


# -- the forms that edit a value with a code -----------------------------------------------------


def test_agreed_value_form_keeps_a_masked_code_and_refuses_a_blank_it_cannot_place(
    app, client, db, invited, make_staff, company
):
    account, path = invited
    _sign(client, account, path)
    gate = item_id(account, "gate_access")
    office = _staff(app, db, make_staff("office"))
    url = f"/staff/accounts/{account.id}/agreed/{gate}"
    page = office.get(url).get_data(as_text=True)
    assert CODE not in page and f'value="Side gate, code {MASK}"' in page
    fields = form_fields(page)

    before = count_rows(db, RecordEntry)
    refused = office.post(
        url, data={**fields, "value": f"Side gate, code {MASK} then {MASK}", "note": "Moved"}
    )
    assert refused.status_code == 400
    assert "Type the code in full" in refused.get_data(as_text=True)
    assert CODE not in refused.get_data(as_text=True)  # the form comes back masked, as typed
    assert count_rows(db, RecordEntry) == before and gate_value(db, account) == f"Side gate, code {CODE}"

    saved = office.post(url, data={**fields, "value": f"Side gate by the bins, code {MASK}", "note": "Moved"})
    assert saved.status_code == 302
    assert gate_value(db, account) == f"Side gate by the bins, code {CODE}"


def test_handoff_form_masks_codes_keeps_them_when_saved_and_shows_them_on_request(
    client, db, staff, make_staff, make_account
):
    seller = make_staff("sales", name="Sam Seller")
    account = make_account(salesperson=seller)
    staff.login(seller)
    form = _edit_form(client, account.id)
    page = client.get(f"/staff/accounts/{account.id}/edit").get_data(as_text=True)
    assert CODE not in page
    gate_row = next(k for k, v in form.items() if v == f"Side gate, code {MASK}")

    # Saved as shown: nothing about the gate changed.
    events_before = [e.event for e in record.entries_for(db, account.id)]
    assert client.post(f"/staff/accounts/{account.id}/edit", data=form).status_code == 302
    db.expire_all()
    assert gate_value(db, account) == f"Side gate, code {CODE}"
    assert [e.event for e in record.entries_for(db, account.id)].count(
        "promise_edited"
    ) == events_before.count("promise_edited")

    # A blank with no code behind it is refused, with nothing changed.
    form = _edit_form(client, account.id)
    before = count_rows(db, RecordEntry)
    form[gate_row] = f"Side gate, code {MASK}, alarm {MASK}"
    refused = client.post(f"/staff/accounts/{account.id}/edit", data=form)
    assert refused.status_code == 400 and "Type the code in full" in refused.get_data(as_text=True)
    assert count_rows(db, RecordEntry) == before and gate_value(db, account) == f"Side gate, code {CODE}"

    # Shown on request, recorded, and editable in clear.
    page = client.get(f"/staff/accounts/{account.id}/edit").get_data(as_text=True)
    body = client.post(f"/staff/accounts/{account.id}/edit/show-codes", data=form_fields(page)).get_data(
        as_text=True
    )
    assert f'value="Side gate, code {CODE}"' in body
    assert f'action="/staff/accounts/{account.id}/edit"' in body  # the form still saves to the edit page
    [entry] = shown_entries(db, account)
    assert entry.note == "Code shown to Sam Seller (handoff form)"


def test_a_masked_blank_cannot_pull_another_accounts_code(client, db, staff, make_staff, make_account):
    """A row naming another account's item is not that item: its blank is refused, not filled."""
    seller = make_staff("sales")
    mine = make_account(salesperson=seller)
    theirs = make_account(customer_email="someone@example.com")
    theirs_gate = next(i for i in theirs.items if i.kind == "gate_access")
    staff.login(seller)
    form = _edit_form(client, mine.id)
    gate_row = next(k for k, v in form.items() if v == f"Side gate, code {MASK}")
    form[gate_row.replace("-value", "-item_id")] = str(theirs_gate.id)
    before = count_rows(db, RecordEntry)
    response = client.post(f"/staff/accounts/{mine.id}/edit", data=form)
    assert response.status_code in (400, 409)
    assert count_rows(db, RecordEntry) == before
    db.expire_all()
    assert db.get(PromiseItem, theirs_gate.id).promised_value == f"Side gate, code {CODE}"


# -- the record's sentences ----------------------------------------------------------------------


def test_record_dates_are_not_taken_for_codes(client, db, make_account, staff, make_staff):
    """The access card's record line names a date and "alarm code": the date stays whole."""
    account = make_account()
    effective = account.first_visit + timedelta(days=7)
    card = access_card.Card(gates=(access_card.Gate("Side gate", NEW_CODE),), alarm_code="2580")
    access_card.save(db, account, card, effective, actor="customer", how="updated from My service")
    db.commit()
    staff.login(make_staff("office"))
    page = client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    story = page[page.index("Service record") :]
    assert f"from {effective.isoformat()}" in story and "alarm code" in story
    assert NEW_CODE not in page and "2580" not in page


def test_a_photo_caption_with_a_code_is_masked_on_staff_pages_until_shown(
    app, client, db, make_account, staff, make_staff
):
    from portal import photos
    from portal.storage import get_storage
    from tests.test_photos import png_bytes

    account = make_account()
    with app.app_context():
        photos.add(
            db, get_storage(), account, photos.clean(png_bytes()), f"Keypad by the side gate, code {NEW_CODE}"
        )
        db.commit()
    staff.login(make_staff("office"))
    page = client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    assert NEW_CODE not in page and f"Keypad by the side gate, code {MASK}" in page
    brief = client.get(f"/staff/accounts/{account.id}/brief").get_data(as_text=True)
    assert NEW_CODE not in brief
    day = client.get(f"/staff/day?date={account.first_visit.isoformat()}").get_data(as_text=True)
    assert NEW_CODE not in day and f"Keypad by the side gate, code {MASK}" in day
    shown = client.post(f"/staff/accounts/{account.id}/show-codes", data=form_fields(page)).get_data(
        as_text=True
    )
    assert f"Keypad by the side gate, code {NEW_CODE}" in shown


def test_codes_in_groups_and_in_free_words_are_masked_until_shown(
    client, db, make_account, staff, make_staff
):
    """ "77-99" and "24 68" are codes too; the customer's goal, the sale's notes and the notes for
    the technician are masked like the promises."""
    account = make_account(concerns="Last company left gate code 5566 on a sticky note")
    account.customer_goal = "Re-latch the side gate, keypad 24 68 works"
    db.commit()
    answer(db, account, "gate_access", "changed", "Back gate, code 77-99", "new code")
    confirmations.record_step_event(db, account, "technician_note", confirmed="Side door entry is 3690")
    db.commit()
    staff.login(make_staff("office"))
    for path in (
        f"/staff/accounts/{account.id}",
        f"/staff/accounts/{account.id}/brief",
        "/staff/differences",
    ):
        page = client.get(path).get_data(as_text=True)
        for code in ("77-99", "5566", "24 68", "3690"):
            assert code not in page, (path, code)
    page = client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    shown = client.post(f"/staff/accounts/{account.id}/show-codes", data=form_fields(page)).get_data(
        as_text=True
    )
    for code in ("77-99", "5566", "24 68", "3690"):
        assert code in shown, code


def test_the_sales_notes_keep_their_code_when_the_handoff_is_saved_as_shown(
    client, db, staff, make_staff, make_account
):
    seller = make_staff("sales")
    account = make_account(salesperson=seller, concerns="Last company left gate code 5566 on a sticky note")
    staff.login(seller)
    form = _edit_form(client, account.id)
    assert form["concerns"] == f"Last company left gate code {MASK} on a sticky note"
    form["concerns"] = f"Previous company left gate code {MASK} on a sticky note"
    assert client.post(f"/staff/accounts/{account.id}/edit", data=form).status_code == 302
    db.expire_all()
    assert db.get(Account, account.id).concerns == "Previous company left gate code 5566 on a sticky note"


def test_the_offices_change_request_email_names_the_gate_with_its_code_blanked(db, gate_change):
    account, change, office = gate_change
    db.expire_all()
    [email] = db.scalars(select(OutboxEmail).where(OutboxEmail.kind == "change_request")).all()
    for body in (email.text_body, email.html_body):
        assert f"now: Side gate, code {MASK}" in body
        assert CODE not in body and NEW_CODE not in body and "behind the link" not in body
