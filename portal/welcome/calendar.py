"""An .ics file for the agreed visit day: a weekly, all-day event (RFC 5545)."""
from __future__ import annotations

from datetime import date, datetime, timezone

from portal.models import Account

BYDAY = {"Monday": "MO", "Tuesday": "TU", "Wednesday": "WE", "Thursday": "TH", "Friday": "FR",
         "Saturday": "SA", "Sunday": "SU"}


def _escape(text: str) -> str:
    return (text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r", "").replace("\n", "\\n"))


def weekly_visit(account: Account, company_name: str, first: date, days: list[str]) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Handoff Portal//Visit//EN", "CALSCALE:GREGORIAN",
        "BEGIN:VEVENT",
        f"UID:visit-{account.id}@handoff-portal",
        f"DTSTAMP:{stamp}",
        f"DTSTART;VALUE=DATE:{first:%Y%m%d}",
        f"SUMMARY:{_escape(company_name + ' pool service')}",
        f"LOCATION:{_escape(account.service_address)}",
    ]
    if days:
        lines.append(f"RRULE:FREQ=WEEKLY;BYDAY={','.join(BYDAY[d] for d in days)}")
    lines += ["END:VEVENT", "END:VCALENDAR"]
    return "\r\n".join(lines) + "\r\n"
