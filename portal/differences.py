"""Promised versus confirmed: every item the customer changed or disputed, and its resolution.

Lists read the items' latest-entry pointers (see PromiseItem.latest_entry_id) and page by keyset
with a capped count (portal/keyset.py), so a page costs the same few queries, and about the same
time, whether there are ten accounts or a hundred thousand, on the first page or the last."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from typing import Any

from markupsafe import Markup, escape
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, lazyload, load_only

from portal import access, decisions, deliverables, keyset, record, webhooks
from portal.confirmations import preferences
from portal.handoffs import display_value
from portal.models import DIFFERENT, Account, PromiseItem, RecordEntry, Role, StaffUser
from portal.secret_codes import mailed_value
from portal.validation import WEEKDAYS

PER_PAGE = 25
STATUSES = ("open", "resolved")


class ResolutionError(ValueError):
    """The item is not an open difference (resolved already, or never differed)."""


@dataclass(frozen=True)
class DifferenceFilter:
    status: str = "open"
    kind: str | None = None
    salesperson_id: int | None = None
    visit_from: date | None = None
    visit_to: date | None = None
    after: str | None = None  # the cursor: the previous page's last row


@dataclass(frozen=True)
class DifferenceRow:
    item: PromiseItem
    account: Account
    latest: RecordEntry
    promised_by: StaffUser | None
    assignee: StaffUser | None

    # Each is shown more than once per row (the highlight, the empty check, the CSV).
    @cached_property
    def customer_value(self) -> str:
        if self.latest.outcome == "resolved":
            value = self.latest.details.get("customer_value")
        else:
            value = self.latest.confirmed_value
        return display_value(value, self.item.kind) if value else ""

    @cached_property
    def promised_value(self) -> str:
        return display_value(self.item.promised_value, self.item.kind)

    @cached_property
    def preferred_days(self) -> list[str]:
        """A visit-day answer's preferred days, 1st choice first (what the office picks from)."""
        if self.item.kind != "visit_day" or self.latest.outcome == "resolved":
            return []
        return preferences(self.latest)

    @cached_property
    def comment(self) -> str:
        if self.latest.outcome == "resolved":
            return str(self.latest.details.get("customer_comment", ""))
        return self.latest.note


def conditions(user: StaffUser, flt: DifferenceFilter) -> tuple[list[Any], list[Any]]:
    """The filter as conditions on items and on their accounts."""
    outcomes = DIFFERENT if flt.status == "open" else ("resolved",)
    on_item: list[Any] = [PromiseItem.current_outcome.in_(outcomes), PromiseItem.withdrawn_at.is_(None)]
    if flt.kind:
        on_item.append(PromiseItem.kind == flt.kind)
    on_account = access.in_service(user)  # a cancelled account leaves the inbox
    if flt.salesperson_id:
        on_account.append(Account.salesperson_id == flt.salesperson_id)
    if flt.visit_from:
        on_account.append(Account.first_visit >= flt.visit_from)
    if flt.visit_to:
        on_account.append(Account.first_visit <= flt.visit_to)
    return on_item, on_account


def _base(user: StaffUser, flt: DifferenceFilter) -> Select[Any]:
    """The matching item ids, joined to accounts so a page can walk them in first-visit order."""
    on_item, on_account = conditions(user, flt)
    return (
        select(PromiseItem.id)
        .join(Account, Account.id == PromiseItem.account_id)
        .where(*on_item, *on_account)
    )


def counted(user: StaffUser, flt: DifferenceFilter) -> Select[Any]:
    """Driven from the items' open-difference index (ix_promise_items_open: outcome, withdrawn,
    account, kind) with a per-item account check, so counting reads the open differences from
    the index alone, with or without a kind, rather than every account (measured at 100,000)."""
    on_item, on_account = conditions(user, flt)
    account_ok = select(Account.id).where(Account.id == PromiseItem.account_id, *on_account).exists()
    return select(PromiseItem.id).where(*on_item, account_ok)


# Most urgent first: the soonest first visit (none last), then the account and the promise order.
ORDER = (Account.first_visit, Account.id, PromiseItem.position, PromiseItem.id)
CURSOR = (keyset.as_date, keyset.as_int, keyset.as_int, keyset.as_int)


def list_differences(
    session: Session, user: StaffUser, flt: DifferenceFilter
) -> keyset.KeysetPage[DifferenceRow]:
    cursor = keyset.decode(flt.after, CURSOR)
    rows, last = _page(session, user, flt, PER_PAGE + 1, cursor)
    more = len(rows) > PER_PAGE
    count = keyset.capped_count(session, counted(user, flt))
    return keyset.KeysetPage(
        rows[:PER_PAGE], count, keyset.encode(last[PER_PAGE - 1]) if more else None, cursor is None
    )


