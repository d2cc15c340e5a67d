"""The homeowner's access card (issue 20, part A): prefilled from the gate promises, confirmed in
the access step, kept current from My service from an effective date, versioned in the record;
codes masked on staff screens until shown (each showing a record entry), never in emails or
CSV exports (unless an admin asks); technicians' flags reach the record, the inbox and the
customer."""

from __future__ import annotations

import csv
import html as html_lib
import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import access_card, follow_ups
from portal.company import company_today
from portal.handoffs import Promise
from portal.models import AccessCardVersion, Account, OutboxEmail, RecordEntry
from portal.onboarding import send_welcome
from portal.outbox import deliver_pending
from tests.conftest import count_rows
from tests.smtp_server import SmtpServer, smtp_server  # noqa: F401  (the fixture)
from tests.test_welcome import answer_all, complete, open_link, token_of

PROMISED_CODE = "4412"  # demo_handoff: "Side gate, code 4412"
NEW_CODE = "9911"
ALARM_CODE = "2580"


@pytest.fixture
def customer(client, db, make_account):
    """An account whose customer has opened the welcome link in `client`."""
    account = make_account(first_visit=company_today() + timedelta(days=3))
    sent = send_welcome(db, account, "system")
    db.commit()
    open_link(client, "/welcome/t/" + token_of(sent.url))
    return account


def card_inputs(page: str) -> dict[str, str]:
    """The access card's text inputs as the page fills them (what a browser would post back)."""
    found = {}
    for tag in re.findall(r"<input [^>]*>", page):
        name = re.search(r'name="([^"]+)"', tag)
        if name and "card-" in name.group(1) and 'type="checkbox"' not in tag and 'type="hidden"' not in tag:
            value = re.search(r'value="([^"]*)"', tag)
            found[name.group(1)] = html_lib.unescape(value.group(1)) if value else ""
    return found


def entries(db, account, event):
    db.expire_all()
    return list(
        db.scalars(
            select(RecordEntry)
            .where(RecordEntry.account_id == account.id, RecordEntry.event == event)
            .order_by(RecordEntry.seq)
        )
    )


def post_access_step(client, **card):
    page = client.get("/welcome/step/access").get_data(as_text=True)
    data = {**answer_all(page), **card_inputs(page), **card}
    return client.post("/welcome/step/access", data=data)


def sign_up(client, **card):
    """Walk the steps (the access step with `card` over the prefilled card) and sign."""
    complete(client, stop_before="/step/access")
    response = post_access_step(client, **card)
    assert response.status_code == 302, response.get_data(as_text=True)
    complete(client)


def update_card(client, effective, **card):
    page = client.get("/welcome/service").get_data(as_text=True)
    start = page.index('action="/welcome/service/access-card"')
    form = page[start : page.index("</form>", start)]
    data = {
        **dict(
            re.findall(r'<input[^>]*name="(card-update-[^"]+)"[^>]*type="hidden"[^>]*value="([^"]*)"', form)
        ),
        **card_inputs(form),
        "card-update-effective": effective.isoformat(),
        **card,
    }
    return client.post("/welcome/service/access-card", data=data)


# -- prefill and the access step -----------------------------------------------------------------


def test_the_card_is_prefilled_from_the_gate_promise(db, make_account):
    account = make_account()
    card = access_card.prefill(account)
    assert card.gates == (access_card.Gate("Side gate", PROMISED_CODE),)
    assert card.dogs == () and not card.text_before


def test_the_access_step_shows_the_prefilled_card_to_its_customer(client, customer):
    page = client.get("/welcome/step/access").get_data(as_text=True)
    fields = card_inputs(page)
    assert fields["card-gates-0-location"] == "Side gate"
    assert fields["card-gates-0-code"] == PROMISED_CODE


