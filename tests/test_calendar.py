"""The visit calendar file: what a calendar application reads back from it."""

from __future__ import annotations

from datetime import date, datetime, timezone

from icalendar import Calendar, Event

from portal.confirmations import Schedule
from portal.models import Account
from portal.welcome.calendar import visit_calendar

ADDRESS = (
    "1820 W Palm Ln, Unit 4; Gate B\r\nPhoenix, AZ 85007 \\ behind the big mesquite tree by the side gate"
)


def _event(ics: str | None) -> Event:
    assert ics is not None
    *_, event = Calendar.from_ical(ics).walk("VEVENT")  # the weekly one, after the first visit
    return event


def weekly_visit(account: Account, company: str, first: date | None, days: list[str]) -> str | None:
    changed = datetime(2026, 11, 30, 17, 5, tzinfo=timezone.utc)
    plan = Schedule(first=first, days=days, sequence=0, changed_at=changed)
    return visit_calendar(account, company, "America/Phoenix", plan, date(2026, 12, 1))


def test_the_visit_file_reads_back_as_a_weekly_all_day_event():
    ics = weekly_visit(
        Account(id=7, service_address=ADDRESS),
        "Blue Lagoon, Pool Care",
        None,
        ["Friday", "Tuesday"],
    )
    assert ics is not None
    calendar = Calendar.from_ical(ics)
    assert str(calendar["VERSION"]) == "2.0"
    event = _event(ics)
    assert event.decoded("DTSTART") == date(2026, 12, 1)  # a date: all day, the next Tuesday
    assert str(event["SUMMARY"]) == "Blue Lagoon, Pool Care pool service"
    assert str(event["LOCATION"]).replace("\r", "") == ADDRESS.replace("\r", "")
    assert str(event["UID"]) == "visit-7@handoff-portal"
    assert event.decoded("DTSTAMP").tzinfo is not None
    rule = event["RRULE"]
    assert rule["FREQ"] == ["WEEKLY"] and rule["BYDAY"] == ["FR", "TU"]


def test_the_visit_file_follows_the_line_rules_calendar_applications_expect():
    account = Account(id=7, service_address=ADDRESS * 2)
    ics = weekly_visit(account, "Blue Lagoon", date(2026, 12, 4), ["Friday"])
    assert ics is not None
    lines = ics.encode("utf-8").split(b"\r\n")
    assert lines[-1] == b""  # every line ends in CRLF
    assert all(len(line) <= 75 for line in lines)  # long ones folded (RFC 5545, 3.1)


def test_without_agreed_days_the_visit_is_a_single_day():
    account = Account(id=3, service_address="12 Elm St")
    ics = weekly_visit(account, "Blue Lagoon", date(2027, 1, 5), [])
    assert ics is not None and len(Calendar.from_ical(ics).walk("VEVENT")) == 1
    event = _event(ics)
    assert "RRULE" not in event
    assert event.decoded("DTSTART") == date(2027, 1, 5)


def test_without_a_first_visit_or_days_there_is_no_file():
    assert weekly_visit(Account(id=3, service_address="12 Elm St"), "Blue Lagoon", None, []) is None