def iter_differences(
    session: Session, user: StaffUser, flt: DifferenceFilter, batch: int = 1000
) -> Iterator[DifferenceRow]:
    """Every matching row (for CSV export), a batch at a time: a few queries per batch."""
    cursor = None
    while True:
        rows, keys = _page(session, user, flt, batch, cursor)
        yield from rows
        if len(rows) < batch:
            return
        cursor = keys[-1]


def _page(
    session: Session, user: StaffUser, flt: DifferenceFilter, limit: int, cursor: tuple[object, ...] | None
) -> tuple[list[DifferenceRow], list[tuple[object, ...]]]:
    """Pick the page's item ids in order first (with their sort keys, for the next cursor), then
    load only those rows with their entries."""
    keyed = keyset.fetch(session, _base(user, flt), ORDER, cursor, limit, nullable_first=True)
    return load_rows(session, [row[-1] for row in keyed]), keyed


def find_open(session: Session, user: StaffUser, item_id: int) -> DifferenceRow | None:
    """The open difference of this item, if the user may act on it."""
    found = load_rows(
        session, list(session.scalars(_base(user, DifferenceFilter()).where(PromiseItem.id == item_id)))
    )
    return found[0] if found else None


def load_rows(session: Session, ids: list[int]) -> list[DifferenceRow]:
    if not ids:
        return []
    found = session.execute(
        select(PromiseItem, Account, RecordEntry)
        .join(Account, Account.id == PromiseItem.account_id)
        .join(RecordEntry, RecordEntry.id == PromiseItem.latest_entry_id)
        .where(PromiseItem.id.in_(ids))
        .options(*ROW_ACCOUNT_COLUMNS)
    ).all()
    order = {item_id: position for position, item_id in enumerate(ids)}
    return _rows(session, sorted(found, key=lambda row: order[row[0].id]))


# The account columns a row shows (page and CSV): the rest of a wide row is not read, and
# the salesperson comes from the identity map (the staff read below) rather than a join.
ROW_ACCOUNT_COLUMNS = (
    load_only(
        Account.id,
        Account.customer_id,
        Account.salesperson_id,
        Account.service_address,
        Account.first_visit,
        Account.visits_per_week,
        Account.deleted_at,
    ),
    lazyload(Account.salesperson),
)


def _rows(session: Session, found: list[Any]) -> list[DifferenceRow]:
    items = [item for item, _, _ in found]
    assigned = _assignees(session, [item.id for item in items])
    staff_ids = {item.promised_by_id for item in items if item.promised_by_id} | set(assigned.values())
    staff = (
        {user.id: user for user in session.scalars(select(StaffUser).where(StaffUser.id.in_(staff_ids)))}
        if staff_ids
        else {}
    )
    return [
        DifferenceRow(
            item, account, latest, staff.get(item.promised_by_id or 0), staff.get(assigned.get(item.id, 0))
        )
        for item, account, latest in found
    ]


def _assignees(session: Session, item_ids: list[int]) -> dict[int, int]:
    """Who each item is assigned to: the latest 'assigned' entry per item, in one query."""
    if not item_ids:
        return {}
    latest = (
        select(func.max(RecordEntry.id))
        .where(RecordEntry.item_id.in_(item_ids), RecordEntry.event == "assigned")
        .group_by(RecordEntry.item_id)
    )
    entries = session.scalars(select(RecordEntry).where(RecordEntry.id.in_(latest)))
    return {e.item_id: int(e.details["assignee_id"]) for e in entries if e.item_id is not None}


def open_difference(session: Session, item_id: int, user: StaffUser) -> tuple[PromiseItem, RecordEntry]:
    """The item and the customer's answer it differs by, if the user may act on it."""
    if not access.allows(user, access.Action.RESOLVE):
        raise ResolutionError("Deciding a difference is for the office; add a note instead.")
    if session.scalar(_base(user, DifferenceFilter()).where(PromiseItem.id == item_id)) is None:
        raise ResolutionError("That difference is resolved already or is not yours to resolve.")
    item = session.get(PromiseItem, item_id, with_for_update={"of": PromiseItem})
    assert item is not None and item.latest_entry_id is not None
    latest = session.get(RecordEntry, item.latest_entry_id)
    assert latest is not None
    return item, latest


