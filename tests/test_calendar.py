"""The visit calendar file: what a calendar application reads back from it."""

from __future__ import annotations

from datetime import date

from icalendar import Calendar, Event

from portal.models import Account
from portal.welcome.calendar import weekly_visit

ADDRESS = (
    "1820 W Palm Ln, Unit 4; Gate B\r\nPhoenix, AZ 85007 \\ behind the big mesquite tree by the side gate"
)


def _event(ics: str) -> Event:
    [event] = Calendar.from_ical(ics).walk("VEVENT")
    return event


def test_the_visit_file_reads_back_as_a_weekly_all_day_event():
    ics = weekly_visit(
        Account(id=7, service_address=ADDRESS),
        "Blue Lagoon, Pool Care",
        date(2026, 12, 4),
        ["Friday", "Tuesday"],
    )
    calendar = Calendar.from_ical(ics)
    assert str(calendar["VERSION"]) == "2.0"
    event = _event(ics)
    assert event.decoded("DTSTART") == date(2026, 12, 4)  # a date: all day
    assert str(event["SUMMARY"]) == "Blue Lagoon, Pool Care pool service"
    assert str(event["LOCATION"]).replace("\r", "") == ADDRESS.replace("\r", "")
    assert str(event["UID"]) == "visit-7@handoff-portal"
    assert event.decoded("DTSTAMP").tzinfo is not None
    rule = event["RRULE"]
    assert rule["FREQ"] == ["WEEKLY"] and rule["BYDAY"] == ["FR", "TU"]


def test_the_visit_file_follows_the_line_rules_calendar_applications_expect():
    account = Account(id=7, service_address=ADDRESS * 2)
    ics = weekly_visit(account, "Blue Lagoon", date(2026, 12, 4), ["Friday"])
    lines = ics.encode("utf-8").split(b"\r\n")
    assert lines[-1] == b""  # every line ends in CRLF
    assert all(len(line) <= 75 for line in lines)  # long ones folded (RFC 5545, 3.1)


def test_without_agreed_days_the_visit_is_a_single_day():
    account = Account(id=3, service_address="12 Elm St")
    event = _event(weekly_visit(account, "Blue Lagoon", date(2027, 1, 5), []))
    assert "RRULE" not in event
    assert event.decoded("DTSTART") == date(2027, 1, 5)
