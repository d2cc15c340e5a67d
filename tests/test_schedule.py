"""The schedule: how many visits a week the plan has, the customer's ordered day preference,
the office's decision on it, the next visit and the .ics calendar (parsed back with icalendar).

Dates relative to today go through the pages as the customer and the office use them; fixed
dates (a daylight-saving change, a year end) go through the same functions the pages call,
with the company's clock given."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

import pytest
from dateutil.rrule import rrulestr
from icalendar import Calendar
from sqlalchemy import select

from portal import confirmations, record
from portal.company import company_today, forget_company
from portal.confirmations import Schedule
from portal.models import Account, CompanySettings, PromiseItem, RecordEntry
from portal.onboarding import send_welcome
from portal.welcome.calendar import visit_calendar
from tests.conftest import StaffBrowser, count_rows, form_fields
from tests.test_welcome import answer_all

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def next_weekday(name: str, after: date | None = None) -> date:
    """The first such weekday after `after` (today): a first visit always in the future."""
    start = after or date.today()
    return next(
        start + timedelta(days=n)
        for n in range(1, 8)
        if (start + timedelta(days=n)).weekday() == WEEKDAYS.index(name)
    )


def shown(day: date) -> str:
    return f"{day:%A, %B} {day.day}, {day.year}"


# -- the customer's side ----------------------------------------------------------------------


@pytest.fixture
def customer(client, db, make_account):
    """Open a welcome link for an account made with the given changes and go to the schedule
    step; returns the account."""

    def start(**changes):
        account = make_account(**changes)
        sent = send_welcome(db, account, "system")
        db.commit()
        assert client.get("/welcome/t/" + sent.url.rsplit("/welcome/t/", 1)[1]).status_code == 302
        finish(client, stop_before="/step/schedule")  # past the welcome step
        return account

    return start


def visit_item(account: Account) -> PromiseItem:
    return next(item for item in account.items if item.kind == "visit_day")


def prefer(client, account: Account, *days: str, comment: str = "Someone is home to open the gate"):
    """Answer the schedule step with an ordered preference; returns the response."""
    item = visit_item(account)
    html = client.get("/welcome/step/schedule").get_data(as_text=True)
    picked = {f"i{item.id}_pref{n}": day for n, day in enumerate(days, start=1)}
    return client.post(
        "/welcome/step/schedule",
        data=answer_all(html, **{f"i{item.id}_answer": "no", f"i{item.id}_comment": comment, **picked}),
    )


def finish(client, stop_before: str | None = None) -> None:
    """Answer every remaining step "that's right" and sign (or stop before a step)."""
    location = client.get("/welcome/").headers["Location"]
    while "/step/" in location:
        if stop_before and location.endswith(stop_before):
            return
        html = client.get(location).get_data(as_text=True)
        response = client.post(location, data=answer_all(html))
        assert response.status_code == 302, response.get_data(as_text=True)
        location = response.headers["Location"]
    assert location == "/welcome/thanks"


def next_visit_line(client) -> str:
    page = client.get("/welcome/service").get_data(as_text=True)
    found = re.search(r'<p class="next-visit">(.*?)</p>', page, re.S)
    assert found, page
    return re.sub(r"<[^>]+>", "", found.group(1))


def calendar_events(client) -> dict[str, object]:
    """The .ics read back: each event by UID."""
    response = client.get("/welcome/service/visit.ics")
    assert response.status_code == 200 and response.mimetype == "text/calendar"
    calendar = Calendar.from_ical(response.get_data(as_text=True))
    return {str(event["UID"]): event for event in calendar.walk("VEVENT")}


def dates_of(event, count: int) -> list[date]:
    """The first `count` days an event falls on, its recurrence expanded (dateutil)."""
    start = event.decoded("DTSTART")
    if "RRULE" not in event:
        return [start]
    rule = rrulestr(event["RRULE"].to_ical().decode(), dtstart=datetime.combine(start, datetime.min.time()))
    return [moment.date() for moment in rule[:count]]


def split(events: dict[str, object]) -> tuple[object, object | None]:
    first = next(e for uid, e in events.items() if uid.startswith("first-visit-"))
    weekly = next((e for uid, e in events.items() if uid.startswith("visit-")), None)
    return first, weekly


@pytest.mark.parametrize(
    "first_day, service_day, weekly_from_days",
    [
        ("Friday", "Friday", 7),  # on the service day: the weekly service starts a week later
        ("Wednesday", "Friday", 2),  # before it in the week
        ("Saturday", "Thursday", 5),  # after it: the next Thursday
    ],
)
def test_the_first_visit_is_a_visit_and_the_service_follows_on_the_agreed_day(
    client, customer, first_day, service_day, weekly_from_days
):
    first = next_weekday(first_day)
    account = customer(first_visit=first, promises=_promises(service_day))
    finish(client)
    line = next_visit_line(client)
    weekly_from = first + timedelta(days=weekly_from_days)
    assert line.startswith(f"Next visit: {shown(first)} (your first visit)")
    assert f"then every {service_day} from {shown(weekly_from)}" in line
    first_event, weekly = split(calendar_events(client))
    assert dates_of(first_event, 1) == [first]
    assert str(first_event["UID"]) == f"first-visit-{account.id}@handoff-portal"
    assert weekly is not None and str(weekly["UID"]) == f"visit-{account.id}@handoff-portal"
    assert dates_of(weekly, 3) == [weekly_from + timedelta(weeks=n) for n in range(3)]
    assert first not in dates_of(weekly, 3)  # the first visit is in the calendar once


def _promises(days: str):
    from portal.handoffs import Promise

    return [Promise("visit_day", days), Promise("gate_access", "Side gate, code 4412")]


def test_dana_prefers_tuesday_then_thursday_and_keeps_friday_until_the_office_decides(client, db, customer):
    """Reproduced: first visit on a Wednesday, Friday promised; Dana ticked Tuesday and Thursday
    and the portal said "every Tuesday and Thursday" from the Thursday, without the first visit."""
    first = next_weekday("Wednesday")
    account = customer(first_visit=first)  # the demo handoff: Friday, weekly
    assert prefer(client, account, "Tuesday", "Thursday").status_code == 302
    review = client.get("/welcome/step/review").get_data(as_text=True)
    assert "prefers Tuesday, then Thursday" in review
    finish(client)

    line = next_visit_line(client)
    friday = first + timedelta(days=2)
    assert line == f"Next visit: {shown(first)} (your first visit), then every Friday from {shown(friday)}"
    assert "Tuesday and Thursday" not in client.get("/welcome/service").get_data(as_text=True)
    first_event, weekly = split(calendar_events(client))
    assert dates_of(first_event, 1) == [first]
    assert weekly["RRULE"]["BYDAY"] == ["FR"] and dates_of(weekly, 2) == [friday, friday + timedelta(weeks=1)]

    entry = db.scalars(
        select(RecordEntry).where(
            RecordEntry.item_id == visit_item(account).id, RecordEntry.event == "answered"
        )
    ).one()
    assert entry.details == {"preferences": ["Tuesday", "Thursday"]}  # machine-readable, in order
    assert entry.confirmed_value == "prefers Tuesday, then Thursday"


def test_marcus_first_visit_on_friday_is_his_next_visit_before_the_saturdays(client, customer):
    """Reproduced: first visit Friday, Saturdays agreed; next visit was shown as the Saturday."""
    first = next_weekday("Friday")
    account = customer(
        customer_name="Marcus Lee",
        customer_email="marcus@example.com",
        first_visit=first,
        promises=_promises("Saturday"),
    )
    finish(client)
    saturday = first + timedelta(days=1)
    assert next_visit_line(client) == (
        f"Next visit: {shown(first)} (your first visit), then every Saturday from {shown(saturday)}"
    )
    first_event, weekly = split(calendar_events(client))
    assert dates_of(first_event, 1) == [first] and dates_of(weekly, 1) == [saturday]
    assert str(weekly["UID"]) == f"visit-{account.id}@handoff-portal"


@pytest.mark.parametrize(
    "picked, message",
    [
        (("Funday",), "Choose a day of the week from the list."),
        (("Tuesday", "Tuesday"), "Tuesday is chosen already"),
        ((), "Choose at least one day that suits you."),
    ],
)
def test_a_preference_that_is_not_weekdays_in_order_is_refused_and_nothing_changes(
    client, db, customer, picked, message
):
    account = customer(first_visit=next_weekday("Wednesday"))
    before = count_rows(db, RecordEntry)
    response = prefer(client, account, *picked)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    db.expire_all()
    assert count_rows(db, RecordEntry) == before
    assert db.get(PromiseItem, visit_item(account).id).current_outcome == "promised"


def test_a_twice_weekly_plan_asks_for_as_many_days_as_it_has_visits(client, db, customer):
    account = customer(
        first_visit=next_weekday("Wednesday"), visits_per_week=2, promises=_promises("Monday, Thursday")
    )
    page = client.get("/welcome/step/schedule").get_data(as_text=True)
    assert "Your plan has 2 visits a week" in page and "4th choice" in page and "5th choice" not in page
    before = count_rows(db, RecordEntry)
    refused = prefer(client, account, "Tuesday")
    assert refused.status_code == 400 and "choose at least 2 days" in refused.get_data(as_text=True)
    assert count_rows(db, RecordEntry) == before
    assert prefer(client, account, "Tuesday", "Friday", "Wednesday").status_code == 302
    finish(client)
    assert "every Monday and Thursday" in next_visit_line(client)  # still the promise


# -- the office decides -------------------------------------------------------------------------


@pytest.fixture
def office(app, db, client, make_staff):
    """The office on a browser of its own (the customer keeps theirs: `client`)."""
    browser = app.test_client()
    browser.test_session = db
    StaffBrowser(browser).login(make_staff("office", name="Olivia Office"))
    return browser


def _signed_with_preference(client, customer, *days: str, **changes) -> Account:
    account = customer(first_visit=next_weekday("Wednesday"), **changes)
    assert prefer(client, account, *days).status_code == 302
    finish(client)
    return account


def _resolve_page(office, account: Account) -> tuple[str, dict[str, str]]:
    page = office.get(f"/staff/differences/{visit_item(account).id}/resolve").get_data(as_text=True)
    return page, form_fields(page)


def test_the_office_sees_the_preference_in_order_and_agrees_the_first_choice(client, db, customer, office):
    account = _signed_with_preference(client, customer, "Tuesday", "Thursday")
    customer_calendar = calendar_events(client)
    page, hidden = _resolve_page(office, account)
    assert "prefers Tuesday, then Thursday" in page
    assert page.index("Tuesday (1st choice)") < page.index("Thursday (2nd choice)")
    assert "Agree one of the customer&#39;s days" in page

    response = office.post(
        f"/staff/differences/{visit_item(account).id}/resolve",
        data={**hidden, "action": "accept", "days": "Tuesday", "note": "Tuesday route has room"},
    )
    assert response.status_code == 302
    entry = db.scalars(select(RecordEntry).where(RecordEntry.event == "resolved")).one()
    assert entry.confirmed_value == "Tuesday" and entry.details["resolution"] == "accepted"
    assert entry.details["customer_preferences"] == ["Tuesday", "Thursday"]
    story = office.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    assert "customer prefers Tuesday, then Thursday" in story
    assert "office agreed Tuesday" in story

    # The customer's page and calendar follow the decision; the calendar's events are the same
    # ones (same UIDs), revised (a higher SEQUENCE), so a calendar updates rather than adds.
    first = account.first_visit
    tuesday = first + timedelta(days=6)
    assert (
        next_visit_line(client)
        == f"Next visit: {shown(first)} (your first visit), then every Tuesday from {shown(tuesday)}"
    )
    service = client.get("/welcome/service").get_data(as_text=True)
    assert "You asked for Tuesday, then Thursday. We agreed: Tuesday: Tuesday route has room." in service
    assert "prefers" not in service  # the customer reads their days, not the office's wording
    revised = calendar_events(client)
    assert set(revised) == set(customer_calendar)
    for uid, event in revised.items():
        assert int(event["SEQUENCE"]) > int(customer_calendar[uid]["SEQUENCE"])
        assert event.decoded("DTSTAMP") >= customer_calendar[uid].decoded("DTSTAMP")
    _, weekly = split(revised)
    assert weekly["RRULE"]["BYDAY"] == ["TU"] and dates_of(weekly, 1) == [tuesday]


def test_downloading_the_calendar_again_gives_the_same_events(client, customer):
    _signed_with_preference(client, customer, "Tuesday")
    once, again = calendar_events(client), calendar_events(client)
    assert set(once) == set(again) and len(once) == 2
    for uid in once:
        for name in ("SEQUENCE", "DTSTART", "RRULE"):
            assert once[uid].get(name) == again[uid].get(name)
        assert once[uid].decoded("DTSTAMP") == again[uid].decoded("DTSTAMP")


def test_the_office_keeps_the_promise_with_a_note(client, db, customer, office):
    account = _signed_with_preference(client, customer, "Tuesday", "Thursday")
    _, hidden = _resolve_page(office, account)
    url = f"/staff/differences/{visit_item(account).id}/resolve"
    refused = office.post(url, data={**hidden, "action": "keep", "note": ""})
    assert refused.status_code == 400
    kept = office.post(
        url, data={**hidden, "action": "keep", "note": "Called Dana: the Tuesday route is full"}
    )
    assert kept.status_code == 302
    entry = db.scalars(select(RecordEntry).where(RecordEntry.event == "resolved")).one()
    assert entry.confirmed_value == "Friday" and entry.details["resolution"] == "kept"
    assert entry.note == "Called Dana: the Tuesday route is full"
    story = office.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    assert "kept Friday (customer prefers Tuesday, then Thursday)" in story
    assert "every Friday" in next_visit_line(client)


@pytest.mark.parametrize(
    "days, message",
    [
        ((), "Choose one of the customer&#39;s days."),
        (("Monday",), "Choose from the days the customer gave: Tuesday, Thursday."),
        (("Funday",), "Choose from the days the customer gave: Tuesday, Thursday."),
        (("Tuesday", "Thursday"), "The plan has 1 visit a week: choose one of the customer"),
    ],
)
def test_a_day_the_customer_did_not_give_or_more_days_than_the_plan_is_refused(
    client, db, customer, office, days, message
):
    account = _signed_with_preference(client, customer, "Tuesday", "Thursday")
    _, hidden = _resolve_page(office, account)
    before = count_rows(db, RecordEntry)
    response = office.post(
        f"/staff/differences/{visit_item(account).id}/resolve",
        data={**hidden, "action": "accept", "days": list(days)},
    )
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    db.expire_all()
    assert count_rows(db, RecordEntry) == before
    assert db.get(PromiseItem, visit_item(account).id).current_outcome == "changed"
    assert "every Friday" in next_visit_line(client)


def test_a_twice_weekly_plan_agrees_two_of_the_customers_days(client, db, customer, office):
    account = _signed_with_preference(
        client,
        customer,
        "Friday",
        "Tuesday",
        "Wednesday",
        visits_per_week=2,
        promises=_promises("Monday, Thursday"),
    )
    _, hidden = _resolve_page(office, account)
    url = f"/staff/differences/{visit_item(account).id}/resolve"
    one = office.post(url, data={**hidden, "action": "accept", "days": ["Friday"]})
    assert one.status_code == 400 and "choose 2 of the customer" in one.get_data(as_text=True)
    both = office.post(url, data={**hidden, "action": "accept", "days": ["Friday", "Tuesday"]})
    assert both.status_code == 302
    assert db.scalars(select(RecordEntry).where(RecordEntry.event == "resolved")).one().confirmed_value == (
        "Tuesday, Friday"
    )
    assert "every Tuesday and Friday" in next_visit_line(client)


# -- the plan's visits a week -------------------------------------------------------------------


def test_a_handoff_without_visits_a_week_is_weekly_and_more_days_than_visits_is_refused(
    client, db, make_staff
):
    from portal import api_tokens

    make_staff("sales", email="sam@example.com", name="Sam Sales")
    token = api_tokens.create_token(db, "crm").plaintext
    db.commit()
    body = {
        "customer": {"name": "Dana Reyes", "email": "dana@example.com"},
        "service_address": "1820 W Palm Ln, Phoenix, AZ 85007",
        "plan": "Weekly full service",
        "price_cents": 16500,
        "first_visit": next_weekday("Wednesday").isoformat(),
        "salesperson_email": "sam@example.com",
        "promises": [{"kind": "visit_day", "value": "Mon and Thu"}],
    }
    headers = {"Authorization": f"Bearer {token}"}
    before = count_rows(db, Account)
    refused = client.post("/api/v1/handoffs", json=body, headers=headers)
    assert refused.status_code == 400
    assert refused.get_json()["errors"]["promises.0.value"].startswith("The plan has 1 visit a week but 2")
    for bad in (0, 8, "twice", True):
        wrong = client.post("/api/v1/handoffs", json={**body, "visits_per_week": bad}, headers=headers)
        assert wrong.status_code == 400 and "visits_per_week" in wrong.get_json()["errors"]
    assert count_rows(db, Account) == before
    twice = client.post("/api/v1/handoffs", json={**body, "visits_per_week": 2}, headers=headers)
    assert twice.status_code == 201
    weekly = client.post(
        "/api/v1/handoffs",
        json={**body, "customer": {"name": "Ann", "email": "ann@example.com"}, "promises": []},
        headers=headers,
    )
    assert weekly.status_code == 201
    db.expire_all()
    assert db.get(Account, twice.get_json()["id"]).visits_per_week == 2
    assert db.get(Account, weekly.get_json()["id"]).visits_per_week == 1


def test_the_handoff_form_offers_visits_a_week_defaulting_to_weekly(client, staff, make_staff, db):
    staff.login(make_staff("office"))
    page = client.get("/staff/handoffs/new").get_data(as_text=True)
    select_html = page.split('name="visits_per_week"', 1)[1].split("</select>", 1)[0]
    assert re.search(
        r'<option selected value="1">1 \(weekly\)</option>|<option value="1" selected>', select_html
    )


# -- the company's clock: a daylight-saving change and a year end ---------------------------------


def _in_zone(db, zone: str) -> None:
    db.add(CompanySettings(name="Blue Lagoon", timezone=zone, readiness_checklist=[]))
    db.commit()
    forget_company()


def _plan(first: date, days: list[str]) -> Schedule:
    return Schedule(first=first, days=days, sequence=0, changed_at=datetime(2026, 12, 1, tzinfo=timezone.utc))


def test_across_a_daylight_saving_change_the_days_stay_the_companys_days(app, db):
    """New York springs forward on Sunday 14 March 2027. Late on Sunday evening there, the UTC
    clock already says Monday: the next Sunday visit is that evening's day, not a week later."""
    _in_zone(db, "America/New_York")
    plan = _plan(date(2027, 3, 12), ["Sunday"])  # first visit Friday before the change
    sunday_evening = datetime(2027, 3, 15, 2, 30, tzinfo=timezone.utc)  # 22:30 EDT on the 14th
    today = company_today(sunday_evening)
    assert today == date(2027, 3, 14)
    assert plan.next_visit(today) == date(2027, 3, 14)
    assert plan.next_visit(sunday_evening.date()) == date(2027, 3, 21)  # what a UTC clock would say
    ics = visit_calendar(
        Account(id=5, service_address="1 Main St"), "Blue Lagoon", "America/New_York", plan, today
    )
    assert ics is not None
    calendar = Calendar.from_ical(ics)
    assert str(calendar["X-WR-TIMEZONE"]) == "America/New_York"
    first, weekly = calendar.walk("VEVENT")
    assert first.decoded("DTSTART") == date(2027, 3, 12)
    assert dates_of(weekly, 3) == [date(2027, 3, 14), date(2027, 3, 21), date(2027, 3, 28)]


