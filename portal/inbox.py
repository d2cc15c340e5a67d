"""The office inbox: every open decision in one list: differences, change requests, follow-ups.

One row per open difference (an item whose customer answer differs from the promise), per
open change request and per open follow-up (portal/follow_ups.py), most urgent first: the
nearest visit first (none last), then by account, its differences, then its change requests,
then its follow-ups (see RANK). Pages by keyset over all three (portal/keyset.py), each kind
read in index order and stopped at a page, with a capped count: a few queries per page, about
as fast at 100,000 accounts as at 1,000; the filters are the differences list's
(portal.differences)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, literal, select
from sqlalchemy.orm import Session

from portal import confirmations, follow_ups, keyset, record
from portal import differences as diffs
from portal.handoffs import display_value
from portal.models import (
    DIFFERENT,
    Account,
    ChangeRequest,
    ChangeRequestStatus,
    FollowUp,
    PromiseItem,
    PromiseKind,
    RecordEntry,
    StaffUser,
)
from portal.validation import normalise_weekdays

PER_PAGE = diffs.PER_PAGE
DIFFERENCE, CHANGE, FOLLOW_UP = "difference", "change", "follow_up"
KIND_WORDS = {DIFFERENCE: "Difference", CHANGE: "Change request"}
DECIDED = (ChangeRequestStatus.ACCEPTED.value, ChangeRequestStatus.DECLINED.value)


@dataclass(frozen=True)
class InboxRow:
    kind: str  # DIFFERENCE, CHANGE or FOLLOW_UP
    account: Account
    since: datetime  # when the customer said it (or, decided rows, when it was decided)
    visit: date | None  # the first visit, or the next one once the first has passed
    visit_is_first: bool
    difference: diffs.DifferenceRow | None = None
    change: ChangeRequest | None = None
    follow_up: FollowUp | None = None
    agreed_now: str = ""  # a change request's promise as agreed now

    @property
    def kind_words(self) -> str:
        if self.follow_up is not None:
            return follow_ups.kind_words(self.follow_up.kind)
        return KIND_WORDS[self.kind]


# Most urgent first, in an order the indexes deliver (an order by when the customer spoke would
# sort every open row, as the UNION of both kinds did at 100,000 accounts): the nearest visit
# first (none last), walking ix_accounts_first_visit_id, then per account its differences
# (ix_promise_items_account_outcome / ix_promise_items_open) before its change requests
# (ix_change_requests_account_status) and its follow-ups (ix_follow_ups_account_status), each by
# id. The key: (visit, account, kind rank, row id).
RANK = {DIFFERENCE: 0, CHANGE: 1, FOLLOW_UP: 2}
KIND_OF_RANK = {rank: kind for kind, rank in RANK.items()}
CURSOR = (keyset.as_date, keyset.as_int, keyset.as_int, keyset.as_int)


def _difference_keys(user: StaffUser, flt: diffs.DifferenceFilter) -> tuple[Select[Any], tuple[Any, ...]]:
    on_item, on_account = diffs.conditions(user, flt)
    query = (
        select(PromiseItem.id)
        .join(Account, Account.id == PromiseItem.account_id)
        .where(*on_item, *on_account)
    )
    return query, (Account.first_visit, Account.id, literal(RANK[DIFFERENCE]), PromiseItem.id)


def _change_conditions(user: StaffUser, flt: diffs.DifferenceFilter) -> tuple[list[Any], list[Any]]:
    _, on_account = diffs.conditions(user, flt)
    statuses = (ChangeRequestStatus.OPEN.value,) if flt.status == "open" else DECIDED
    on_change: list[Any] = [ChangeRequest.status.in_(statuses)]
    if flt.kind:
        kind_of = select(PromiseItem.kind).where(PromiseItem.id == ChangeRequest.item_id).scalar_subquery()
        on_change.append(kind_of == flt.kind)
    return on_change, on_account


def _change_keys(user: StaffUser, flt: diffs.DifferenceFilter) -> tuple[Select[Any], tuple[Any, ...]]:
    on_change, on_account = _change_conditions(user, flt)
    query = (
        select(ChangeRequest.id)
        .join(Account, Account.id == ChangeRequest.account_id)
        .where(*on_change, *on_account)
    )
    return query, (Account.first_visit, Account.id, literal(RANK[CHANGE]), ChangeRequest.id)


def _follow_up_conditions(user: StaffUser, flt: diffs.DifferenceFilter) -> list[Any] | None:
    """None when the filter asks for a kind of promise: no follow-up is about one."""
    if flt.kind:
        return None
    _, on_account = diffs.conditions(user, flt)
    status = follow_ups.OPEN if flt.status == "open" else follow_ups.CLOSED
    return [FollowUp.status == status, *on_account]


def _follow_up_keys(
    user: StaffUser, flt: diffs.DifferenceFilter
) -> list[tuple[Select[Any], tuple[Any, ...]]]:
    conditions = _follow_up_conditions(user, flt)
    if conditions is None:
        return []
    query = select(FollowUp.id).join(Account, Account.id == FollowUp.account_id).where(*conditions)
    return [(query, (Account.first_visit, Account.id, literal(RANK[FOLLOW_UP]), FollowUp.id))]


def count(session: Session, user: StaffUser, flt: diffs.DifferenceFilter) -> int:
    on_change, on_account = _change_conditions(user, flt)
    changes = select(ChangeRequest.id).join(Account, Account.id == ChangeRequest.account_id)
    total = keyset.capped_count(session, diffs.counted(user, flt)) + keyset.capped_count(
        session, changes.where(*on_change, *on_account)
    )
    on_follow_up = _follow_up_conditions(user, flt)
    if on_follow_up is not None:
        ups = select(FollowUp.id).join(Account, Account.id == FollowUp.account_id)
        total += keyset.capped_count(session, ups.where(*on_follow_up))
    return total


def list_inbox(
    session: Session, user: StaffUser, flt: diffs.DifferenceFilter, today: date
) -> keyset.KeysetPage[InboxRow]:
    cursor = keyset.decode(flt.after, CURSOR)
    differences, difference_key = _difference_keys(user, flt)
    keyed = keyset.fetch(
        session,
        differences,
        difference_key,
        cursor,
        PER_PAGE + 1,
        nullable_first=True,
        also=[_change_keys(user, flt), *_follow_up_keys(user, flt)],
    )
    more = len(keyed) > PER_PAGE
    rows = _load(session, keyed[:PER_PAGE], today, flt.status)
    return keyset.KeysetPage(
        rows,
        count(session, user, flt),
        keyset.encode(keyed[PER_PAGE - 1]) if more else None,
        cursor is None,
    )


def _load(session: Session, keyed: list[tuple[Any, ...]], today: date, status: str) -> list[InboxRow]:
    """The page's rows from their keys: one query per kind, one for the visit days."""
    difference_ids = [row[3] for row in keyed if KIND_OF_RANK[row[2]] == DIFFERENCE]
    change_ids = [row[3] for row in keyed if KIND_OF_RANK[row[2]] == CHANGE]
    found_differences = {row.item.id: row for row in diffs.load_rows(session, difference_ids)}
    found_changes = (
        {c.id: c for c in session.scalars(select(ChangeRequest).where(ChangeRequest.id.in_(change_ids)))}
        if change_ids
        else {}
    )
    follow_up_ids = [row[3] for row in keyed if KIND_OF_RANK[row[2]] == FOLLOW_UP]
    found_follow_ups = (
        {f.id: f for f in session.scalars(select(FollowUp).where(FollowUp.id.in_(follow_up_ids)))}
        if follow_up_ids
        else {}
    )
    accounts = (
        [row.account for row in found_differences.values()]
        + [c.account for c in found_changes.values()]
        + [f.account for f in found_follow_ups.values()]
    )
    days = _visit_days(session, [a.id for a in accounts if a.first_visit and a.first_visit < today])
    latest = record.latest_entries_by_item(session, {c.account_id for c in found_changes.values()})
    rows = []
    for _visit, _account_id, rank, row_id in keyed:
        kind = KIND_OF_RANK[rank]
        difference = found_differences.get(row_id) if kind == DIFFERENCE else None
        change = found_changes.get(row_id) if kind == CHANGE else None
        follow_up = found_follow_ups.get(row_id) if kind == FOLLOW_UP else None
        found = difference or change or follow_up
        if found is None:
            continue  # decided between the two reads
        account = found.account
        if difference is not None:
            since = difference.latest.created_at
        elif change is not None:
            since = (change.decided_at if status != "open" else None) or change.created_at
        else:
            assert follow_up is not None
            since = (follow_up.closed_at if status != "open" else None) or follow_up.created_at
        first = account.first_visit
        is_first = first is None or first >= today
        visit = first if is_first else confirmations.next_visit(days.get(account.id, []), first, today)
        agreed = ""
        if change is not None and change.item is not None:
            state = record.ItemState(change.item, latest.get(change.item.id))
            agreed = display_value(state.current_value, change.item.kind)
        rows.append(InboxRow(kind, account, since, visit, is_first, difference, change, follow_up, agreed))
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
