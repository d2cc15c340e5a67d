"""When a deliverable promise is due and who owns it: pure rules, no database.

A promise sales can be held to ("Salt cell check before summer", "Filter clean every 3 months")
has an occasion: on the first visit, by a date the salesperson picks, or recurring every N
weeks or months from a start date. Each occurrence is one follow-through task
(portal/follow_through.py); this module says when occurrence N is due and how the occasion
reads to people. Standing facts (visit day, gate, safety, price, billing) have no occasion.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

from portal.models import PromiseKind

NONE = "none"
FIRST_VISIT = "first_visit"
BY_DATE = "by_date"
RECURRING = "recurring"
OCCASIONS = (NONE, FIRST_VISIT, BY_DATE, RECURRING)
OCCASION_WORDS = {
    NONE: "Not tracked",
    FIRST_VISIT: "On the first visit",
    BY_DATE: "By a date",
    RECURRING: "Repeating",
}

TECHNICIAN = "technician"
OFFICE = "office"
OWNERS = {TECHNICIAN: "Route technician", OFFICE: "Office"}

WEEKS = "weeks"
MONTHS = "months"
# The longest gap a repeating promise may have: past it, "every" is a typo or a one-time promise.
MAX_EVERY = {WEEKS: 52, MONTHS: 24}
# How far ahead a "by" date or a start may lie.
MAX_AHEAD_DAYS = 3 * 366

# The kinds that can be a piece of work; the others are standing facts the customer confirms.
TRACKABLE_KINDS = (PromiseKind.EQUIPMENT.value, PromiseKind.CUSTOM.value)
# An equipment promise is work by nature ("replace the skimmer lid"): tracked unless sales says
# otherwise, on the first visit, by the route technician. Other promises are free text that is
# often a preference ("text before arriving"), so they are tracked only when asked.
DEFAULT_OCCASION = {PromiseKind.EQUIPMENT.value: FIRST_VISIT}


@dataclass(frozen=True)
class Occasion:
    """A deliverable promise's when and owner. `on` is the due date (BY_DATE) or the first
    occurrence's date (RECURRING; None: the first visit)."""

    kind: str
    owner: str = TECHNICIAN
    on: date | None = None
    every: int = 0
    unit: str = ""

    @property
    def tracked(self) -> bool:
        return self.kind != NONE

    @property
    def one_time(self) -> bool:
        return self.kind in (FIRST_VISIT, BY_DATE)

    def due(self, occurrence: int, first_visit: date | None) -> date | None:
        """The due date of occurrence `occurrence` (0 is the first), or None when it has none:
        not tracked, a one-time promise's later occurrences, or no first visit to count from."""
        if self.kind == FIRST_VISIT:
            return first_visit if occurrence == 0 else None
        if self.kind == BY_DATE:
            return self.on if occurrence == 0 else None
        if self.kind == RECURRING:
            start = self.on or first_visit
            if start is None:
                return None
            if self.unit == WEEKS:
                return start + timedelta(weeks=self.every * occurrence)
            return add_months(start, self.every * occurrence)
        return None

    def words(self, first_visit: date | None = None) -> str:
        """The occasion as the customer and the technician read it."""
        if self.kind == FIRST_VISIT:
            return "On the first visit"
        if self.kind == BY_DATE and self.on is not None:
            return f"By {long_date(self.on)}"
        if self.kind == RECURRING:
            period = unit_words(self.every, self.unit)
            start = self.on or first_visit
            return f"Every {period}" + (f", from {long_date(start)}" if start else "")
        return ""


def unit_words(every: int, unit: str) -> str:
    single = unit[:-1]
    return single if every == 1 else f"{every} {unit}"


def long_date(day: date) -> str:
    return day.strftime("%B %-d, %Y")


def add_months(start: date, months: int) -> date:
    """`start` moved by whole months, kept on its day or the month's last day: Jan 31 + 1 month
    is Feb 28 (29 in a leap year), and + 2 months is Mar 31 again. Occurrences count from the
    start, never from the previous one, so a short month does not pull later ones earlier."""
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def default_for(kind: str) -> Occasion:
    return Occasion(DEFAULT_OCCASION.get(kind, NONE))


EVERY = re.compile(r"^\s*(?:every\s+)?(\d{1,3})?\s*(weeks?|months?)\s*$", re.I)


def parse_every(text: str) -> tuple[int, str] | None:
    """ "3 months", "every 2 weeks", "month" -> (3, "months"), (2, "weeks"), (1, "months")."""
    found = EVERY.match(text)
    if found is None:
        return None
    unit = found.group(2).lower().rstrip("s") + "s"
    return int(found.group(1) or 1), unit


WHEN = re.compile(
    r"^\s*(?:(?P<first>(?:on\s+)?(?:the\s+)?first\s+visit)"
    r"|by\s+(?P<by>\S+)"
    r"|(?P<every>every\s+(?:\d{1,3}\s*)?(?:weeks?|months?))(?:\s+from\s+(?P<start>\S+))?"
    r"|(?P<none>none|not\s+tracked))\s*$",
    re.I,
)


def parse_when(text: str) -> dict[str, str] | None:
    """The CSV's one-cell occasion ("first visit", "by 2027-05-31", "every 3 months from
    2027-01-15", "none") as the API's promise fields; None when it is not one of those."""
    found = WHEN.match(text)
    if found is None:
        return None
    if found.group("first"):
        return {"occasion": FIRST_VISIT}
    if found.group("by"):
        return {"occasion": BY_DATE, "date": found.group("by")}
    if found.group("every"):
        fields = {"occasion": RECURRING, "every": found.group("every")}
        if found.group("start"):
            fields["date"] = found.group("start")
        return fields
    return {"occasion": NONE}
