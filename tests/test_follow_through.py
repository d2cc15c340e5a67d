"""Issue 18, part A: promises with a when and an owner, and their follow-through.

Occasions become due dates; each occurrence is a task on the right visit's brief and day list;
the technician closes it (done with a note, couldn't do with a reason) and the record keeps
both; overdue work reaches the office inbox once; the customer sees each deliverable's state
and is emailed when a one-time promise is done; the report counts promises kept on time.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta
from html import unescape

import pytest
from sqlalchemy import select

from portal import follow_through, follow_ups, record
from portal.company import company_today
from portal.handoffs import HandoffData, Promise, create_handoff
from portal.models import FollowUp, OutboxEmail, PromiseItem, PromiseTask, RecordEntry
from portal.occasions import (
    BY_DATE,
    FIRST_VISIT,
    MONTHS,
    NONE,
    OFFICE,
    RECURRING,
    WEEKS,
    Occasion,
    add_months,
    parse_every,
    parse_when,
)
from portal.onboarding import send_welcome
from portal.outbox import deliver_pending
from tests.conftest import count_rows, form_fields
from tests.smtp_server import SmtpServer, smtp_server  # noqa: F401  (the fixture)
from tests.test_welcome import complete, open_link, token_of

TODAY = date.today()


def _text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


# -- occasions to due dates ------------------------------------------------------------------------


def test_a_first_visit_promise_is_due_on_the_first_visit_once():
    occasion = Occasion(FIRST_VISIT)
    assert occasion.due(0, date(2027, 3, 5)) == date(2027, 3, 5)
    assert occasion.due(1, date(2027, 3, 5)) is None
    assert occasion.due(0, None) is None  # no first visit yet: no task yet


def test_a_by_date_promise_is_due_on_its_date_once():
    occasion = Occasion(BY_DATE, on=date(2027, 5, 31))
    assert occasion.due(0, date(2027, 1, 4)) == date(2027, 5, 31)
    assert occasion.due(1, date(2027, 1, 4)) is None
    assert occasion.words() == "By May 31, 2027"


def test_every_n_weeks_counts_from_the_start_across_a_leap_day():
    occasion = Occasion(RECURRING, on=date(2028, 2, 15), every=2, unit=WEEKS)
    assert [occasion.due(n, None) for n in range(3)] == [
        date(2028, 2, 15),
        date(2028, 2, 29),
        date(2028, 3, 14),
    ]
    # Without a start of its own it counts from the first visit.
    assert Occasion(RECURRING, every=1, unit=WEEKS).due(1, date(2027, 1, 4)) == date(2027, 1, 11)


def test_every_n_months_keeps_the_day_or_the_months_last_day():
    jan31 = Occasion(RECURRING, on=date(2027, 1, 31), every=1, unit=MONTHS)
    assert [jan31.due(n, None) for n in range(4)] == [
        date(2027, 1, 31),
        date(2027, 2, 28),  # Jan 31 + 1 month
        date(2027, 3, 31),  # counted from the start, not from Feb 28
        date(2027, 4, 30),
    ]
    assert add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)  # a leap year's February
    leap = Occasion(RECURRING, on=date(2028, 2, 29), every=12, unit=MONTHS)
    assert [leap.due(n, None) for n in range(5)] == [
        date(2028, 2, 29),
        date(2029, 2, 28),
        date(2030, 2, 28),
        date(2031, 2, 28),
        date(2032, 2, 29),
    ]
    quarterly = Occasion(RECURRING, on=date(2027, 11, 30), every=3, unit=MONTHS)
    assert quarterly.due(1, None) == date(2028, 2, 29) and quarterly.due(2, None) == date(2028, 5, 30)


def test_the_csv_when_cell_and_the_every_text_parse_or_are_refused():
    assert parse_when("first visit") == {"occasion": FIRST_VISIT}
    assert parse_when("On the first visit") == {"occasion": FIRST_VISIT}
    assert parse_when("by 2027-05-31") == {"occasion": BY_DATE, "date": "2027-05-31"}
    assert parse_when("every 3 months from 2027-01-15") == {
        "occasion": RECURRING,
        "every": "every 3 months",
        "date": "2027-01-15",
    }
    assert parse_when("none") == {"occasion": NONE}
    assert parse_when("before summer") is None
    assert parse_every("3 months") == (3, MONTHS) and parse_every("every 2 weeks") == (2, WEEKS)
    assert parse_every("month") == (1, MONTHS) and parse_every("fortnightly") is None


# -- handoffs make tasks -------------------------------------------------------------------------


def _handoff(db, make_staff, *, first_visit, promises, name="Dana Reyes", email=None, salesperson=None):
    data = HandoffData(
        customer_name=name,
        customer_email=email or f"{name.split()[0].lower()}@example.com",
        customer_phone="+1 480 555 0134",
        service_address=f"{len(name)} Palm Ln, Phoenix, AZ",
        plan="Weekly full service",
        price_cents=16500,
        first_visit=first_visit,
        promises=[Promise("visit_day", "Friday"), Promise("gate_access", "Side gate, code 4412"), *promises],
    )
    account = create_handoff(db, data, salesperson or make_staff("sales", name="Sam Seller"))
    db.commit()
    return account


def _tasks(db, account):
    db.expire_all()
    return list(
        db.scalars(select(PromiseTask).where(PromiseTask.account_id == account.id).order_by(PromiseTask.id))
    )


def _item(account, value):
    return next(item for item in account.items if item.promised_value == value)


def test_a_handoff_makes_one_task_per_deliverable_and_none_for_standing_facts(db, make_staff):
    visit = TODAY + timedelta(days=3)
    account = _handoff(
        db,
        make_staff,
        first_visit=visit,
        promises=[
            Promise("equipment", "Replace the skimmer lid"),  # the kind's default: first visit
            Promise(
                "equipment", "Salt cell check before summer", occasion=Occasion(BY_DATE, on=date(2027, 5, 31))
            ),
            Promise("equipment", "Filter clean", occasion=Occasion(RECURRING, every=3, unit=MONTHS)),
            Promise("custom", "Text before arriving"),  # not tracked unless asked
            Promise("custom", "Welcome kit", "Kit", occasion=Occasion(FIRST_VISIT, owner=OFFICE)),
        ],
    )
    due = {task.item.promised_value: (task.due_on, task.owner, task.status) for task in _tasks(db, account)}
    assert due == {
        "Replace the skimmer lid": (visit, "technician", "open"),
        "Salt cell check before summer": (date(2027, 5, 31), "technician", "open"),
        "Filter clean": (visit, "technician", "open"),
        "Welcome kit": (visit, "office", "open"),
    }
    promised = {
        entry.item_id: entry.details
        for entry in record.entries_for(db, account.id)
        if entry.event == "promised"
    }
    assert promised[_item(account, "Salt cell check before summer").id] == {
        "when": "By May 31, 2027",
        "owner": "Route technician",
    }
    assert promised[_item(account, "Text before arriving").id] == {}


def test_the_api_takes_a_when_and_an_owner_and_the_old_body_stays_valid(client, db, runner):
    token = runner.invoke(args=["create-api-token", "crm"]).output.strip().split()[-1]
    body = {
        "customer": {"name": "Dana Reyes", "email": "dana@example.com"},
        "service_address": "1820 W Palm Ln, Phoenix, AZ 85007",
        "plan": "Weekly full service",
        "price_cents": 16500,
        "first_visit": (TODAY + timedelta(days=5)).isoformat(),
        "promises": [
            {
                "kind": "equipment",
                "value": "Salt cell check before summer",
                "occasion": "by_date",
                "date": "2027-05-31",
            },
            {"kind": "equipment", "value": "Filter clean", "every": "3 months", "owner": "office"},
            {"kind": "equipment", "value": "Replace the skimmer lid"},
        ],
    }
    headers = {"Authorization": f"Bearer {token}"}
    response = client.post("/api/v1/handoffs", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    db.expire_all()
    items = {item.promised_value: item for item in db.scalars(select(PromiseItem))}
    assert (
        items["Salt cell check before summer"].occasion,
        items["Salt cell check before summer"].occasion_on,
    ) == (
        BY_DATE,
        date(2027, 5, 31),
    )
    filter_clean = items["Filter clean"]
    assert (filter_clean.occasion, filter_clean.every, filter_clean.every_unit, filter_clean.owner) == (
        RECURRING,
        3,
        MONTHS,
        OFFICE,
    )
    assert items["Replace the skimmer lid"].occasion == FIRST_VISIT
    assert count_rows(db, PromiseTask) == 3


@pytest.mark.parametrize(
    ("promise", "field", "words"),
    [
        (
            {"kind": "gate_access", "value": "Code 4412", "occasion": "first_visit"},
            "promises.0.occasion",
            "Only",
        ),
        ({"kind": "equipment", "value": "Salt", "occasion": "by_date"}, "promises.0.date", "due by"),
        (
            {"kind": "equipment", "value": "Salt", "occasion": "by_date", "date": "2020-01-01"},
            "promises.0.date",
            "past",
        ),
        ({"kind": "equipment", "value": "Salt", "date": "next spring"}, "promises.0.date", "YYYY-MM-DD"),
        ({"kind": "equipment", "value": "Filter", "every": "99 months"}, "promises.0.every", "how often"),
        (
            {"kind": "equipment", "value": "Filter", "occasion": "sometimes"},
            "promises.0.occasion",
            "Choose when",
        ),
        ({"kind": "equipment", "value": "Filter", "owner": "the dog"}, "promises.0.owner", "who does it"),
        ({"kind": "equipment", "value": "Filter", "every": 3}, "promises.0.every", "text"),
    ],
)
def test_a_bad_when_is_refused_by_the_api_with_nothing_stored(client, db, runner, promise, field, words):
    token = runner.invoke(args=["create-api-token", "crm"]).output.strip().split()[-1]
    body = {
        "customer": {"name": "Dana Reyes", "email": "dana@example.com"},
        "service_address": "1820 W Palm Ln",
        "plan": "Weekly",
        "price_cents": 16500,
        "first_visit": (TODAY + timedelta(days=5)).isoformat(),
        "promises": [promise],
    }
    response = client.post("/api/v1/handoffs", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400
    assert words in response.get_json()["errors"][field]
    assert count_rows(db, PromiseItem) == 0 and count_rows(db, PromiseTask) == 0


def test_the_csv_import_reads_the_when_and_owner_columns(runner, db, tmp_path):
    visit = (TODAY + timedelta(days=9)).isoformat()
    path = tmp_path / "handoffs.csv"
    path.write_text(
        "customer_name,customer_email,service_address,plan,price,first_visit,equipment,equipment_when,equipment_owner\n"
        f"Ann One,ann@example.com,1 Alpha Rd,Weekly,165,{visit},Salt cell check,by 2027-05-31,office\n"
        f"Bo Two,bo@example.com,2 Beta Rd,Weekly,165,{visit},Filter clean,every 3 months,\n"
        f"Cy Three,cy@example.com,3 Gamma Rd,Weekly,165,{visit},Skimmer lid,,\n"
    )
    result = runner.invoke(args=["import-handoffs", str(path), "--no-send"])
    assert result.exit_code == 0, result.output
    db.expire_all()
    tasks = {task.item.promised_value: (task.due_on, task.owner) for task in db.scalars(select(PromiseTask))}
    assert tasks == {
        "Salt cell check": (date(2027, 5, 31), "office"),
        "Filter clean": (date.fromisoformat(visit), "technician"),
        "Skimmer lid": (date.fromisoformat(visit), "technician"),
    }
    filter_item = db.scalars(select(PromiseItem).where(PromiseItem.promised_value == "Filter clean")).one()
    assert (filter_item.every, filter_item.every_unit) == (3, MONTHS)


def test_a_bad_when_in_the_csv_names_its_column_and_imports_nothing(runner, db, tmp_path):
    visit = (TODAY + timedelta(days=9)).isoformat()
    path = tmp_path / "handoffs.csv"
    path.write_text(
        "customer_name,customer_email,service_address,plan,price,first_visit,equipment,equipment_when\n"
        f"Ann One,ann@example.com,1 Alpha Rd,Weekly,165,{visit},Salt cell check,before summer\n"
        f"Bo Two,bo@example.com,2 Beta Rd,Weekly,165,{visit},Filter clean,by 2020-01-01\n"
    )
    result = runner.invoke(args=["import-handoffs", str(path), "--no-send"])
    assert result.exit_code == 1
    assert "row 2, equipment_when: Say when" in result.output
    assert "row 3, equipment_when: The date cannot be in the past." in result.output
    assert count_rows(db, PromiseItem) == 0 and count_rows(db, PromiseTask) == 0


def test_the_handoff_form_sets_when_and_who_and_the_edit_changes_it_on_the_record(
    client, db, staff, make_staff
):
    sales = make_staff("sales", name="Sam Seller")
    staff.login(sales)
    page = client.get("/staff/handoffs/new").get_data(as_text=True)
    visit = (TODAY + timedelta(days=6)).isoformat()
    data = {
        **form_fields(page),
        "customer_name": "Dana Reyes",
        "customer_email": "dana@example.com",
        "service_address": "1820 W Palm Ln",
        "plan": "Weekly full service",
        "visits_per_week": "1",
        "price": "165",
        "first_visit": visit,
        "salesperson_id": str(sales.id),
        "equipment-0": "Salt cell check before summer",
        "equipment_when-0-occasion": "by_date",
        "equipment_when-0-date": "2027-05-31",
        "equipment_when-0-owner": "technician",
        "equipment-1": "Replace the skimmer lid",
    }
    response = client.post("/staff/handoffs/new", data=data)
    assert response.status_code == 302, _text(response.get_data(as_text=True))[:2000]
    db.expire_all()
    salt = db.scalars(select(PromiseItem).where(PromiseItem.promised_value.like("Salt%"))).one()
    lid = db.scalars(select(PromiseItem).where(PromiseItem.promised_value.like("Replace%"))).one()
    assert (salt.occasion, salt.occasion_on) == (BY_DATE, date(2027, 5, 31))
    assert lid.occasion == FIRST_VISIT  # left as usual

    edit_url = f"/staff/accounts/{salt.account_id}/edit"
    edit = client.get(edit_url).get_data(as_text=True)
    fields = dict(re.findall(r'name="([^"]+)"[^>]*value="([^"]*)"', edit))
    row = next(k.split("-")[1] for k, v in fields.items() if k.endswith("-item_id") and v == str(salt.id))
    assert fields[f"rows-{row}-when-date"] == "2027-05-31"
    selected = dict(
        re.findall(r'<select[^>]*name="([^"]+)"[^>]*>.*?<option selected value="([^"]*)"', edit, re.S)
    )
    form = {k: v for k, v in fields.items() if not k.startswith("csrf")}
    form.update(selected)
    form.update({f"rows-{row}-when-occasion": "recurring", f"rows-{row}-when-every": "6 months"})
    form[f"rows-{row}-when-date"] = ""
    response = client.post(edit_url, data=form)
    assert response.status_code == 302, _text(response.get_data(as_text=True))[:3000]
    db.expire_all()
    salt = db.get(PromiseItem, salt.id)
    assert (salt.occasion, salt.every, salt.every_unit) == (RECURRING, 6, MONTHS)
    [entry] = [e for e in record.entries_for(db, salt.account_id) if e.event == "promise_occasion"]
    assert entry.item_id == salt.id and entry.note.startswith("Every 6 months")
    [task] = db.scalars(select(PromiseTask).where(PromiseTask.item_id == salt.id)).all()
    assert task.due_on == date.fromisoformat(visit)  # a repeat without a start counts from the first visit


# -- the day list and the brief ------------------------------------------------------------------


@pytest.fixture
def route(db, make_staff):
    """Two accounts: Ann's first visit in 3 days, Bo's in 4. Ann: a lid on the first visit, a
    salt check due later, an office task; Bo: a filter clean from his first visit."""
    ann_visit, bo_visit = TODAY + timedelta(days=3), TODAY + timedelta(days=4)
    ann = _handoff(
        db,
        make_staff,
        name="Ann Alpha",
        first_visit=ann_visit,
        promises=[
            Promise("equipment", "Replace the skimmer lid"),
            Promise(
                "equipment",
                "Salt cell check before summer",
                occasion=Occasion(BY_DATE, on=TODAY + timedelta(days=60)),
            ),
            Promise("custom", "Welcome kit", "Kit", occasion=Occasion(FIRST_VISIT, owner=OFFICE)),
        ],
    )
    bo = _handoff(
        db,
        make_staff,
        name="Bo Beta",
        first_visit=bo_visit,
        promises=[Promise("equipment", "Filter clean", occasion=Occasion(RECURRING, every=1, unit=MONTHS))],
    )
    return ann, bo


def test_the_day_list_shows_each_visits_due_work_and_not_others(client, db, staff, make_staff, route):
    ann, bo = route
    staff.login(make_staff("technician"))
    ann_day = _text(client.get(f"/staff/day?date={ann.first_visit.isoformat()}").get_data(as_text=True))
    assert "Promised work due" in ann_day and "Replace the skimmer lid" in ann_day
    assert "Salt cell check" not in ann_day  # due later than this visit
    assert "Welcome kit" not in ann_day  # the office's, not the technician's
    assert "Filter clean" not in ann_day  # Bo's
    bo_day = _text(client.get(f"/staff/day?date={bo.first_visit.isoformat()}").get_data(as_text=True))
    assert "Filter clean" in bo_day and "skimmer" not in bo_day


def test_work_due_after_the_first_visit_is_on_that_days_list(client, db, staff, make_staff, route):
    ann, bo = route
    staff.login(make_staff("technician"))
    salt_day = TODAY + timedelta(days=60)
    page = client.get(f"/staff/day?date={salt_day.isoformat()}").get_data(as_text=True)
    routine = _text(page.split('id="routine-work"', 1)[1])
    assert "Ann Alpha" in routine and "Salt cell check before summer" in routine
    assert "Bo Beta" not in routine  # his monthly clean is not due that day
    day_before = client.get(f"/staff/day?date={(salt_day - timedelta(days=1)).isoformat()}")
    assert "Salt cell check" not in day_before.get_data(as_text=True)
    staff.logout()
    staff.login(make_staff("sales"))  # another salesperson's accounts are not on their list
    assert "Ann Alpha" not in client.get(f"/staff/day?date={salt_day.isoformat()}").get_data(as_text=True)


def test_the_brief_shows_the_work_due_on_its_visit_with_a_form_each(client, db, staff, make_staff, route):
    ann, bo = route
    staff.login(make_staff("technician"))
    page = client.get(f"/staff/accounts/{ann.id}/brief").get_data(as_text=True)
    work = _text(page.split('id="work"', 1)[1].split("</section>", 1)[0])
    assert "Replace the skimmer lid" in work and "Welcome kit" in work and "Office" in work
    assert "Salt cell check" not in work and "Filter clean" not in work
    assert page.count(f'action="/staff/accounts/{ann.id}/tasks/') == 2
    other = _text(client.get(f"/staff/accounts/{bo.id}/brief").get_data(as_text=True))
    assert "Filter clean" in other and "skimmer" not in other


# -- closing a task ----------------------------------------------------------------------------------


def _task(db, account, value):
    return next(
        task for task in _tasks(db, account) if task.item.promised_value == value and task.status == "open"
    )


def _close(client, account, task, outcome, note=""):
    page = client.get(f"/staff/accounts/{account.id}/brief").get_data(as_text=True)
    action = f'action="/staff/accounts/{account.id}/tasks/{task.id}"'
    fields = form_fields(page.split(action, 1)[1])
    prefix = f"t{task.id}-"
    return client.post(
        f"/staff/accounts/{account.id}/tasks/{task.id}",
        data={**fields, f"{prefix}outcome": outcome, f"{prefix}note": note},
    )


def test_done_is_a_record_entry_and_closes_the_task(client, db, staff, make_staff, route):
    ann, _ = route
    tech = make_staff("technician", name="Tia Tech")
    staff.login(tech)
    lid = _task(db, ann, "Replace the skimmer lid")
    response = _close(client, ann, lid, "done", "New lid fitted, old one cracked")
    assert response.status_code == 302 and response.headers["Location"].endswith(
        f"/accounts/{ann.id}/brief#work"
    )
    db.expire_all()
    lid = db.get(PromiseTask, lid.id)
    assert (lid.status, lid.done_on, lid.by_id, lid.note) == (
        "done",
        company_today(),
        tech.id,
        "New lid fitted, old one cracked",
    )
    [entry] = [e for e in record.entries_for(db, ann.id) if e.event == "task_done"]
    assert entry.actor == f"staff:{tech.id}" and entry.note == "New lid fitted, old one cracked"
    assert entry.details["task"] == lid.id and entry.details["on_time"] is True
    assert entry.outcome is None  # the promise's confirmation state is untouched
    brief = _text(client.get(f"/staff/accounts/{ann.id}/brief").get_data(as_text=True))
    assert "Marked done: Equipment." in brief
    assert "Replace the skimmer lid" not in brief.split("Promised work due", 1)[-1].split("The service")[0]


def test_couldnt_do_needs_a_reason_and_keeps_the_task_open(client, db, staff, make_staff, route):
    ann, _ = route
    tech = make_staff("technician")
    staff.login(tech)
    lid = _task(db, ann, "Replace the skimmer lid")
    entries = count_rows(db, RecordEntry)

    refused = _close(client, ann, lid, "missed", "   ")
    assert refused.status_code == 400
    assert "Say why it couldn" in _text(refused.get_data(as_text=True))
    assert count_rows(db, RecordEntry) == entries
    db.expire_all()
    assert db.get(PromiseTask, lid.id).missed_on is None

    response = _close(client, ann, lid, "missed", "Wrong lid size in the van")
    assert response.status_code == 302
    db.expire_all()
    task = db.get(PromiseTask, lid.id)
    assert (task.status, task.missed_on, task.note) == ("open", company_today(), "Wrong lid size in the van")
    [entry] = [e for e in record.entries_for(db, ann.id) if e.event == "task_missed"]
    assert entry.note == "Wrong lid size in the van" and entry.actor == f"staff:{tech.id}"
    brief = _text(client.get(f"/staff/accounts/{ann.id}/brief").get_data(as_text=True))
    assert "Couldn't do on" in brief and "Wrong lid size in the van" in brief


def test_bad_closes_are_refused_with_nothing_changed(app, client, db, staff, make_staff, route):
    ann, bo = route
    staff.login(make_staff("technician"))
    lid = _task(db, ann, "Replace the skimmer lid")
    before = (count_rows(db, RecordEntry), count_rows(db, OutboxEmail))
    page = client.get(f"/staff/accounts/{ann.id}/brief").get_data(as_text=True)
    fields = form_fields(page.split(f'/tasks/{lid.id}"', 1)[1])
    data = {**fields, f"t{lid.id}-outcome": "done"}
    # Another account's task through this account's URL, a task that does not exist, a
    # deleted account: all 404, no hint.
    assert client.post(f"/staff/accounts/{bo.id}/tasks/{lid.id}", data=data).status_code == 404
    assert client.post(f"/staff/accounts/{ann.id}/tasks/999999", data=data).status_code == 404
    assert client.post(f"/staff/accounts/999999/tasks/{lid.id}", data=data).status_code == 404
    # A made-up outcome.
    assert (
        client.post(
            f"/staff/accounts/{ann.id}/tasks/{lid.id}", data={**data, f"t{lid.id}-outcome": "maybe"}
        ).status_code
        == 400
    )
    # Sales may see the account but not mark work.
    staff.logout()
    staff.login(make_staff("sales"))
    assert client.post(f"/staff/accounts/{ann.id}/tasks/{lid.id}", data=data).status_code == 403
    staff.logout()
    assert client.post(f"/staff/accounts/{ann.id}/tasks/{lid.id}", data=data).status_code in (302, 401)
    assert (count_rows(db, RecordEntry), count_rows(db, OutboxEmail)) == before
    db.expire_all()
    assert db.get(PromiseTask, lid.id).status == "open"


def test_a_customer_session_cannot_mark_work(client, db, make_staff):
    account = _handoff(
        db, make_staff, first_visit=TODAY + timedelta(days=3), promises=[Promise("equipment", "Lid")]
    )
    sent = send_welcome(db, account, "system")
    db.commit()
    open_link(client, "/welcome/t/" + token_of(sent.url))
    [task] = _tasks(db, account)
    response = client.post(
        f"/staff/accounts/{account.id}/tasks/{task.id}", data={f"t{task.id}-outcome": "done"}
    )
    assert response.status_code in (302, 401, 403) and "/welcome" not in response.headers.get("Location", "")
    db.expire_all()
    assert db.get(PromiseTask, task.id).status == "open"


@pytest.mark.csrf
def test_closing_without_the_csrf_token_changes_nothing(client, db, staff, make_staff, route):
    ann, _ = route
    staff.login(make_staff("technician"))
    lid = _task(db, ann, "Replace the skimmer lid")
    before = count_rows(db, RecordEntry)
    page = client.get(f"/staff/accounts/{ann.id}/brief").get_data(as_text=True)
    fields = form_fields(page.split(f'/tasks/{lid.id}"', 1)[1])
    assert any(name.endswith("csrf_token") for name in fields)
    fields = {name: value for name, value in fields.items() if not name.endswith("csrf_token")}
    response = client.post(
        f"/staff/accounts/{ann.id}/tasks/{lid.id}", data={**fields, f"t{lid.id}-outcome": "done"}
    )
    assert response.status_code == 400
    assert count_rows(db, RecordEntry) == before
    db.expire_all()
    assert db.get(PromiseTask, lid.id).status == "open"


def test_the_same_form_posted_twice_closes_once(client, db, staff, make_staff, route):
    ann, _ = route
    staff.login(make_staff("technician"))
    lid = _task(db, ann, "Replace the skimmer lid")
    page = client.get(f"/staff/accounts/{ann.id}/brief").get_data(as_text=True)
    fields = form_fields(page.split(f'/tasks/{lid.id}"', 1)[1])
    data = {**fields, f"t{lid.id}-outcome": "missed", f"t{lid.id}-note": "Gate locked"}
    assert client.post(f"/staff/accounts/{ann.id}/tasks/{lid.id}", data=data).status_code == 302
    assert client.post(f"/staff/accounts/{ann.id}/tasks/{lid.id}", data=data).status_code == 302
    assert len([e for e in record.entries_for(db, ann.id) if e.event == "task_missed"]) == 1


def test_a_repeating_promise_makes_its_next_occurrence_when_one_is_closed(db, make_staff):
    start = date(2027, 1, 31)
    account = _handoff(
        db,
        make_staff,
        first_visit=TODAY + timedelta(days=2),
        promises=[
            Promise("equipment", "Filter clean", occasion=Occasion(RECURRING, on=start, every=1, unit=MONTHS))
        ],
    )
    tech = make_staff("technician")
    [first] = _tasks(db, account)
    assert (first.occurrence, first.due_on) == (0, start)
    follow_through.mark_done(db, first, tech, "", date(2027, 1, 30))
    db.commit()
    tasks = _tasks(db, account)
    assert [(t.occurrence, t.due_on, t.status) for t in tasks] == [
        (0, start, "done"),
        (1, date(2027, 2, 28), "open"),
    ]
    # Closed months late: the next one is the first still ahead, not a string of overdue ones.
    follow_through.mark_done(db, tasks[1], tech, "", date(2027, 6, 2))
    db.commit()
    assert [(t.occurrence, t.due_on, t.status) for t in _tasks(db, account)][1:] == [
        (1, date(2027, 2, 28), "done"),
        (5, date(2027, 6, 30), "open"),
    ]
    assert count_rows(db, PromiseTask) == 3  # one open occurrence at a time
    with pytest.raises(follow_through.TaskError):
        follow_through.mark_done(db, tasks[0], tech, "", date(2027, 6, 2))


def test_a_withdrawn_promise_or_a_moved_first_visit_moves_its_task(db, make_staff):
    visit = TODAY + timedelta(days=3)
    account = _handoff(
        db, make_staff, first_visit=visit, promises=[Promise("equipment", "Lid"), Promise("equipment", "Net")]
    )
    from portal.demo import demo_handoff
    from portal.handoffs import update_handoff

    data = demo_handoff()
    data.first_visit = visit + timedelta(days=5)
    data.promises = [Promise("visit_day", "Friday"), Promise("equipment", "Lid")]
    lid = _item(account, "Lid")
    update_handoff(db, account, data, [None, lid.id], account.salesperson, "staff:1")
    db.commit()
    assert [(t.item.promised_value, t.due_on) for t in _tasks(db, account)] == [
        ("Lid", visit + timedelta(days=5))
    ]


# -- overdue: the office inbox -------------------------------------------------------------------------


def test_overdue_work_reaches_the_inbox_once(client, db, staff, make_staff, route):
    ann, bo = route
    later = ann.first_visit + timedelta(
        days=1
    )  # Ann's first-visit work is now late; Bo's filter is due today
    assert follow_through.raise_overdue(db, later) == 2  # the lid and the office's welcome kit
    db.commit()
    assert follow_through.raise_overdue(db, later) == 0
    assert follow_through.raise_overdue(db, later + timedelta(days=7)) == 1  # Bo's filter, a week late
    db.commit()
    raised = db.scalars(select(FollowUp).order_by(FollowUp.id)).all()
    assert [(f.account_id, f.kind) for f in raised] == [(ann.id, "task_overdue")] * 2 + [
        (bo.id, "task_overdue")
    ]
    assert raised[0].summary == "Equipment: Replace the skimmer lid"
    assert "Due " in raised[0].detail
    assert len([e for e in record.entries_for(db, ann.id) if e.event == "follow_up_raised"]) == 2
    # The office closes one; the task is still late, and is not raised again.
    follow_ups.close(db, raised[0].id, make_staff("office"), "Rescheduled with Ann")
    db.commit()
    assert follow_through.raise_overdue(db, later + timedelta(days=30)) == 0
    staff.login(make_staff("office"))
    inbox = _text(client.get("/staff/differences").get_data(as_text=True))
    assert "Overdue promise" in inbox and "Filter clean" in inbox


def test_the_worker_job_raises_overdue_work(app, db, make_staff):
    from portal.worker import raise_overdue_work

    account = _handoff(db, make_staff, first_visit=TODAY, promises=[Promise("equipment", "Lid")])
    [task] = _tasks(db, account)
    task.due_on = TODAY - timedelta(days=2)
    db.commit()
    with app.app_context():
        outcome = raise_overdue_work(None)  # type: ignore[arg-type]
    assert outcome.summary == "1 overdue promise(s) to the office"
    db.expire_all()
    assert count_rows(db, FollowUp) == 1
    with app.app_context():
        assert raise_overdue_work(None).summary == ""  # type: ignore[arg-type]
    db.expire_all()
    assert count_rows(db, FollowUp) == 1


# -- the customer -----------------------------------------------------------------------------------


@pytest.fixture
def smtp(app, smtp_server: SmtpServer) -> SmtpServer:  # noqa: F811
    app.config.update(MAIL_BACKEND="smtp", SMTP_HOST=smtp_server.host, SMTP_PORT=smtp_server.port)
    return smtp_server


def test_my_service_shows_each_deliverables_state_and_a_one_time_done_emails_the_customer(
    client, app, db, make_staff, smtp
):
    visit = TODAY + timedelta(days=3)
    account = _handoff(
        db,
        make_staff,
        first_visit=visit,
        promises=[
            Promise(
                "equipment", "Salt cell check", occasion=Occasion(BY_DATE, on=visit + timedelta(days=40))
            ),
            Promise(
                "equipment", "Filter clean", occasion=Occasion(RECURRING, on=visit, every=3, unit=MONTHS)
            ),
            Promise("custom", "Text before arriving"),
        ],
    )
    sent = send_welcome(db, account, "system")
    db.commit()
    open_link(client, "/welcome/t/" + token_of(sent.url))
    step = client.get("/welcome/step/promises").get_data(as_text=True)
    assert f"When: By {(visit + timedelta(days=40)).strftime('%B %-d, %Y')}, by your technician" in _text(
        step
    )
    assert complete(client) == "/welcome/thanks"
    page = _text(client.get("/welcome/service").get_data(as_text=True))
    assert f"Due by {(visit + timedelta(days=40)).strftime('%B %-d, %Y')}" in page
    assert f"Next: {visit.strftime('%B %Y')}" in page

    tech = make_staff("technician")
    salt = _task(db, account, "Salt cell check")
    filter_clean = _task(db, account, "Filter clean")
    follow_through.mark_done(db, salt, tech, "Cell clean, output 80 %", TODAY)
    follow_through.mark_done(db, filter_clean, tech, "", TODAY)  # a repeat: no email
    db.commit()
    assert [e.kind for e in db.scalars(select(OutboxEmail)) if e.kind == "promise_kept"] == ["promise_kept"]
    while deliver_pending(db).deliveries:
        pass
    [message] = [m for m in smtp.messages if "done" in m["Subject"]]
    assert message["To"] == account.customer.email
    assert message["Subject"].endswith("equipment done")
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for part in (text, html):
        assert "Salt cell check" in part and TODAY.strftime("%B %-d, %Y") in part
        assert "output 80" not in part  # the technician's note stays with staff
    page = _text(client.get("/welcome/service").get_data(as_text=True))
    assert f"Done on {TODAY.strftime('%B %-d, %Y')}" in page
    assert f"Next: {add_months(visit, 3).strftime('%B %Y')}" in page


# -- the report --------------------------------------------------------------------------------------


def test_the_report_counts_promises_kept_on_time_by_kind_salesperson_and_technician(
    client, db, staff, make_staff
):
    sam, kim = make_staff("sales", name="Sam Seller"), make_staff("sales", name="Kim Closer")
    tia, tom = make_staff("technician", name="Tia Tech"), make_staff("technician", name="Tom Tech")
    visit = TODAY + timedelta(days=1)
    ann = _handoff(
        db,
        make_staff,
        name="Ann Alpha",
        first_visit=visit,
        salesperson=sam,
        promises=[
            Promise("equipment", "Lid"),
            Promise("equipment", "Salt"),
            Promise("custom", "Kit", "Kit", Occasion(FIRST_VISIT)),
        ],
    )
    bo = _handoff(
        db,
        make_staff,
        name="Bo Beta",
        first_visit=visit,
        salesperson=kim,
        promises=[Promise("equipment", "Net")],
    )
    # Known answers, judged on `visit + 3`: Ann's lid on time (Tia), salt late (Tom), kit not
    # done (nobody); Bo's net on time (Tom).
    follow_through.mark_done(db, _task(db, ann, "Lid"), tia, "", visit)
    follow_through.mark_done(db, _task(db, ann, "Salt"), tom, "", visit + timedelta(days=2))
    follow_through.mark_done(db, _task(db, bo, "Net"), tom, "", visit)
    db.commit()
    report = follow_through.kept_on_time(db, make_staff("office"), visit + timedelta(days=3))
    as_tuples = lambda rows: {(k.label, k.due, k.on_time, k.percent) for k in rows}  # noqa: E731
    assert as_tuples(report.by_kind) == {("Equipment", 3, 2, 66.7), ("Other promise", 1, 0, 0.0)}
    assert as_tuples(report.by_salesperson) == {("Sam Seller", 3, 1, 33.3), ("Kim Closer", 1, 1, 100.0)}
    assert as_tuples(report.by_technician) == {
        ("Tia Tech", 1, 1, 100.0),
        ("Tom Tech", 2, 1, 50.0),
        ("Not done yet", 1, 0, 0.0),
    }
    # Sales see their own accounts only.
    assert as_tuples(follow_through.kept_on_time(db, sam, visit + timedelta(days=3)).by_salesperson) == {
        ("Sam Seller", 3, 1, 33.3)
    }

    staff.login(make_staff("admin"))
    page = client.get("/staff/reports").get_data(as_text=True)
    kept = page.split('id="kept"', 1)[1].split("</section>", 1)[0]
    assert kept.count("<svg") == 3
    assert "1 of 2 (50.0 %)" in kept and "Tom Tech" in kept
    rows = list(csv.reader(io.StringIO(client.get("/staff/reports.csv").get_data(as_text=True))))
    # Judged today: work due by today or done early counts (the kit, due tomorrow, not yet).
    assert ["kept_by_technician", "Tom Tech", "2", "1", "50.0"] in rows
    assert ["kept_by_salesperson", "Kim Closer", "1", "1", "100.0"] in rows
