"""Issue 16's decisions, as the customer, the office and the technician meet them: a change
request after signing lands in the one inbox, the office accepts (from the customer's date)
or declines it with a note, or changes an agreed value itself; each decision reaches the
customer (one email per batch, My service in plain words) and the technician (the brief)."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlalchemy import select

from portal.models import Account, ChangeRequest, CompanySettings, OutboxEmail, RecordEntry
from tests.conftest import PASSWORD, count_rows, form_fields
from tests.test_welcome import (  # noqa: F401 (invited is a fixture)
    answer_all,
    complete,
    invited,
    item_id,
    open_link,
)

OLD_GATE, NEW_GATE = "4412", "9911"  # the demo handoff's gate code, and the customer's new one


def _browser(app, db):  # type: ignore[no-untyped-def]
    browser = app.test_client()
    browser.test_session = db
    return browser


def _staff(app, db, user):  # type: ignore[no-untyped-def]
    browser = _browser(app, db)
    fields = form_fields(browser.get("/staff/login").get_data(as_text=True))
    browser.post("/staff/login", data={**fields, "email": user.email, "password": PASSWORD})
    return browser


@pytest.fixture
def company(db):  # type: ignore[no-untyped-def]
    db.add(CompanySettings(name="Blue Lagoon Pool Care", office_email="office@bluelagoon.example"))
    db.commit()


def _sign(client, account, path, **answers):  # type: ignore[no-untyped-def]
    """Dana opens her link and signs, answering the schedule step as given."""
    open_link(client, path)
    if answers:
        location = complete(client, stop_before="/step/schedule")
        html = client.get(location).get_data(as_text=True)
        assert client.post(location, data=answer_all(html, **answers)).status_code == 302
    assert complete(client) == "/welcome/thanks"


def _ask(client, item, details, effective=None):  # type: ignore[no-untyped-def]
    page = client.get("/welcome/service").get_data(as_text=True)
    fields = form_fields(page.split('action="/welcome/service/change"', 1)[1])
    data = {**fields, "item": str(item), "details": details}
    if effective:
        data["effective"] = effective.isoformat()
    return client.post("/welcome/service/change", data=data)


def _decide(office, change_id, **data):  # type: ignore[no-untyped-def]
    page = office.get(f"/staff/changes/{change_id}")
    assert page.status_code == 200
    fields = form_fields(page.get_data(as_text=True).split('action="/staff/changes/', 1)[1])
    return office.post(f"/staff/changes/{change_id}", data={**fields, **data})


def _change(db):  # type: ignore[no-untyped-def]
    db.expire_all()
    return db.scalars(select(ChangeRequest).order_by(ChangeRequest.id.desc())).first()


def _emails(runner, app, now):  # type: ignore[no-untyped-def]
    """Run `outbox send` as the worker would at `now`; the decision emails written, read back."""
    result = runner.invoke(args=["outbox", "send", "--now", now.strftime("%Y-%m-%dT%H:%M:%S")])
    assert result.exit_code == 0, result.output
    found = []
    for file in sorted(Path(app.config["MAIL_OUTBOX_DIR"]).glob("*.eml")):
        message = BytesParser(policy=policy.default).parsebytes(file.read_bytes())
        if "what we decided" in message["Subject"]:
            file.unlink()  # read once: the next run shows only new ones
            found.append(message)
    return found


def _bodies(message):  # type: ignore[no-untyped-def]
    return [part.get_content() for part in message.walk() if part.get_content_maintype() == "text"]


def _later(app, seconds=1):  # type: ignore[no-untyped-def]
    delay = app.config["DECISION_EMAIL_DELAY_SECONDS"]
    return datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(seconds=delay + seconds)


# --- the reproduced cases ---------------------------------------------------------------------


def test_a_change_request_after_signing_is_in_the_inbox_counted_and_on_the_brief(
    app, client, db, invited, make_staff, company
):
    account, path = invited
    _sign(client, account, path)
    gate = item_id(account, "gate_access")
    effective = account.first_visit + timedelta(days=3)
    response = _ask(client, gate, f"Side gate, code {NEW_GATE}", effective)
    assert response.status_code == 302
    service = client.get("/welcome/service").get_data(as_text=True)
    assert (
        "Your requests" in service and f"code {NEW_GATE}" in service and "waiting for the office" in service
    )

    office = _staff(app, db, make_staff("office"))
    inbox = office.get("/staff/differences").get_data(as_text=True)
    assert 'Inbox: open <span class="muted">(1 in all)</span>' in inbox
    assert "Change request" in inbox and "Dana Reyes" in inbox and "code \N{BULLET}" in inbox
    assert NEW_GATE not in inbox and OLD_GATE not in inbox  # codes masked in the inbox
    dashboard = office.get("/staff/").get_data(as_text=True)
    attention = dashboard.split("Needs attention", 1)[1].split("Latest handoffs", 1)[0]
    assert "Dana Reyes" in attention and "<td>1</td>" in attention

    brief = office.post(f"/staff/accounts/{account.id}/brief/show-codes").get_data(
        as_text=True
    )  # codes shown
    assert "Customer asked to change" in brief and OLD_GATE in brief and NEW_GATE in brief
    day = office.get(f"/staff/day?date={account.first_visit.isoformat()}").get_data(as_text=True)
    assert "1 undecided" in day and "Customer asked to change" in day


def test_a_resolved_difference_reaches_the_customer_with_the_offices_note(
    app, client, db, invited, make_staff, runner, company
):
    account, path = invited
    visit = item_id(account, "visit_day")
    _sign(
        client,
        account,
        path,
        **{
            f"i{visit}_answer": "no",
            f"i{visit}_pref1": "Tuesday",
            f"i{visit}_comment": "We work from home then",
        },
    )
    thanks = client.get("/welcome/thanks").get_data(as_text=True)
    assert "Your service is confirmed" not in thanks and "This answer waits for our office" in thanks
    assert "Visit day" in thanks

    office = _staff(app, db, make_staff("office"))
    page = office.get(f"/staff/differences/{visit}/resolve").get_data(as_text=True)
    fields = form_fields(page.split('action="/staff/differences/', 1)[1])
    response = office.post(
        f"/staff/differences/{visit}/resolve",
        data={**fields, "action": "keep", "note": "The Tuesday route is full."},
    )
    assert response.status_code == 302
    service = client.get("/welcome/service").get_data(as_text=True)
    assert "You asked for Tuesday. We kept Friday: The Tuesday route is full." in service

    [email] = _emails(runner, app, _later(app))
    assert email["To"] == "dana@example.com"
    for body in _bodies(email):
        assert "We kept Friday: The Tuesday route is full." in body
        assert "http://localhost/welcome/service" in body


# --- accept, decline, change ------------------------------------------------------------------


def test_accepting_from_a_later_date_changes_the_value_from_that_date(
    app, client, db, invited, make_staff, company
):
    account, path = invited
    _sign(client, account, path)
    effective = account.first_visit + timedelta(days=3)
    _ask(client, item_id(account, "gate_access"), f"Side gate, code {NEW_GATE}", effective)
    office = _staff(app, db, make_staff("office"))
    response = _decide(office, _change(db).id, action="accept", note="New keypad noted.")
    assert response.status_code == 302
    change = _change(db)
    assert change.status == "accepted" and change.decided_at and change.staff_note == "New keypad noted."

    # The first visit comes before the customer's date: its brief has the code agreed for that day.
    brief = office.post(f"/staff/accounts/{account.id}/brief/show-codes").get_data(
        as_text=True
    )  # codes shown
    assert f"Side gate, code {OLD_GATE} <span" in brief and "Customer asked to change" not in brief
    assert f"Changes to Side gate, code {NEW_GATE} from" in brief
    # Dana sees today's code, what comes from her date, and the story.
    service = client.get("/welcome/service").get_data(as_text=True)
    agreed = service.split("Your requests", 1)[0]
    assert f"code {OLD_GATE}" in agreed and f"code {NEW_GATE} from" in agreed
    assert "You asked for Side gate, code 9911. We agreed, from" in agreed
    assert "Your requests" not in service  # nothing open any more
    inbox = office.get("/staff/differences").get_data(as_text=True)
    assert "(0 in all)" in inbox


def test_accepting_without_a_date_changes_the_value_now(app, client, db, invited, make_staff, company):
    account, path = invited
    _sign(client, account, path)
    _ask(client, item_id(account, "gate_access"), f"Side gate, code {NEW_GATE}")
    office = _staff(app, db, make_staff("office"))
    assert _decide(office, _change(db).id, action="accept").status_code == 302
    brief = office.post(f"/staff/accounts/{account.id}/brief/show-codes").get_data(
        as_text=True
    )  # codes shown
    assert NEW_GATE in brief and OLD_GATE not in brief


def test_declining_needs_a_note_and_the_customer_reads_it(app, client, db, invited, make_staff, company):
    account, path = invited
    _sign(client, account, path)
    _ask(client, item_id(account, "visit_day"), "Tuesday")
    office = _staff(app, db, make_staff("office"))
    change_id = _change(db).id
    before = count_rows(db, RecordEntry)
    refused = _decide(office, change_id, action="decline", note=" ")
    assert refused.status_code == 400 and "Say why" in refused.get_data(as_text=True)
    assert _change(db).status == "open" and count_rows(db, RecordEntry) == before

    assert _decide(office, change_id, action="decline", note="the Tuesday route is full").status_code == 302
    assert _change(db).status == "declined"
    service = client.get("/welcome/service").get_data(as_text=True)
    assert "You asked for Tuesday. We kept Friday: the Tuesday route is full." in service
    record_page = office.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    assert "office declined the customer&#39;s change to Tuesday" in record_page


def test_accepting_a_visit_day_that_is_no_day_is_refused_and_changes_nothing(
    app, client, db, invited, make_staff, company
):
    account, path = invited
    _sign(client, account, path)
    _ask(client, item_id(account, "visit_day"), "whenever suits you")
    office = _staff(app, db, make_staff("office"))
    before = count_rows(db, RecordEntry)
    refused = _decide(office, _change(db).id, action="accept")
    assert refused.status_code == 400 and "weekday names" in refused.get_data(as_text=True)
    assert _change(db).status == "open" and count_rows(db, RecordEntry) == before
    # The office agreed Tuesday on the phone: it corrects the value and accepts.
    assert _decide(office, _change(db).id, action="accept", value="tue").status_code == 302
    assert "Visit day" in client.get("/welcome/service").get_data(as_text=True)
    assert "We agreed: Tuesday" in client.get("/welcome/service").get_data(as_text=True)


def test_staff_change_an_agreed_value_after_signing_and_the_customer_is_told(
    app, client, db, invited, make_staff, runner, company
):
    account, path = invited
    _sign(client, account, path)
    office = _staff(app, db, make_staff("office"))
    refused = office.get(f"/staff/accounts/{account.id}/edit", follow_redirects=True).get_data(as_text=True)
    assert "change requests" not in refused and "Change link" in refused
    item = item_id(account, "equipment")
    url = f"/staff/accounts/{account.id}/agreed/{item}"
    assert f'href="{url}"' in office.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    fields = form_fields(office.get(url).get_data(as_text=True).split(f'action="{url}"', 1)[1])
    before = count_rows(db, RecordEntry)
    missing_note = office.post(url, data={**fields, "value": "Salt cell and filter check", "note": ""})
    assert missing_note.status_code == 400 and count_rows(db, RecordEntry) == before
    response = office.post(
        url, data={**fields, "value": "Salt cell and filter check", "note": "Your filter is due too."}
    )
    assert response.status_code == 302
    service = client.get("/welcome/service").get_data(as_text=True)
    assert "We changed this to Salt cell and filter check: Your filter is due too." in service
    [email] = _emails(runner, app, _later(app))
    assert all("Salt cell and filter check" in body for body in _bodies(email))


# --- one email per account per batch, and never a code ------------------------------------------


def test_decisions_wait_and_go_as_one_email_per_account(
    app, client, db, invited, make_staff, runner, company
):
    account, path = invited
    _sign(client, account, path)
    _ask(client, item_id(account, "visit_day"), "Tuesday")
    _ask(client, item_id(account, "equipment"), "No salt cell check, please")
    office = _staff(app, db, make_staff("office"))
    ids = [c.id for c in db.scalars(select(ChangeRequest).order_by(ChangeRequest.id))]
    assert _decide(office, ids[0], action="decline", note="The Tuesday route is full").status_code == 302
    assert _emails(runner, app, _later(app, seconds=-60)) == []  # not yet: others may follow
    assert _decide(office, ids[1], action="accept").status_code == 302

    [email] = _emails(runner, app, _later(app))
    for body in _bodies(email):
        assert "The Tuesday route is full" in body and "No salt cell check, please" in body
    assert _emails(runner, app, _later(app, seconds=3600)) == []  # each decision is emailed once
    assert (
        db.scalars(select(OutboxEmail).where(OutboxEmail.kind == "decisions")).all()[0].account_id
        == account.id
    )


def test_no_decision_email_carries_a_code(app, client, db, invited, make_staff, runner, company):
    account, path = invited
    _sign(client, account, path)
    gate = item_id(account, "gate_access")
    _ask(client, gate, f"Side gate, code {NEW_GATE}", account.first_visit + timedelta(days=3))
    _ask(client, gate, "Front gate, code 5566")
    _ask(client, "other", "Alarm code 2580 is new")
    office = _staff(app, db, make_staff("office"))
    first, second, other = [c.id for c in db.scalars(select(ChangeRequest).order_by(ChangeRequest.id))]
    _decide(office, first, action="accept", note=f"Code {NEW_GATE} from your date")
    _decide(office, second, action="decline", note="We keep code 4412 until the keypad is fitted")
    _decide(office, other, action="accept", note="Alarm code 2580 noted")
    url = f"/staff/accounts/{account.id}/agreed/{gate}"
    fields = form_fields(office.get(url).get_data(as_text=True).split(f'action="{url}"', 1)[1])
    office.post(url, data={**fields, "value": "Side gate, code 7781", "note": "Keypad reset to 7781"})

    [email] = _emails(runner, app, _later(app))
    for body in _bodies(email):
        for code in (OLD_GATE, NEW_GATE, "5566", "2580", "7781"):
            assert code not in body, code
        assert "Access details" in body and "http://localhost/welcome/service" in body


# --- the inbox: order, count, access ----------------------------------------------------------------


def test_inbox_puts_the_nearest_visit_first_then_each_accounts_differences_then_its_requests(
    app, db, make_account, make_staff
):
    from portal import confirmations, decisions

    today = date.today()
    later = make_account(
        customer_name="Lee Later", customer_email="lee@example.com", first_visit=today + timedelta(days=20)
    )
    soon = make_account(
        customer_name="Ann Soon", customer_email="ann@example.com", first_visit=today + timedelta(days=2)
    )
    none = make_account(customer_name="Nat None", customer_email="nat@example.com", first_visit=None)

    def item(account, kind):  # type: ignore[no-untyped-def]
        return next(i for i in account.items if i.kind == kind)

    decisions.open_request(db, none, None, "Nat asks first", None)
    decisions.open_request(db, later, item(later, "equipment"), "Lee asks second", None)
    decisions.open_request(db, soon, None, "Ann asks third", None)
    db.commit()
    answer = confirmations.Answer(item(soon, "safety"), "changed", "Ann answers fourth")
    confirmations.record_answers(db, soon, [answer])
    db.commit()
    office = _staff(app, db, make_staff("office"))
    page = office.get("/staff/differences").get_data(as_text=True)
    assert 'Inbox: open <span class="muted">(4 in all)</span>' in page
    shown = ("Ann answers fourth", "Ann asks third", "Lee asks second", "Nat asks first")
    order = [page.index(text) for text in shown]
    # Ann's visit is nearest; within an account its differences come before its requests,
    # whatever their age; an account without a visit comes last.
    assert order == sorted(order)
    assert "the nearest visit first" in page
    assert page.count("Change request") == 3 and page.count(">Difference<") == 1
    dashboard = office.get("/staff/").get_data(as_text=True).split("Needs attention", 1)[1]
    assert dashboard.index("Ann Soon") < dashboard.index("Lee Later")


def test_sales_read_their_own_requests_and_cannot_decide(app, client, db, invited, make_staff, company):
    account, path = invited
    _sign(client, account, path)
    _ask(client, item_id(account, "gate_access"), f"Side gate, code {NEW_GATE}")
    change_id = _change(db).id
    seller = _staff(app, db, account.salesperson)
    assert "Change request" in seller.get("/staff/differences").get_data(as_text=True)
    before = count_rows(db, RecordEntry)
    assert seller.get(f"/staff/changes/{change_id}").status_code == 403
    assert seller.post(f"/staff/changes/{change_id}", data={"action": "accept"}).status_code == 403
    gate = item_id(account, "gate_access")
    assert seller.get(f"/staff/accounts/{account.id}/agreed/{gate}").status_code == 403
    other = _staff(app, db, make_staff("sales", email="other@example.com"))
    assert "Change request" not in other.get("/staff/differences").get_data(as_text=True)
    assert _change(db).status == "open" and count_rows(db, RecordEntry) == before


def test_a_change_request_of_a_removed_account_is_a_404_with_nothing_changed(
    app, client, db, invited, make_staff, company
):
    account, path = invited
    _sign(client, account, path)
    _ask(client, item_id(account, "gate_access"), f"Side gate, code {NEW_GATE}")
    change_id = _change(db).id
    office = _staff(app, db, make_staff("office"))
    fields = form_fields(office.get(f"/staff/changes/{change_id}").get_data(as_text=True))
    found = db.get(Account, account.id)
    found.deleted_at = datetime.now(timezone.utc)
    db.commit()
    before = count_rows(db, RecordEntry)
    assert office.post(f"/staff/changes/{change_id}", data={**fields, "action": "accept"}).status_code == 404
    assert office.get(f"/staff/changes/{change_id + 1000}").status_code == 404
    assert _change(db).status == "open" and count_rows(db, RecordEntry) == before
    assert re.search(r"\(0 in all\)", office.get("/staff/differences").get_data(as_text=True))


def test_the_inbox_and_dashboard_take_the_same_queries_at_2_and_12_requests(
    app, db, make_account, make_staff
):
    from sqlalchemy import event

    from portal import decisions

    office = _staff(app, db, make_staff("office"))

    def add(start, n):  # type: ignore[no-untyped-def]
        for i in range(start, start + n):
            account = make_account(customer_name=f"C{i}", customer_email=f"c{i}@example.com")
            gate = next(item for item in account.items if item.kind == "gate_access")
            decisions.open_request(db, account, gate, f"Side gate, code 10{i:02}", None)
            decisions.open_request(db, account, None, "Pool cover", None)
            db.commit()

    def queries(url):  # type: ignore[no-untyped-def]
        statements: list[str] = []
        engine = app.extensions["portal.engine"]
        listener = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            assert office.get(url).status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        return len(statements)

    add(0, 1)
    small = {url: queries(url) for url in ("/staff/", "/staff/differences")}
    add(1, 5)
    large = {url: queries(url) for url in small}
    assert large == small, (small, large)
    assert "(12 in all)" in office.get("/staff/differences").get_data(as_text=True)
