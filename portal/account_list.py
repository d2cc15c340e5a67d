"""The accounts list: every account the user may see, searched, filtered, sorted and paged by
keyset, in a few queries whatever the number of accounts."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, contains_eager

from portal import access, keyset, search
from portal.models import Account, AccountStatus, Customer, StaffUser

PER_PAGE = 50


@dataclass(frozen=True)
class Sort:
    label: str
    columns: tuple[Any, ...]   # the sort key, ending in the account id
    parsers: tuple[Callable[[Any], Any], ...]  # to read a cursor's values back
    key: Callable[[Account], tuple[Any, ...]]  # a row's values of `columns`, for the cursor
    descending: bool = False
    nullable_first: bool = False


SORTS: dict[str, Sort] = {
    "name": Sort("Name", (Customer.name, Account.id), (keyset.as_text, keyset.as_int),
                 lambda a: (a.customer.name, a.id)),
    "first_visit": Sort("First visit, soonest first", (Account.first_visit, Account.id),
                        (keyset.as_date, keyset.as_int), lambda a: (a.first_visit, a.id),
                        nullable_first=True),
    "created": Sort("Newest first", (Account.created_at, Account.id),
                    (keyset.as_datetime, keyset.as_int), lambda a: (a.created_at, a.id),
                    descending=True),
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


def _matching(session: Session, user: StaffUser, flt: AccountFilter) -> Select:  # type: ignore[type-arg]
    query = (select(Account).join(Customer, Customer.id == Account.customer_id)
             .where(*access.conditions(user)))
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


def list_accounts(session: Session, user: StaffUser, flt: AccountFilter,
                  per_page: int = PER_PAGE) -> keyset.KeysetPage[Account]:
    """One page after `flt.after` and the capped count of every match: two queries (three when
    the first-visit order reaches accounts without a first visit)."""
    sort = SORTS.get(flt.sort, SORTS["name"])
    query = _matching(session, user, flt)
    cursor = keyset.decode(flt.after, sort.parsers)
    rows = keyset.fetch(session, query.options(contains_eager(Account.customer)), sort.columns,
                        cursor, per_page + 1, sort.descending, sort.nullable_first)
    accounts = [row[0] for row in rows]
    more = len(accounts) > per_page
    accounts = accounts[:per_page]
    next_cursor = keyset.encode(sort.key(accounts[-1])) if more else None
    count = keyset.capped_count(session, query.with_only_columns(Account.id))
    return keyset.KeysetPage(accounts, count, next_cursor, cursor is None)

