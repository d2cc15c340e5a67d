"""What a technician reads: the first-visit brief and the day list, safety and access first.

Both are built from the same lines (`lines_by_kind`), so a gate code or an undecided answer reads
the same on the day list as on the brief, and both ask the one access policy for their accounts.
Both show the value agreed for the visit's day: a change the office accepted from a later date
(the customer's "from Dec 10") is not in force yet on an earlier visit. An open change request
shows beside the agreed value, marked "customer asked to change".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from portal import access, access_card, confirmations, photos, record
from portal.handoffs import display_value
from portal.models import (
    DIFFERENT,
    Account,
    ChangeRequest,
    ChangeRequestStatus,
    Outcome,
    Photo,
    Role,
    StaffUser,
)

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
    asked: str = ""  # an open change request's value: "customer asked to change"
    asked_from: str = ""  # the date the customer gave for it, shown
    later: str = ""  # an agreed change not in force on the visit's day: "code 9911 from ..."

    @property
    def flagged(self) -> bool:
        """Undecided: a difference nobody resolved, or a change request nobody answered."""
        return self.unresolved or bool(self.asked)


@dataclass
class Brief:
    account: Account
    sections: list[tuple[str, list[BriefLine]]]
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)
    photos: list[Photo] = field(default_factory=list)
    card: access_card.CardOnDay | None = None  # the access card in force on the visit's day
    day: date | None = None

    @property
    def unresolved(self) -> list[BriefLine]:
        return [line for _, lines in self.sections for line in lines if line.flagged]

    @property
    def first(self) -> list[BriefLine]:
        """Safety and access, in that order, for the top of the page."""
        return [line for _, lines in self.sections for line in lines if line.kind in FIRST_KINDS]

    @property
    def rest(self) -> list[BriefLine]:
        return [line for _, lines in self.sections for line in lines if line.kind not in FIRST_KINDS]


def _line(state: record.ItemState, day: date, asked: ChangeRequest | None) -> BriefLine:
    """The value agreed for the visit on `day` (a change agreed from a later date is not yet
    in force), and an open change request beside it."""
    latest, item = state.latest, state.item
    return BriefLine(
        kind=item.kind,
        label=item.label,
        value=display_value(state.value_on(day), item.kind),
        later=f"{display_value(state.current_value, item.kind)} from "
        f"{display_value(state.effective_from.isoformat(), 'start_date')}"
        if state.effective_from is not None and day < state.effective_from
        else "",
        asked=asked.requested_value if asked is not None else "",
        asked_from=display_value(asked.effective_date.isoformat(), "start_date")
        if asked is not None and asked.effective_date
        else "",
        unresolved=state.outcome in DIFFERENT,
        promised=display_value(item.promised_value, item.kind),
        note=latest.note
        if latest is not None and latest.actor != "system" and not latest.note.startswith("promised by")
        else "",
        disputed=state.outcome == Outcome.DISPUTED.value,
    )


def lines_by_kind(
    states: Iterable[record.ItemState], day: date, asked: dict[int, ChangeRequest] | None = None
) -> list[tuple[str, list[BriefLine]]]:
    """The account's promises as (section title, lines), in SECTIONS order, empty ones left out:
    values as agreed for a visit on `day`, open change requests (by item id) beside them."""
    lines: dict[str, list[BriefLine]] = {kind: [] for kind, _ in SECTIONS}
    for state in states:
        lines.setdefault(state.item.kind, []).append(_line(state, day, (asked or {}).get(state.item.id)))
    return [(title, lines[kind]) for kind, title in SECTIONS if lines[kind]]


def open_requests_by_item(session: Session, account_ids: list[int]) -> dict[int, ChangeRequest]:
    """The latest open change request of each promise of these accounts, in one query."""
    if not account_ids:
        return {}
    found = session.scalars(
        select(ChangeRequest)
        .where(
            ChangeRequest.account_id.in_(account_ids),
            ChangeRequest.status == ChangeRequestStatus.OPEN.value,
            ChangeRequest.item_id.is_not(None),
        )
        .order_by(ChangeRequest.id)
    )
    return {change.item_id: change for change in found if change.item_id is not None}


def brief_for(session: Session, account: Account, today: date) -> Brief:
    """The first-visit brief: values as agreed for the first visit (today once it has passed)."""
    day = max(account.first_visit, today) if account.first_visit else today
    return Brief(
        account,
        lines_by_kind(
            record.item_states(session, account), day, open_requests_by_item(session, [account.id])
        ),
        confirmations.latest_step_details(session, account),
        photos.shown(session, account.id),
        access_card.card_on(session, account, day),
        day,
    )


# -- the day list --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayVisit:
    """One row of the day list: the account and its brief's lines."""

    account: Account
    sections: list[tuple[str, list[BriefLine]]]
    photos: tuple[Photo, ...] = ()
    card: access_card.CardOnDay | None = None  # the access card in force that day

    def _of(self, kind: str) -> list[BriefLine]:
        return [line for _, lines in self.sections for line in lines if line.kind == kind]

    @property
    def warnings(self) -> list[BriefLine]:
        return [line for _, lines in self.sections for line in lines if line.flagged]

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
    # The signed-in technician's id: their own visits lead, under "Your visits". None for
    # everyone else (the office sees one list, each row naming its technician).
    technician_id: int | None = None

    @property
    def groups(self) -> list[tuple[str, list[DayVisit]]]:
        """(heading, visits): one untitled group, or the technician's own then the others
        (unassigned and other technicians'), each in the list's address order."""
        if self.technician_id is None:
            return [("", self.visits)]
        yours = [visit for visit in self.visits if visit.account.technician_id == self.technician_id]
        others = [visit for visit in self.visits if visit.account.technician_id != self.technician_id]
        titled = (("Your visits", yours), ("Other visits", others))
        return [(title, found) for title, found in titled if found]


def visits_on(session: Session, day: date, user: StaffUser) -> list[DayVisit]:
    """The first visits on `day` that `user` may see, each with its brief's lines, photos and
    access card: six queries however many visits (accounts, with their technician joined,
    their items, the items' latest entries, open change requests, photos, access cards)."""
    accounts = list(
        session.scalars(
            select(Account)
            .where(*access.in_service(user), Account.first_visit == day)
            .options(selectinload(Account.all_items))
            .order_by(Account.service_address, Account.id)
        )
    )
    ids = [account.id for account in accounts]
    latest = record.latest_entries_by_item(session, ids)
    asked = open_requests_by_item(session, ids)
    pictures = photos.shown_by_account(session, ids)
    cards = access_card.cards_on(session, accounts, day)
    return [
        DayVisit(
            account,
            lines_by_kind(
                (record.ItemState(item, latest.get(item.id)) for item in account.items), day, asked
            ),
            tuple(pictures[account.id]),
            cards[account.id],
        )
        for account in accounts
    ]


def landing_day(session: Session, user: StaffUser, today: date) -> date:
    """Today if it has visits, else the next day that has one, else today (an empty list)."""
    found = session.scalar(
        select(func.min(Account.first_visit)).where(*access.in_service(user), Account.first_visit >= today)
    )
    return found or today


def neighbour_days(session: Session, user: StaffUser, day: date) -> tuple[date | None, date | None]:
    """The nearest day before and after `day` with visits `user` may see."""
    scope = access.in_service(user)
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
        technician_id=user.id if user.role == Role.TECHNICIAN.value else None,
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
