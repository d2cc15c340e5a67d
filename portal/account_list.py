"""The accounts list: every account the user may see, searched, filtered, sorted and paged by
keyset, in a few queries whatever the number of accounts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from portal import access, keyset, search
from portal.models import Account, AccountStatus, Customer, StaffUser

PER_PAGE = 50


@dataclass(frozen=True)
class Sort:
    label: str
    columns: tuple[Any, ...]  # the sort key, ending in the account id
    parsers: tuple[Callable[[Any], Any], ...]  # to read a cursor's values back
    descending: bool = False
    nullable_first: bool = False


SORTS: dict[str, Sort] = {
    "name": Sort("Name", (Customer.name, Account.id), (keyset.as_text, keyset.as_int)),
    "first_visit": Sort(
        "First visit, soonest first",
        (Account.first_visit, Account.id),
        (keyset.as_date, keyset.as_int),
        nullable_first=True,
    ),
    "created": Sort(
        "Newest first", (Account.created_at, Account.id), (keyset.as_datetime, keyset.as_int), descending=True
    ),
}
STATUSES = tuple(status.value for status in AccountStatus)


@dataclass(frozen=True)
class AccountFilter:
    query: str = ""
    status: str | None = None
    salesperson_id: int | None = None
    visit_from: date | None = None
    visit_to: date | None = None
    sort: str = "name"
    after: str | None = None  # the cursor: the previous page's last row


def _matching(session: Session, user: StaffUser, flt: AccountFilter) -> Select[Any]:
    query = select(Account).join(Customer, Customer.id == Account.customer_id).where(*access.conditions(user))
    if flt.status in STATUSES:
        query = query.where(Account.status == flt.status)
    if flt.salesperson_id:
        query = query.where(Account.salesperson_id == flt.salesperson_id)
    if flt.visit_from:
        query = query.where(Account.first_visit >= flt.visit_from)
    if flt.visit_to:
        query = query.where(Account.first_visit <= flt.visit_to)
    found = search.matching(session, flt.query)
    if found is not None:
        query = query.where(found)
    return query


def list_accounts(
    session: Session, user: StaffUser, flt: AccountFilter, per_page: int = PER_PAGE
) -> keyset.KeysetPage[Account]:
    """One page after `flt.after` and the capped count of every match: three queries (the
    page's keys, its accounts with their customers and salespeople, the count)."""
    sort = SORTS.get(flt.sort, SORTS["name"])
    query = _matching(session, user, flt)
    cursor = keyset.decode(flt.after, sort.parsers)
    keys = keyset.fetch(
        session, query, sort.columns, cursor, per_page + 1, sort.descending, sort.nullable_first
    )
    ids = [key[-1] for key in keys[:per_page]]
    found = (
        {account.id: account for account in session.scalars(select(Account).where(Account.id.in_(ids)))}
        if ids
        else {}
    )
    accounts = [found[account_id] for account_id in ids]
    next_cursor = keyset.encode(keys[per_page - 1]) if len(keys) > per_page else None
    count = keyset.capped_count(session, query.with_only_columns(Account.id))
    return keyset.KeysetPage(accounts, count, next_cursor, cursor is None)