def _resolve(
    session: Session,
    item: PromiseItem,
    customer: RecordEntry,
    staff: StaffUser,
    agreed: str,
    resolution: str,
    note: str,
) -> RecordEntry:
    account = session.get(Account, item.account_id)
    assert account is not None
    wished = {"customer_preferences": preferences(customer)} if item.kind == "visit_day" else {}
    webhooks.queue_event(
        session,
        "difference.decided",
        {
            "account_id": account.id,
            "item_id": item.id,
            "kind": item.kind,
            "resolution": resolution,
            # Access codes never leave the portal (DESIGN.md): such values read "noted".
            "promised_value": mailed_value(item.promised_value, item.kind),
            "agreed_value": mailed_value(agreed, item.kind),
            "decided_by": staff.display_name,
        },
    )
    entry = record.append(
        session,
        account,
        event="resolved",
        actor=f"staff:{staff.id}",
        item=item,
        promised_value=item.promised_value,
        confirmed_value=agreed,
        outcome="resolved",
        note=note,
        details={
            "resolution": resolution,
            "customer_value": customer.confirmed_value,
            "customer_outcome": customer.outcome,
            "customer_comment": customer.note,
            **wished,
        },
    )
    decisions.notify(session, account, entry)  # the customer hears of it in the next batch email
    return entry


def accept_customer_version(
    session: Session, item_id: int, staff: StaffUser, note: str = "", days: list[str] | None = None
) -> RecordEntry:
    """The customer's value becomes the agreed value (a new visit date moves the first visit).
    A visit day's answer is an ordered wish: the office agrees `days`, as many of the
    customer's choices as the plan has visits a week."""
    item, customer = open_difference(session, item_id, staff)
    if item.kind == "visit_day" and customer.outcome == "changed":
        agreed = _chosen_days(session, item, customer, days or [])
        return _resolve(session, item, customer, staff, agreed, "accepted", note)
    if customer.outcome == "disputed" or not customer.confirmed_value:
        raise ResolutionError(
            "The customer disputed this without a new value; contact them and keep "
            "or edit the promise instead."
        )
    if item.kind == "start_date":
        account = session.get(Account, item.account_id)
        assert account is not None
        account.first_visit = date.fromisoformat(customer.confirmed_value)
        deliverables.plan_account(session, account)  # first-visit promises move with it
    return _resolve(session, item, customer, staff, customer.confirmed_value, "accepted", note)


def _chosen_days(session: Session, item: PromiseItem, customer: RecordEntry, days: list[str]) -> str:
    """The days the office agrees, checked against the customer's choices and the plan."""
    account = session.get(Account, item.account_id)
    assert account is not None
    wished, needed = preferences(customer), account.visits_per_week
    what = f"{needed} of the customer's days" if needed > 1 else "one of the customer's days"
    if not days:
        raise ResolutionError(f"Choose {what}.")
    if any(day not in wished for day in days) or len(set(days)) != len(days):
        raise ResolutionError(f"Choose from the days the customer gave: {', '.join(wished)}.")
    if len(days) != needed:
        visits = "1 visit" if needed == 1 else f"{needed} visits"
        raise ResolutionError(f"The plan has {visits} a week: choose {what}.")
    return ", ".join(sorted(days, key=WEEKDAYS.index))


def keep_promise(session: Session, item_id: int, staff: StaffUser, note: str) -> RecordEntry:
    """Keep what sales promised, after talking to the customer (the note says so)."""
    if not note.strip():
        raise ResolutionError("Say how the customer was contacted and what they agreed.")
    item, customer = open_difference(session, item_id, staff)
    return _resolve(session, item, customer, staff, item.promised_value, "kept", note.strip())


def assign(
    session: Session, item_id: int, staff: StaffUser, assignee: StaffUser, note: str = ""
) -> RecordEntry:
    if not assignee.active or assignee.role == Role.TECHNICIAN.value:
        raise ResolutionError("Assign it to an active sales, office or admin colleague.")
    item, _ = open_difference(session, item_id, staff)
    account = session.get(Account, item.account_id)
    assert account is not None
    return record.append(
        session,
        account,
        event="assigned",
        actor=f"staff:{staff.id}",
        item=item,
        note=note,
        details={"assignee_id": assignee.id, "assignee": assignee.display_name},
    )


def highlight(before: str, after: str) -> tuple[Markup, Markup]:
    """Word-level difference: removed words in <del>, added words in <ins>, all escaped."""
    old, new = before.split(), after.split()
    left: list[str] = []
    right: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        removed, added = " ".join(old[i1:i2]), " ".join(new[j1:j2])
        if tag == "equal":
            left.append(str(escape(removed)))
            right.append(str(escape(added)))
            continue
        if removed:
            left.append(f"<del>{escape(removed)}</del>")
        if added:
            right.append(f"<ins>{escape(added)}</ins>")
    return Markup(" ".join(left)), Markup(" ".join(right))
