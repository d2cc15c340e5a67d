"""Text-message consent done right: two separate unticked choices for a named number, each with
its disclosure; Twilio's inbound webhook (signature checked with the twilio library) honours
every opt-out word and answers HELP; withdrawal from My service; staff see the state and export
the records."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from portal import record
from portal.models import Account, OutboxEmail, RecordEntry
from tests.conftest import count_rows, form_fields
from tests.test_welcome import answer_all, complete, invited, open_link  # noqa: F401  (a fixture)

TOKEN = "twilio-test-auth-token"
# A browser name that would run as a formula in a spreadsheet (it is the sender's to choose).
FORMULA_AGENT = '=HYPERLINK("http://evil.example","x")'
URL = "http://localhost/sms/inbound"
NUMBER = "+1 480 555 0134"
E164 = "+14805550134"


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    return {**settings, "TWILIO_AUTH_TOKEN": TOKEN}


def text_in(client, body: str, sender: str = E164, token: str = TOKEN, **extra: str):  # type: ignore[no-untyped-def]
    """An inbound message as Twilio posts it: form-encoded, signed over the URL and fields."""
    params = {"From": sender, "To": "+15005550006", "Body": body, "MessageSid": "SM" + "0" * 32, **extra}
    signature = RequestValidator(token).compute_signature(URL, params)
    return client.post("/sms/inbound", data=params, headers={"X-Twilio-Signature": signature})


def contact_step(client, **fields: object):  # type: ignore[no-untyped-def]
    location = complete(client, stop_before="/step/contact")
    html = client.get(location).get_data(as_text=True)
    return html, client.post(location, data=answer_all(html, **fields), headers={"User-Agent": FORMULA_AGENT})


def consent_entries(db, event: str = "consent_given") -> list[RecordEntry]:  # type: ignore[no-untyped-def]
    return list(db.scalars(select(RecordEntry).where(RecordEntry.event == event).order_by(RecordEntry.id)))


@pytest.fixture
def texting(client, db, invited):  # type: ignore[no-untyped-def]
    """A customer who agreed to both kinds of texts for NUMBER on the contact step."""
    account, path = invited
    open_link(client, path)
    _, response = contact_step(
        client, channels=["email", "text"], phone=NUMBER, sms_service="y", sms_marketing="y"
    )
    assert response.status_code == 302
    return account


def test_the_contact_step_offers_two_unticked_choices_each_with_its_disclosure(client, db, invited):
    account, path = invited
    open_link(client, path)
    location = complete(client, stop_before="/step/contact")
    html = client.get(location).get_data(as_text=True)
    assert 'name="sms_service"' in html and 'name="sms_marketing"' in html
    assert "checked" not in html.split('name="sms_service"')[1].split(">")[0]
    assert "checked" not in html.split('name="sms_marketing"')[1].split(">")[0]
    assert "Consent is not a condition of purchase" in html and "Msg &amp; data rates may apply" in html
    assert "Reply STOP to opt out, HELP for help" in html and "msgs/month" in html
    assert account.customer.phone in html  # the disclosure names the number
    assert 'href="/terms#texts"' in html and 'href="/privacy"' in html
    assert client.get("/terms").status_code == 200 and client.get("/privacy").status_code == 200


def test_each_consent_records_its_disclosure_version_number_time_ip_and_page(client, db, texting):
    given = {entry.details["consent"]: entry for entry in consent_entries(db)}
    assert set(given) == {"sms_service", "sms_marketing"}
    service, marketing = given["sms_service"], given["sms_marketing"]
    assert service.details["version"] == "sms-service-1" and marketing.details["version"] == "sms-marketing-1"
    assert service.confirmed_value == marketing.confirmed_value == E164
    assert service.details["page"] == "welcome/contact" and service.details["ip"] == "127.0.0.1"
    assert service.details["text_sha256"] != marketing.details["text_sha256"]
    assert service.created_at is not None


def test_service_texts_without_their_consent_are_refused_and_nothing_is_recorded(client, db, invited):
    account, path = invited
    open_link(client, path)
    complete(client, stop_before="/step/contact")
    before = count_rows(db, RecordEntry)
    _, response = contact_step(client, channels=["email", "text"], phone=NUMBER, sms_marketing="y")
    assert response.status_code == 400
    assert "Tick the box to agree to service texts" in response.get_data(as_text=True)
    _, response = contact_step(client, channels=["email"], phone="", sms_marketing="y")
    assert response.status_code == 400 and "Give the mobile number" in response.get_data(as_text=True)
    assert count_rows(db, RecordEntry) == before


def test_a_consent_ticked_under_another_number_is_asked_again_for_the_new_one(client, db, invited):
    account, path = invited
    open_link(client, path)
    complete(client, stop_before="/step/contact")
    before = count_rows(db, RecordEntry)
    html, response = contact_step(
        client, channels=["email", "text"], phone="+1 602 555 0199", sms_service="y"
    )
    assert NUMBER in html  # the disclosure the customer read named the number on file
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "The number changed: read the consent again" in page and "+1 602 555 0199" in page
    assert count_rows(db, RecordEntry) == before
    response = client.post(
        "/welcome/step/contact",
        data=answer_all(page, channels=["email", "text"], phone="+1 602 555 0199", sms_service="y"),
    )
    assert response.status_code == 302
    assert [e.confirmed_value for e in consent_entries(db)] == ["+16025550199"]


@pytest.mark.parametrize(
    "words",
    ["STOP", "stop", "Quit", "END", "revoke", "Opt out", "optout", "CANCEL", "unsubscribe", "Stop please"],
)
def test_each_opt_out_word_through_the_webhook_withdraws_both_consents(client, db, texting, words):
    response = text_in(client, words, sender="(480) 555-0134")
    assert response.status_code == 200 and response.mimetype == "application/xml"
    assert "no more text messages" in response.get_data(as_text=True)
    withdrawn = {entry.details["consent"]: entry for entry in consent_entries(db, "consent_withdrawn")}
    assert set(withdrawn) == {"sms_service", "sms_marketing"}
    assert (
        withdrawn["sms_service"].details["page"] == "sms"
        and withdrawn["sms_service"].details["words"] == words
    )
    assert record.verify_chain(db, texting.id) is None
    # A second STOP finds nothing in force: nothing more recorded.
    count = count_rows(db, RecordEntry)
    assert text_in(client, words).status_code == 200
    assert count_rows(db, RecordEntry) == count


def test_help_is_answered_and_other_texts_change_nothing(client, db, texting):
    count = count_rows(db, RecordEntry)
    help_reply = text_in(client, "HELP").get_data(as_text=True)
    assert "<Message>" in help_reply and "Reply STOP to opt out" in help_reply
    assert (
        text_in(client, "Can you come Tuesday instead? Don't stop by Monday")
        .get_data(as_text=True)
        .count("<Message>")
        == 0
    )
    assert count_rows(db, RecordEntry) == count


@pytest.mark.parametrize(
    "case",
    ["no signature", "wrong token", "changed body", "no token configured"],
)
def test_a_bad_webhook_signature_is_refused_with_nothing_changed(app, client, db, texting, case):
    count, emails = count_rows(db, RecordEntry), count_rows(db, OutboxEmail)
    params = {"From": E164, "Body": "STOP"}
    if case == "no signature":
        response = client.post("/sms/inbound", data=params)
    elif case == "wrong token":
        response = text_in(client, "STOP", token="someone-elses-token")
    elif case == "changed body":
        signature = RequestValidator(TOKEN).compute_signature(URL, {"From": E164, "Body": "HELLO"})
        response = client.post("/sms/inbound", data=params, headers={"X-Twilio-Signature": signature})
    else:
        app.config["TWILIO_AUTH_TOKEN"] = None
        response = text_in(client, "STOP")
    assert response.status_code == 403
    assert (count_rows(db, RecordEntry), count_rows(db, OutboxEmail)) == (count, emails)


def test_the_customer_withdraws_either_text_consent_from_my_service(client, db, texting):
    assert complete(client) == "/welcome/thanks"
    page = client.get("/welcome/service").get_data(as_text=True)
    assert "Marketing text messages" in page and E164 in page
    section = page.split('id="agreement"')[1]
    marketing_form = {k: v for k, v in form_fields(section.split("sms_marketing/withdraw")[1]).items()}
    response = client.post("/welcome/service/consents/sms_marketing/withdraw", data=marketing_form)
    assert response.status_code == 302
    withdrawn = consent_entries(db, "consent_withdrawn")
    assert [entry.details["consent"] for entry in withdrawn] == ["sms_marketing"]
    page = client.get("/welcome/service").get_data(as_text=True)
    assert "Withdraw service text messages consent" in page  # the other one stays
    assert "Withdraw marketing text messages consent" not in page


def test_staff_see_the_consent_state_and_export_the_records_for_a_date_range(
    client, db, texting, staff, make_staff
):
    assert text_in(client, "Stop texting me").status_code == 200
    staff.login(make_staff("office"))
    page = client.get(f"/staff/accounts/{texting.id}").get_data(as_text=True)
    assert "Consents" in page and "Marketing text messages" in page and "withdrawn" in page
    today = date.today()
    chooser = client.get("/staff/consents")
    assert chooser.status_code == 200
    bad = client.get(
        "/staff/consents",
        query_string={"start": today.isoformat(), "end": (today - timedelta(days=1)).isoformat()},
    )
    assert bad.status_code == 400 and "on or after the first" in bad.get_data(as_text=True)
    go = client.get("/staff/consents", query_string={"start": today.isoformat(), "end": today.isoformat()})
    assert go.status_code == 302
    response = client.get(go.headers["Location"])
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [(r["consent"], r["action"]) for r in rows] == [
        ("sms_service", "given"),
        ("sms_marketing", "given"),
        ("sms_service", "withdrawn"),
        ("sms_marketing", "withdrawn"),
    ]
    # A number starts with "+", which a spreadsheet reads as a formula: kept as text (csv_export).
    assert rows[0]["number"] == "'" + E164 and rows[0]["disclosure_version"] == "sms-service-1"
    assert rows[0]["ip"] == "127.0.0.1" and rows[0]["page"] == "welcome/contact"
    assert rows[0]["user_agent"] == "'" + FORMULA_AGENT  # neutralised: ' first, nothing runs
    assert rows[2]["words"] == "Stop texting me" and rows[2]["page"] == "sms"
    # Another range holds none of them; sales see only their own accounts' records.
    earlier = client.get(
        "/staff/consents.csv",
        query_string={
            "start": (today - timedelta(days=9)).isoformat(),
            "end": (today - timedelta(days=1)).isoformat(),
        },
    )
    assert list(csv.DictReader(io.StringIO(earlier.get_data(as_text=True)))) == []
    staff.logout()
    staff.login(make_staff("sales"))
    assert (
        client.get(
            "/staff/consents.csv", query_string={"start": today.isoformat(), "end": today.isoformat()}
        ).status_code
        == 403
    )


def test_the_sms_number_is_kept_per_account(client, db, texting, make_account):
    """An opt-out from one number leaves another account's different number alone."""
    other = make_account()
    db.commit()
    assert text_in(client, "STOP", sender="+1 602 555 0000").status_code == 200
    assert consent_entries(db, "consent_withdrawn") == []
    assert db.get(Account, other.id) is not None


@pytest.mark.csrf
def test_the_signed_webhook_needs_no_csrf_token(client, db, texting):
    response = text_in(client, "STOP")
    assert response.status_code == 200
    assert len(consent_entries(db, "consent_withdrawn")) == 2
