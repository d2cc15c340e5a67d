"""The office inbox: every open decision in one list, differences and change requests alike.

One row per open difference (an item whose customer answer differs from the promise) and per
open change request, most urgent first: the nearest visit first (none last), then the oldest.
Pages by keyset over both (portal/keyset.py) with a capped count, a few queries per page
whatever the number of rows; the filters are the differences list's (portal.differences)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, literal, select, union_all
from sqlalchemy.orm import Session

from portal import confirmations, keyset, record
from portal import differences as diffs
from portal.handoffs import display_value
from portal.models import (
    DIFFERENT,
    Account,
    ChangeRequest,
    ChangeRequestStatus,
    PromiseItem,
    PromiseKind,
    RecordEntry,
    StaffUser,
)
from portal.validation import normalise_weekdays

PER_PAGE = diffs.PER_PAGE
DIFFERENCE, CHANGE = "difference", "change"
KIND_WORDS = {DIFFERENCE: "Difference", CHANGE: "Change request"}
DECIDED = (ChangeRequestStatus.ACCEPTED.value, ChangeRequestStatus.DECLINED.value)


@dataclass(frozen=True)
class InboxRow:
    kind: str  # DIFFERENCE or CHANGE
    account: Account
    since: datetime  # when the customer said it (or, decided rows, when it was decided)
    visit: date | None  # the first visit, or the next one once the first has passed
    visit_is_first: bool
    difference: diffs.DifferenceRow | None = None
    change: ChangeRequest | None = None
    agreed_now: str = ""  # a change request's promise as agreed now

    @property
    def kind_words(self) -> str:
        return KIND_WORDS[self.kind]


def _difference_keys(user: StaffUser, flt: diffs.DifferenceFilter) -> Select[date | None, datetime, str, int]:
    on_item, on_account = diffs.conditions(user, flt)
    return (
        select(
            Account.first_visit.label("visit"),
            RecordEntry.created_at.label("since"),
            literal(DIFFERENCE).label("kind"),
            PromiseItem.id.label("id"),
        )
        .join(Account, Account.id == PromiseItem.account_id)
        .join(RecordEntry, RecordEntry.id == PromiseItem.latest_entry_id)
        .where(*on_item, *on_account)
    )


def _change_conditions(user: StaffUser, flt: diffs.DifferenceFilter) -> tuple[list[Any], list[Any]]:
    _, on_account = diffs.conditions(user, flt)
    statuses = (ChangeRequestStatus.OPEN.value,) if flt.status == "open" else DECIDED
    on_change: list[Any] = [ChangeRequest.status.in_(statuses)]
    if flt.kind:
        kind_of = select(PromiseItem.kind).where(PromiseItem.id == ChangeRequest.item_id).scalar_subquery()
        on_change.append(kind_of == flt.kind)
    return on_change, on_account


def _change_keys(
    user: StaffUser, flt: diffs.DifferenceFilter
) -> Select[date | None, datetime | None, str, int]:
    on_change, on_account = _change_conditions(user, flt)
    since = ChangeRequest.created_at if flt.status == "open" else ChangeRequest.decided_at
    return (
        select(
            Account.first_visit.label("visit"),
            since.label("since"),
            literal(CHANGE).label("kind"),
            ChangeRequest.id.label("id"),
        )
        .join(Account, Account.id == ChangeRequest.account_id)
        .where(*on_change, *on_account)
    )


CURSOR = (keyset.as_date, keyset.as_datetime, keyset.as_text, keyset.as_int)


def count(session: Session, user: StaffUser, flt: diffs.DifferenceFilter) -> int:
    on_change, on_account = _change_conditions(user, flt)
    changes = select(ChangeRequest.id).join(Account, Account.id == ChangeRequest.account_id)
    return keyset.capped_count(session, diffs.counted(user, flt)) + keyset.capped_count(
        session, changes.where(*on_change, *on_account)
    )


def list_inbox(
    session: Session, user: StaffUser, flt: diffs.DifferenceFilter, today: date
) -> keyset.KeysetPage[InboxRow]:
    cursor = keyset.decode(flt.after, CURSOR)
    both = union_all(_difference_keys(user, flt), _change_keys(user, flt)).subquery("inbox")
    columns = (both.c.visit, both.c.since, both.c.kind, both.c.id)
    keyed = keyset.fetch(session, select(both), columns, cursor, PER_PAGE + 1, nullable_first=True)
    more = len(keyed) > PER_PAGE
    rows = _load(session, keyed[:PER_PAGE], today)
    return keyset.KeysetPage(
        rows,
        count(session, user, flt),
        keyset.encode(keyed[PER_PAGE - 1]) if more else None,
        cursor is None,
    )


def _load(session: Session, keyed: list[tuple[Any, ...]], today: date) -> list[InboxRow]:
    """The page's rows from their keys: one query per kind, one for the visit days."""
    difference_ids = [row[3] for row in keyed if row[2] == DIFFERENCE]
    change_ids = [row[3] for row in keyed if row[2] == CHANGE]
    found_differences = {row.item.id: row for row in diffs.load_rows(session, difference_ids)}
    found_changes = (
        {c.id: c for c in session.scalars(select(ChangeRequest).where(ChangeRequest.id.in_(change_ids)))}
        if change_ids
        else {}
    )
    accounts = [row.account for row in found_differences.values()] + [
        c.account for c in found_changes.values()
    ]
    days = _visit_days(session, [a.id for a in accounts if a.first_visit and a.first_visit < today])
    latest = record.latest_entries_by_item(session, {c.account_id for c in found_changes.values()})
    rows = []
    for _visit, since, kind, row_id in keyed:
        difference = found_differences.get(row_id) if kind == DIFFERENCE else None
        change = found_changes.get(row_id) if kind == CHANGE else None
        account = difference.account if difference else change.account if change else None
        if account is None:
            continue  # decided between the two reads
        first = account.first_visit
        is_first = first is None or first >= today
        visit = first if is_first else confirmations.next_visit(days.get(account.id, []), first, today)
        agreed = ""
        if change is not None and change.item is not None:
            state = record.ItemState(change.item, latest.get(change.item.id))
            agreed = display_value(state.current_value, change.item.kind)
        rows.append(InboxRow(kind, account, since, visit, is_first, difference, change, agreed))
    return rows


def _visit_days(session: Session, account_ids: list[int]) -> dict[int, list[str]]:
    """Each account's agreed visit days (for its next visit), in one query."""
    if not account_ids:
        return {}
    found = session.execute(
        select(
            PromiseItem.account_id,
            PromiseItem.promised_value,
            RecordEntry.confirmed_value,
            PromiseItem.current_outcome,
        )
        .outerjoin(RecordEntry, RecordEntry.id == PromiseItem.latest_entry_id)
        .where(
            PromiseItem.account_id.in_(account_ids),
            PromiseItem.kind == PromiseKind.VISIT_DAY.value,
            PromiseItem.withdrawn_at.is_(None),
        )
    )
    return {  # an answer the office has not decided yet is not the agreed day
        account_id: [
            d
            for d in (
                normalise_weekdays(promised if outcome in DIFFERENT else agreed or promised) or ""
            ).split(", ")
            if d
        ]
        for account_id, promised, agreed, outcome in found
    }
