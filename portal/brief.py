"""What a technician reads: the first-visit brief and the day list, safety and access first.

Both are built from the same lines (`lines_by_kind`), so a gate code or an undecided answer reads
the same on the day list as on the brief, and both ask the one access policy for their accounts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from portal import access, confirmations, record
from portal.handoffs import display_value
from portal.models import DIFFERENT, Account, Outcome, StaffUser

# Safety and access lead: they are what goes wrong at the gate on a first visit.
FIRST = (("safety", "Safety"), ("gate_access", "Gate access"))
SECTIONS = (
    *FIRST,
    ("visit_day", "Visit day"),
    ("start_date", "First visit"),
    ("equipment", "Equipment promises"),
    ("custom", "Other promises"),
    ("price", "Plan and price"),
    ("billing", "Billing"),
)
FIRST_KINDS = tuple(kind for kind, _ in FIRST)


@dataclass(frozen=True)
class BriefLine:
    kind: str
    label: str
    value: str
    unresolved: bool  # the customer's answer differs from the promise and nobody decided yet
    promised: str
    note: str
    disputed: bool = False  # the customer said the promise is wrong without giving a new value


@dataclass
class Brief:
    account: Account
    sections: list[tuple[str, list[BriefLine]]]
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def unresolved(self) -> list[BriefLine]:
        return [line for _, lines in self.sections for line in lines if line.unresolved]

    @property
    def first(self) -> list[BriefLine]:
        """Safety and access, in that order, for the top of the page."""
        return [line for _, lines in self.sections for line in lines if line.kind in FIRST_KINDS]

    @property
    def rest(self) -> list[BriefLine]:
        return [line for _, lines in self.sections for line in lines if line.kind not in FIRST_KINDS]


def _line(state: record.ItemState) -> BriefLine:
    latest, item = state.latest, state.item
    return BriefLine(
        kind=item.kind,
        label=item.label,
        value=display_value(state.current_value, item.kind),
        unresolved=state.outcome in DIFFERENT,
        promised=display_value(item.promised_value, item.kind),
        note=latest.note
        if latest is not None and latest.actor != "system" and not latest.note.startswith("promised by")
        else "",
        disputed=state.outcome == Outcome.DISPUTED.value,
    )


def lines_by_kind(states: Iterable[record.ItemState]) -> list[tuple[str, list[BriefLine]]]:
    """The account's promises as (section title, lines), in SECTIONS order, empty ones left out."""
    lines: dict[str, list[BriefLine]] = {kind: [] for kind, _ in SECTIONS}
    for state in states:
        lines.setdefault(state.item.kind, []).append(_line(state))
    return [(title, lines[kind]) for kind, title in SECTIONS if lines[kind]]


def brief_for(session: Session, account: Account) -> Brief:
    return Brief(
        account,
        lines_by_kind(record.item_states(session, account)),
        confirmations.latest_step_details(session, account),
    )


# -- the day list --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayVisit:
    """One row of the day list: the account and its brief's lines."""

    account: Account
    sections: list[tuple[str, list[BriefLine]]]

    def _of(self, kind: str) -> list[BriefLine]:
        return [line for _, lines in self.sections for line in lines if line.kind == kind]

    @property
    def warnings(self) -> list[BriefLine]:
        return [line for _, lines in self.sections for line in lines if line.unresolved]

    @property
    def safety(self) -> list[BriefLine]:
        return self._of("safety")

    @property
    def gate(self) -> list[BriefLine]:
        return self._of("gate_access")


@dataclass(frozen=True)
class DayPage:
    day: date
    today: date
    visits: list[DayVisit]
    previous: date | None  # the nearest earlier day with visits
    next: date | None  # the nearest later day with visits
    day_before: date | None  # plain date - 1 (None only at the calendar's edge)
    day_after: date | None


def visits_on(session: Session, day: date, user: StaffUser) -> list[DayVisit]:
    """The first visits on `day` that `user` may see, each with its brief's lines: three queries
    however many visits (accounts, their items, the items' latest entries)."""
    accounts = list(
        session.scalars(
            select(Account)
            .where(*access.conditions(user), Account.first_visit == day)
            .options(selectinload(Account.all_items))
            .order_by(Account.service_address, Account.id)
        )
    )
    latest = record.latest_entries_by_item(session, [account.id for account in accounts])
    return [
        DayVisit(
            account, lines_by_kind(record.ItemState(item, latest.get(item.id)) for item in account.items)
        )
        for account in accounts
    ]


def landing_day(session: Session, user: StaffUser, today: date) -> date:
    """Today if it has visits, else the next day that has one, else today (an empty list)."""
    found = session.scalar(
        select(func.min(Account.first_visit)).where(*access.conditions(user), Account.first_visit >= today)
    )
    return found or today


def neighbour_days(session: Session, user: StaffUser, day: date) -> tuple[date | None, date | None]:
    """The nearest day before and after `day` with visits `user` may see."""
    scope = access.conditions(user)
    before = session.scalar(select(func.max(Account.first_visit)).where(*scope, Account.first_visit < day))
    after = session.scalar(select(func.min(Account.first_visit)).where(*scope, Account.first_visit > day))
    return before, after


def _step(day: date, days: int) -> date | None:
    try:
        return day + timedelta(days=days)
    except OverflowError:
        return None


def day_page(session: Session, user: StaffUser, day: date | None, today: date) -> DayPage:
    """The day list for `day`, or for the landing day when none was asked for."""
    shown = day if day is not None else landing_day(session, user, today)
    previous, following = neighbour_days(session, user, shown)
    return DayPage(
        day=shown,
        today=today,
        visits=visits_on(session, shown, user),
        previous=previous,
        next=following,
        day_before=_step(shown, -1),
        day_after=_step(shown, 1),
    )


# -- links a phone can tap -----------------------------------------------------------------------


def tel_uri(phone: str) -> str:
    """A `tel:` link for a phone number as people type it ("+1 (480) 555-0134")."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if not digits:
        return ""
    return "tel:" + ("+" if phone.strip().startswith("+") else "") + digits


MAPS_SEARCH = "https://www.google.com/maps/search/?api=1&query="


def map_url(address: str) -> str:
    """A maps search for the address: a plain link, nothing loaded from the maps site."""
    return MAPS_SEARCH + quote(address.strip(), safe="")