def test_across_a_year_end_the_service_starts_in_the_new_year(app, db):
    _in_zone(db, "America/Phoenix")
    plan = _plan(date(2026, 12, 30), ["Friday"])  # a Wednesday
    assert plan.service_from == date(2027, 1, 1)
    assert plan.next_visit(date(2026, 12, 30)) == date(2026, 12, 30)
    assert plan.next_visit(date(2026, 12, 31)) == date(2027, 1, 1)
    new_year_eve = datetime(2027, 1, 1, 5, 0, tzinfo=timezone.utc)  # 22:00 on the 31st in Phoenix
    assert plan.next_visit(company_today(new_year_eve)) == date(2027, 1, 1)
    assert plan.next_visit(date(2027, 1, 2)) == date(2027, 1, 8)
    ics = visit_calendar(
        Account(id=5, service_address="1 Main St"), "Blue Lagoon", "America/Phoenix", plan, date(2026, 12, 31)
    )
    first, weekly = Calendar.from_ical(ics).walk("VEVENT")
    assert first.decoded("DTSTART") == date(2026, 12, 30)
    assert dates_of(weekly, 2) == [date(2027, 1, 1), date(2027, 1, 8)]


def test_after_the_first_visit_the_next_visit_is_the_next_agreed_day(app, db):
    plan = _plan(date(2026, 12, 9), ["Tuesday", "Thursday"])  # Wednesday
    assert plan.next_visit(date(2026, 12, 9)) == date(2026, 12, 9)  # the day of the first visit
    assert plan.next_visit(date(2026, 12, 10)) == date(2026, 12, 10)  # Thursday
    assert plan.next_visit(date(2026, 12, 11)) == date(2026, 12, 15)  # Friday: next Tuesday
    assert plan.service_from == date(2026, 12, 10)


def test_the_record_keeps_the_preference_and_the_decision_as_fields(client, db, customer, office):
    account = _signed_with_preference(client, customer, "Thursday", "Tuesday")
    _, hidden = _resolve_page(office, account)
    office.post(
        f"/staff/differences/{visit_item(account).id}/resolve",
        data={**hidden, "action": "accept", "days": "Tuesday"},
    )
    db.expire_all()
    account = db.get(Account, account.id)
    assert confirmations.agreed_days(db, account) == ["Tuesday"]
    assert record.verify_chain(db, account.id) is None