def test_confirming_the_access_step_saves_version_1_and_a_record_entry_without_the_code(client, db, customer):
    complete(client, stop_before="/step/access")
    response = post_access_step(
        client,
        **{
            "card-dogs-0-name": "Rex",
            "card-dogs-0-size": "large",
            "card-dogs-0-temperament": "nervous",
            "card-alarm_code": ALARM_CODE,
            "card-text_before": "y",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    saved = access_card.versions(db, customer.id)
    assert [(v.version, v.effective_date, v.actor) for v in saved] == [(1, company_today(), "customer")]
    card = access_card.Card.from_json(saved[0].card)
    assert card.gates == (access_card.Gate("Side gate", PROMISED_CODE),)
    assert card.dogs == (access_card.Dog("Rex", "large", "nervous", False),)
    assert card.alarm_code == ALARM_CODE and card.text_before
    (entry,) = entries(db, customer, "access_card")
    assert entry.actor == "customer" and entry.details["version"] == 1
    assert "dogs" in entry.details["changed"] and "alarm code" in entry.details["changed"]
    for text in (entry.note, str(entry.details), entry.confirmed_value or "", entry.promised_value or ""):
        assert PROMISED_CODE not in text and ALARM_CODE not in text


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("card-gates-0-code", "44<12>", "Use digits, letters, # or * (up to 20)."),
        ("card-gates-0-location", "", "Say which gate this code opens."),
        ("card-dogs-0-size", "huge", "Choose a size from the list."),
        ("card-dogs-0-temperament", "barks", "Give the dog's name."),
        ("card-parking", "Street\r\nBcc: x", "line"),
    ],
)
def test_bad_card_input_in_the_access_step_is_refused_with_nothing_changed(
    client, db, customer, field, value, message
):
    complete(client, stop_before="/step/access")
    before = count_rows(db, RecordEntry), count_rows(db, AccessCardVersion)
    response = post_access_step(client, **{field: value})
    assert response.status_code == 400
    assert message in html_lib.unescape(response.get_data(as_text=True))
    assert (count_rows(db, RecordEntry), count_rows(db, AccessCardVersion)) == before


# -- the lighter access step ---------------------------------------------------------------------


def test_the_access_step_has_one_notes_box_and_corrections_only_behind_needs_correcting(client, customer):
    complete(client, stop_before="/step/access")
    page = client.get("/welcome/step/access").get_data(as_text=True)
    assert page.count("<textarea") == 2  # the step's notes and the card's alarm notes
    assert 'name="technician_note"' in page
    assert not re.search(r'name="i\d+_comment"', page)
    # Each correction sits in its answer's "if different" box, which the step's CSS hides
    # until "That needs correcting" is ticked.
    assert 'class="light-answers"' in page
    assert page.count('class="if-different"') == 2


def test_a_correction_still_reaches_the_office(client, db, customer):
    complete(client, stop_before="/step/access")
    gate = next(item for item in customer.items if item.kind == "gate_access")
    response = post_access_step(
        client, **{f"i{gate.id}_answer": "no", f"i{gate.id}_value": "Back gate, code 1357"}
    )
    assert response.status_code == 302
    db.expire_all()
    latest = db.scalars(
        select(RecordEntry).where(RecordEntry.item_id == gate.id).order_by(RecordEntry.seq.desc())
    ).first()
    assert latest is not None and latest.outcome == "changed"
    assert latest.confirmed_value == "Back gate, code 1357"


def test_needs_correcting_without_a_correction_is_refused(client, db, customer):
    complete(client, stop_before="/step/access")
    gate = next(item for item in customer.items if item.kind == "gate_access")
    before = count_rows(db, RecordEntry), count_rows(db, AccessCardVersion)
    response = post_access_step(client, **{f"i{gate.id}_answer": "no"})
    assert response.status_code == 400
    assert "Tell us what is correct." in response.get_data(as_text=True)
    assert (count_rows(db, RecordEntry), count_rows(db, AccessCardVersion)) == before


# -- a gate corrected in its answer -------------------------------------------------------------


