"""The customer's visits as an .ics file (RFC 5545, written by icalendar): the first visit as
an event of its own, and the weekly service from the first agreed day after it.

Both are all-day events: the days are the company's days (computed in its time zone, which the
calendar names in X-WR-TIMEZONE); there is no visit time to carry a TZID, so a daylight-saving
change cannot move a visit to another day. Each event keeps its UID for good, and SEQUENCE and
DTSTAMP move only when the agreed schedule does, so downloading the file again updates the
calendar's copy instead of adding a second one."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from icalendar import Calendar, Event

from portal.confirmations import Schedule
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
EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


def first_visit_uid(account: Account) -> str:
    return f"first-visit-{account.id}@handoff-portal"


def service_uid(account: Account) -> str:
    # The UID the weekly event has always had: calendars that imported it before update it.
    return f"visit-{account.id}@handoff-portal"


def visit_calendar(account: Account, company_name: str, zone: str, plan: Schedule, today: date) -> str | None:
    """The calendar file, or None when there is nothing to put in it. `today` (the company's)
    only matters without a first visit: the weekly service then starts on the next agreed day."""
    events = []
    stamp = plan.changed_at or EPOCH
    if stamp.tzinfo is None:  # SQLite may hand a stored UTC time back naive
        stamp = stamp.replace(tzinfo=timezone.utc)
    if plan.first is not None:
        first = _event(account, plan, stamp, first_visit_uid(account), plan.first)
        first.add("summary", f"{company_name} pool service: first visit")
        events.append(first)
    start = plan.service_from if plan.first is not None else plan.next_visit(today)
    if plan.days and start is not None:
        weekly = _event(account, plan, stamp, service_uid(account), start)
        weekly.add("summary", f"{company_name} pool service")
        weekly.add("rrule", {"freq": "weekly", "byday": [BYDAY[day] for day in plan.days]})
        events.append(weekly)
    if not events:
        return None
    calendar = Calendar()
    calendar.add("prodid", "-//Handoff Portal//Visit//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-timezone", zone)
    for event in events:
        calendar.add_component(event)
    body: bytes = calendar.to_ical()
    return body.decode("utf-8")


def _event(account: Account, plan: Schedule, stamp: datetime, uid: str, day: date) -> Event:
    event = Event()
    event.add("uid", uid)
    # When this version of the schedule was made (RFC 5545: without METHOD, the last revision),
    # not when the file was downloaded: the same schedule downloads as the same events.
    event.add("dtstamp", stamp.astimezone(timezone.utc))
    event.add("last-modified", stamp.astimezone(timezone.utc))
    event.add("sequence", plan.sequence)
    event.add("dtstart", day)  # a date, so an all-day event
    event.add("dtend", day + timedelta(days=1))
    event.add("location", account.service_address)
    event.add("transp", "TRANSPARENT")  # a visit does not make the customer busy
    return event
