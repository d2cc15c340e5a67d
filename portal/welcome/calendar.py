"""An .ics file for the agreed visit day: a weekly, all-day event (RFC 5545, written by icalendar)."""

from __future__ import annotations

from datetime import date, datetime, timezone

from icalendar import Calendar, Event

from portal.models import Account

BYDAY = {
    "Monday": "MO",
    "Tuesday": "TU",
    "Wednesday": "WE",
    "Thursday": "TH",
    "Friday": "FR",
    "Saturday": "SA",
    "Sunday": "SU",
}


def weekly_visit(account: Account, company_name: str, first: date, days: list[str]) -> str:
    event = Event()
    event.add("uid", f"visit-{account.id}@handoff-portal")
    event.add("dtstamp", datetime.now(timezone.utc))
    event.add("dtstart", first)  # a date, so an all-day event
    event.add("summary", f"{company_name} pool service")
    event.add("location", account.service_address)
    if days:
        event.add("rrule", {"freq": "weekly", "byday": [BYDAY[day] for day in days]})
    calendar = Calendar()
    calendar.add("prodid", "-//Handoff Portal//Visit//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add_component(event)
    body: bytes = calendar.to_ical()
    return body.decode("utf-8")