def correct_gate(client, account, value, **card):
    """The access step with the gate promise marked "That needs correcting" and `value` typed."""
    gate = next(item for item in account.items if item.kind == "gate_access")
    return post_access_step(client, **{f"i{gate.id}_answer": "no", f"i{gate.id}_value": value, **card})


def saved_gates(db, account):
    db.expire_all()
    return access_card.Card.from_json(access_card.versions(db, account.id)[-1].card).gates


def brief_card(client, account, show=False):
    """The brief's access card as a technician sees it, masked or after "Show code"."""
    if show:
        body = client.post(
            f"/staff/accounts/{account.id}/brief/show-codes", data=_csrf(client, account)
        ).get_data(as_text=True)
    else:
        body = client.get(f"/staff/accounts/{account.id}/brief").get_data(as_text=True)
    return body[body.index('id="access-card-heading"') : body.index('id="service"')]


def test_a_corrected_gate_reaches_the_card_and_the_brief_shows_its_code_only_after_show_code(
    client, db, customer, staff, make_staff
):
    complete(client, stop_before="/step/access")
    response = correct_gate(client, customer, f"Back gate, code {NEW_CODE}")
    assert response.status_code == 302, response.get_data(as_text=True)
    assert saved_gates(db, customer) == (access_card.Gate("Back gate", NEW_CODE),)
    complete(client)

    staff.login(make_staff("technician", name="Tom Tech"))
    masked_card = brief_card(client, customer)
    assert "Back gate" in masked_card and "••••" in masked_card
    assert NEW_CODE not in masked_card and PROMISED_CODE not in masked_card
    shown = brief_card(client, customer, show=True)
    assert NEW_CODE in shown and PROMISED_CODE not in shown
    (reveal,) = entries(db, customer, "access_code_shown")
    assert reveal.note.startswith("Code shown to Tom Tech") and NEW_CODE not in reveal.note


def test_the_gate_the_customer_edits_on_the_card_wins_over_the_correction(client, db, customer):
    complete(client, stop_before="/step/access")
    response = correct_gate(client, customer, f"Back gate, code {NEW_CODE}", **{"card-gates-0-code": "5555"})
    assert response.status_code == 302, response.get_data(as_text=True)
    assert saved_gates(db, customer) == (access_card.Gate("Side gate", "5555"),)


def test_a_gate_the_customer_takes_off_the_card_stays_off(client, db, customer):
    complete(client, stop_before="/step/access")
    response = correct_gate(
        client,
        customer,
        f"Back gate, code {NEW_CODE}",
        **{"card-gates-0-location": "", "card-gates-0-code": ""},
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    assert saved_gates(db, customer) == ()


def test_a_confirmed_gate_keeps_the_prefill_beside_a_corrected_one(client, db, make_account):
    account = make_account(
        first_visit=company_today() + timedelta(days=3),
        promises=[
            Promise("visit_day", "Friday"),
            Promise("gate_access", "Side gate, code 4412"),
            Promise("gate_access", "Pool gate, code 2468"),
        ],
    )
    sent = send_welcome(db, account, "system")
    db.commit()
    open_link(client, "/welcome/t/" + token_of(sent.url))
    complete(client, stop_before="/step/access")
    side, pool = (item for item in account.items if item.kind == "gate_access")
    response = post_access_step(
        client,
        **{
            f"i{side.id}_answer": "yes",
            f"i{pool.id}_answer": "no",
            f"i{pool.id}_value": "Pool gate, code 1357",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    assert saved_gates(db, account) == (
        access_card.Gate("Side gate", PROMISED_CODE),
        access_card.Gate("Pool gate", "1357"),
    )


def test_coming_back_to_the_step_a_second_correction_reaches_the_card(client, db, customer):
    complete(client, stop_before="/step/access")
    assert correct_gate(client, customer, "Back gate, code 7781").status_code == 302
    # The form now shows the corrected gate: a mistyped code put right in the answer follows.
    response = correct_gate(client, customer, f"Back gate, code {NEW_CODE}")
    assert response.status_code == 302, response.get_data(as_text=True)
    assert saved_gates(db, customer) == (access_card.Gate("Back gate", NEW_CODE),)


def test_coming_back_to_the_step_keeps_the_gate_the_customer_typed(client, db, customer):
    complete(client, stop_before="/step/access")
    typed = correct_gate(client, customer, "Back gate, code 7781", **{"card-gates-0-code": "5555"})
    assert typed.status_code == 302
    # Through the step again, nothing touched: the card they typed is not overwritten.
    again = post_access_step(client)
    assert again.status_code == 302, again.get_data(as_text=True)
    assert [v.version for v in access_card.versions(db, customer.id)] == [1, 2]
    assert saved_gates(db, customer) == (access_card.Gate("Side gate", "5555"),)


def test_a_refused_correction_changes_neither_the_answers_nor_the_card(client, db, customer):
    complete(client, stop_before="/step/access")
    before = count_rows(db, RecordEntry), count_rows(db, AccessCardVersion)
    response = correct_gate(client, customer, f"Back gate, code {NEW_CODE}", **{"card-gates-1-code": "12<3"})
    assert response.status_code == 400
    assert "Use digits, letters, # or * (up to 20)." in html_lib.unescape(response.get_data(as_text=True))
    assert (count_rows(db, RecordEntry), count_rows(db, AccessCardVersion)) == before


# -- My service: updates from a date, and the brief on each side of it ---------------------------


def test_an_update_from_my_service_takes_effect_on_its_date_on_the_brief_and_day_list(
    client, db, customer, staff, make_staff
):
    sign_up(client)
    first_visit = customer.first_visit
    change_on = first_visit + timedelta(days=7)
    response = update_card(client, change_on, **{"card-update-card-gates-0-code": NEW_CODE})
    assert response.status_code == 302, response.get_data(as_text=True)
    saved = access_card.versions(db, customer.id)
    assert [(v.version, v.effective_date) for v in saved] == [(1, company_today()), (2, change_on)]
    (first, second) = entries(db, customer, "access_card")
    assert second.details == {
        "version": 2,
        "effective_date": change_on.isoformat(),
        "changed": ["gates"],
        "how": "updated from My service",
    }
    assert NEW_CODE not in second.note and PROMISED_CODE not in second.note
    service = client.get("/welcome/service").get_data(as_text=True)
    assert NEW_CODE in service and PROMISED_CODE in service  # the customer's own card, both versions

    # The visit before the change: the old code, and a word that it changes.
    assert access_card.card_on(db, customer, first_visit).card.gates[0].code == PROMISED_CODE
    assert access_card.card_on(db, customer, change_on).card.gates[0].code == NEW_CODE
    staff.login(make_staff("technician", name="Tom Tech"))
    shown = client.post(f"/staff/accounts/{customer.id}/brief/show-codes", data=_csrf(client, customer))
    body = shown.get_data(as_text=True)
    card_part = body[body.index('id="access-card-heading"') :]
    before_part = card_part[: card_part.index("<h3>")]
    assert PROMISED_CODE in before_part and NEW_CODE not in before_part
    assert "Changes on" in card_part and NEW_CODE in card_part[card_part.index("<h3>") :]

    # A visit after the change: the new code only.
    account = db.get(Account, customer.id)
    account.first_visit = change_on + timedelta(days=1)
    db.commit()
    body = client.post(
        f"/staff/accounts/{customer.id}/brief/show-codes", data=_csrf(client, customer)
    ).get_data(as_text=True)
    card_part = body[body.index('id="access-card-heading"') : body.index('id="service"')]
    assert NEW_CODE in card_part and PROMISED_CODE not in card_part
    day = client.get(f"/staff/day?date={account.first_visit.isoformat()}").get_data(as_text=True)
    row = day[day.index('class="day-card"') :]
    assert "Side gate" in row[: row.index("</p>")] and "••••" in row[: row.index("</p>")]
    assert NEW_CODE not in day and PROMISED_CODE not in day


@pytest.mark.parametrize(
    ("days", "message"), [(-1, "Choose today or a later date."), (400, "Choose a date within the next year.")]
)
def test_an_update_with_a_bad_date_is_refused_with_nothing_changed(client, db, customer, days, message):
    sign_up(client)
    before = count_rows(db, RecordEntry), count_rows(db, AccessCardVersion)
    response = update_card(
        client, company_today() + timedelta(days=days), **{"card-update-card-gates-0-code": NEW_CODE}
    )
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert message in body and NEW_CODE in body  # nothing typed is lost
    assert (count_rows(db, RecordEntry), count_rows(db, AccessCardVersion)) == before


def test_an_update_before_signing_goes_to_the_steps(client, db, customer):
    before = count_rows(db, AccessCardVersion)
    response = client.post("/welcome/service/access-card", data={"card-update-effective": "2030-01-01"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/welcome/")
    assert count_rows(db, AccessCardVersion) == before


@pytest.mark.csrf
def test_an_update_without_its_csrf_token_is_refused(client, db, customer):
    sign_up_csrf(client)
    before = count_rows(db, RecordEntry), count_rows(db, AccessCardVersion)
    response = update_card(client, company_today(), **{"card-update-csrf_token": ""})
    assert response.status_code == 400
    assert (count_rows(db, RecordEntry), count_rows(db, AccessCardVersion)) == before


def sign_up_csrf(client):
    sign_up(client)


# -- staff: masked codes, showing them, scope ----------------------------------------------------


def _csrf(client, account):
    page = client.get(f"/staff/accounts/{account.id}/brief").get_data(as_text=True)
    start = page.index("/brief/show-codes")
    return dict(re.findall(r'name="(csrf_token)"[^>]*value="([^"]*)"', page[start:])[:1])


def test_the_brief_masks_codes_and_each_showing_is_a_record_entry(client, db, customer, staff, make_staff):
    sign_up(client, **{"card-alarm_code": ALARM_CODE})
    staff.login(make_staff("technician", name="Tom Tech"))
    page = client.get(f"/staff/accounts/{customer.id}/brief").get_data(as_text=True)
    card_part = page[page.index('id="access-card-heading"') :]
    assert "••••" in card_part and "Side gate" in card_part
    assert ALARM_CODE not in page and not re.search(rf"code[^<]*{PROMISED_CODE}", card_part[:2000])
    assert entries(db, customer, "access_code_shown") == []

    for times in (1, 2):
        shown = client.post(f"/staff/accounts/{customer.id}/brief/show-codes", data=_csrf(client, customer))
        assert shown.status_code == 200
        body = shown.get_data(as_text=True)
        assert ALARM_CODE in body and PROMISED_CODE in body
        found = entries(db, customer, "access_code_shown")
        assert len(found) == times
        assert found[-1].note.startswith("Code shown to Tom Tech")
        assert ALARM_CODE not in found[-1].note and PROMISED_CODE not in found[-1].note
    # Showing is for that page only: the brief opened again is masked.
    assert ALARM_CODE not in client.get(f"/staff/accounts/{customer.id}/brief").get_data(as_text=True)


@pytest.mark.csrf
def test_show_code_without_its_csrf_token_is_refused(client, db, make_account, staff, make_staff):
    account = make_account()
    staff.login(make_staff("technician"))
    response = client.post(f"/staff/accounts/{account.id}/brief/show-codes", data={})
    assert response.status_code == 400
    assert PROMISED_CODE not in response.get_data(as_text=True)
    assert entries(db, account, "access_code_shown") == []


def test_another_salespersons_account_and_a_deleted_one_are_404(client, db, make_account, staff, make_staff):
    owner, other = make_staff("sales"), make_staff("sales")
    account = make_account(salesperson=owner)
    staff.login(other)
    before = count_rows(db, RecordEntry), count_rows(db, OutboxEmail)
    for path, data in (("brief/show-codes", {}), ("access-flag", {"flag": "dog_out"})):
        assert client.post(f"/staff/accounts/{account.id}/{path}", data=data).status_code == 404
    account = db.get(Account, account.id)
    account.deleted_at = account.created_at
    db.commit()
    staff.logout()
    staff.login(make_staff("technician"))
    for path, data in (("brief/show-codes", {}), ("access-flag", {"flag": "dog_out"})):
        assert client.post(f"/staff/accounts/{account.id}/{path}", data=data).status_code == 404
    assert (count_rows(db, RecordEntry), count_rows(db, OutboxEmail)) == before


# -- technicians' flags --------------------------------------------------------------------------


def _flag_form(client, account):
    page = client.get(f"/staff/accounts/{account.id}/brief").get_data(as_text=True)
    start = page.index("/access-flag")
    return dict(re.findall(r'name="(csrf_token|form_id)"[^>]*value="([^"]*)"', page[start:])[:2])


def test_a_flag_reaches_the_record_the_inbox_and_the_customer_by_smtp(
    app, client, db, customer, staff, make_staff, smtp_server
):
    app.config.update(MAIL_BACKEND="smtp", SMTP_HOST=smtp_server.host, SMTP_PORT=smtp_server.port)
    sign_up(client)
    deliver_pending(db)
    staff.login(make_staff("technician", name="Tom Tech"))
    data = {**_flag_form(client, customer), "flag": "code_failed"}
    response = client.post(f"/staff/accounts/{customer.id}/access-flag", data=data)
    assert response.status_code == 302
    again = client.post(f"/staff/accounts/{customer.id}/access-flag", data=data)  # a double tap
    assert again.status_code == 302

    (entry,) = entries(db, customer, "access_flag")
    assert entry.note == "Code didn't work (reported by Tom Tech)"
    inbox = follow_ups.open_for(db, db.get(Account, customer.id))
    assert [(f.kind, f.summary) for f in inbox] == [
        ("access_flag", "Code didn't work: ask the customer to update the access card")
    ]
    before = len(smtp_server.messages)
    deliver_pending(db)
    (message,) = smtp_server.messages[before:]
    assert message["To"] == customer.customer.email
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "Code didn't work" in text and "http://" in text and "/welcome/service" in text
    assert PROMISED_CODE not in message.as_string()
    office = make_staff("office")
    staff.logout()
    staff.login(office)
    assert "Code didn&#39;t work" in client.get("/staff/differences").get_data(as_text=True)


@pytest.mark.parametrize("flag", ["", "dog_escaped", "<script>"])
def test_a_bad_flag_is_refused_with_nothing_changed(client, db, make_account, staff, make_staff, flag):
    account = make_account()
    staff.login(make_staff("technician"))
    before = count_rows(db, RecordEntry), count_rows(db, OutboxEmail)
    response = client.post(
        f"/staff/accounts/{account.id}/access-flag", data={**_flag_form(client, account), "flag": flag}
    )
    assert response.status_code == 400
    assert (count_rows(db, RecordEntry), count_rows(db, OutboxEmail)) == before


# -- codes never in emails or exports --------------------------------------------------------------


def test_no_email_of_a_full_flow_carries_a_code(app, client, db, customer, staff, make_staff, smtp_server):
    app.config.update(MAIL_BACKEND="smtp", SMTP_HOST=smtp_server.host, SMTP_PORT=smtp_server.port)
    sign_up(client, **{"card-alarm_code": ALARM_CODE})
    assert (
        update_card(
            client, company_today() + timedelta(days=2), **{"card-update-card-gates-0-code": NEW_CODE}
        ).status_code
        == 302
    )
    staff.login(make_staff("technician"))
    for flag in access_card.FLAGS:
        data = {**_flag_form(client, customer), "flag": flag}
        assert client.post(f"/staff/accounts/{customer.id}/access-flag", data=data).status_code == 302
    deliver_pending(db)
    messages = smtp_server.messages
    kinds = set(db.scalars(select(OutboxEmail.kind)))
    assert {"welcome", "access_flag"} <= kinds and len(messages) == count_rows(db, OutboxEmail)
    for message in messages:
        raw = message.as_string()
        for code in (PROMISED_CODE, NEW_CODE, ALARM_CODE):
            assert code not in raw, (message["Subject"], code)


def test_no_email_of_a_flow_with_a_corrected_gate_carries_a_code(
    app, client, db, customer, staff, make_staff, smtp_server
):
    app.config.update(MAIL_BACKEND="smtp", SMTP_HOST=smtp_server.host, SMTP_PORT=smtp_server.port)
    complete(client, stop_before="/step/access")
    assert correct_gate(client, customer, f"Back gate, code {NEW_CODE}").status_code == 302
    complete(client)
    assert saved_gates(db, customer) == (access_card.Gate("Back gate", NEW_CODE),)
    staff.login(make_staff("technician"))
    data = {**_flag_form(client, customer), "flag": "code_failed"}
    assert client.post(f"/staff/accounts/{customer.id}/access-flag", data=data).status_code == 302
    deliver_pending(db)
    kinds = set(db.scalars(select(OutboxEmail.kind)))
    assert {"welcome", "signed_customer", "differences_alert", "access_flag"} <= kinds
    assert len(smtp_server.messages) == count_rows(db, OutboxEmail)
    for message in smtp_server.messages:
        raw = message.as_string()
        for code in (PROMISED_CODE, NEW_CODE):
            assert code not in raw, (message["Subject"], code)


def test_csv_exports_leave_codes_out_unless_an_admin_asks(client, db, customer, staff, make_staff):
    complete(client, stop_before="/step/access")
    gate = next(item for item in customer.items if item.kind == "gate_access")
    post_access_step(
        client,
        **{
            f"i{gate.id}_answer": "no",
            f"i{gate.id}_value": f"Back gate, code {NEW_CODE}",
            "technician_note": "x",
        },
    )
    for role in ("office", "admin"):
        staff.login(make_staff(role))
        for path in ("/staff/differences.csv", "/staff/differences.csv?codes=1", "/staff/reports.csv"):
            body = client.get(path).get_data(as_text=True)  # a link never carries codes
            assert len(list(csv.reader(io.StringIO(body)))) > 1, path
            assert NEW_CODE not in body and PROMISED_CODE not in body, (role, path)
        # Only an admin's post gets them, and the account's record notes it.
        posted = client.post("/staff/differences.csv", data={"codes": "1"}).get_data(as_text=True)
        revealed = role == "admin"
        assert (NEW_CODE in posted) is revealed and (PROMISED_CODE in posted) is revealed, role
        notes = [e.note for e in entries(db, customer, "access_code_shown")]
        assert any("(differences CSV)" in note for note in notes) is revealed, role
        staff.logout()


def test_editing_todays_card_keeps_a_change_saved_for_a_later_date(client, db, customer):
    """A new code saved for a later date, then today's card edited (the form starts from today's
    card): today keeps the old code, and the new one still comes on its date."""
    sign_up(client)
    today = company_today()
    change_on = customer.first_visit + timedelta(days=7)
    assert update_card(client, change_on, **{"card-update-card-gates-0-code": NEW_CODE}).status_code == 302
    page = client.get("/welcome/service").get_data(as_text=True)
    form = page[page.index('action="/welcome/service/access-card"') :]
    assert card_inputs(form)["card-update-card-gates-0-code"] == PROMISED_CODE  # today's card
    added = update_card(client, today, **{"card-update-card-parking": "On the street, not the drive"})
    assert added.status_code == 302
    db.expire_all()
    now = access_card.card_on(db, customer, today)
    assert now.card.gates[0].code == PROMISED_CODE and now.card.parking == "On the street, not the drive"
    assert now.later is not None and now.later.effective_date == change_on
    assert access_card.card_on(db, customer, change_on).card.gates[0].code == NEW_CODE
