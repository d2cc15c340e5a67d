"""Keyset pagination and capped counts: staff lists cost the same on page 1 and page 1,000,
at 1,000 accounts and at 100,000.

A page starts after the previous page's last row: its sort key, ending in a unique id, goes in
the "next" link (an opaque token). Rows added or removed meanwhile never make a row show twice
or go missing, which OFFSET does; and no earlier row is read and thrown away. Counts stop at
a cap: "1,000+" is as useful to a person as 37,664 and costs a bounded read.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

COUNT_CAP = 1000

Parser = Callable[[Any], Any]
T = TypeVar("T")


@dataclass(frozen=True)
class KeysetPage(Generic[T]):
    rows: list[T]
    count: int  # from capped_count: above COUNT_CAP means "more than COUNT_CAP"
    next_cursor: str | None  # None on the last page
    first_page: bool

    @property
    def capped(self) -> bool:
        return self.count > COUNT_CAP

    @property
    def shown_count(self) -> int:
        return min(self.count, COUNT_CAP)


def after(columns: Sequence[Any], values: Sequence[Any], descending: bool = False) -> Any:
    """Rows strictly after `values` in the order of `columns`, written as `first >= v AND (first
    > v OR after(rest))` so the first column bounds an index range on both databases."""
    column, value = columns[0], values[0]
    strictly = column < value if descending else column > value
    if len(columns) == 1:
        return strictly
    bound = column <= value if descending else column >= value
    return and_(bound, or_(strictly, after(columns[1:], values[1:], descending)))


def fetch(
    session: Session,
    query: Select[Any],
    columns: Sequence[Any],
    cursor: Sequence[Any] | None,
    limit: int,
    descending: bool = False,
    nullable_first: bool = False,
    also: Sequence[tuple[Select[Any], Sequence[Any]]] = (),
) -> list[tuple[Any, ...]]:
    """The values of `columns` (the sort key, ending in a unique id) of up to `limit` rows of
    `query`, in that order, after `cursor` (a previous row's values): one query.

    `also` merges more (query, columns) arms into the same list (rows of other tables, with a
    key of the same shape: e.g. a constant that tells the arms apart, then the row's id). With
    `nullable_first`, rows whose first column is NULL come last on both databases (they
    disagree on where NULLs sort). Arms are read as one UNION ALL in which each arm is ordered
    and stops at `limit` on its own, so each walks its index in order and none sorts every
    matching row; only those few rows are merged."""

    def ordered(q: Select[Any], cols: Sequence[Any]) -> Select[Any]:
        return q.order_by(*(c.desc() if descending else c.asc() for c in cols)).limit(limit)

    pieces: list[tuple[int, Select[Any], Sequence[Any]]] = []  # (phase, arm, its order)
    for arm_query, arm_columns in ((query, columns), *also):
        keys = arm_query.with_only_columns(*arm_columns)
        if not nullable_first:
            pieces.append(
                (
                    0,
                    keys if cursor is None else keys.where(after(arm_columns, cursor, descending)),
                    arm_columns,
                )
            )
            continue
        first, rest = arm_columns[0], arm_columns[1:]
        empty = keys.where(first.is_(None))
        if cursor is not None and cursor[0] is None:  # already past every row with a value
            pieces.append((1, empty.where(after(rest, cursor[1:], descending)), rest))
            continue
        valued = keys.where(first.is_not(None))
        if cursor is not None:
            valued = valued.where(after(arm_columns, cursor, descending))
        pieces += [(0, valued, arm_columns), (1, empty, rest)]
    if len(pieces) == 1:
        _, keys, cols = pieces[0]
        return [tuple(row) for row in session.execute(ordered(keys, cols))]
    arms = [
        ordered(arm, cols).add_columns(literal(phase).label("keyset_phase")).subquery()
        for phase, arm, cols in pieces
    ]
    both = union_all(*(select(arm) for arm in arms)).subquery()
    outer = select(*list(both.c)[: len(columns)]).order_by(
        both.c.keyset_phase, *(c.desc() if descending else c.asc() for c in list(both.c)[: len(columns)])
    )
    return [tuple(row) for row in session.execute(outer.limit(limit))]


def capped_count(session: Session, query: Select[Any], cap: int | None = None) -> int:
    """How many rows `query` has, reading at most cap + 1 of them (COUNT_CAP unless given):
    above the cap means "cap+"."""
    cap = COUNT_CAP if cap is None else cap
    return session.scalar(select(func.count()).select_from(query.limit(cap + 1).subquery())) or 0


def count_text(count: int) -> str:
    """A capped count as people read it: "37", "1,000", or "1,000+" past the cap."""
    return f"{min(count, COUNT_CAP):,}+" if count > COUNT_CAP else f"{count:,}"


def encode(values: Sequence[Any]) -> str:
    """A cursor for a link: the values as JSON (dates as ISO text), base64url without padding."""
    plain = [v.isoformat() if isinstance(v, (date, datetime)) else v for v in values]
    text = json.dumps(plain, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(token: str | None, parsers: Sequence[Parser]) -> tuple[Any, ...] | None:
    """The values of a cursor, each read by its parser (None stays None); None for a missing
    or malformed cursor, which shows the first page rather than an error."""
    if not token or len(token) > 2000:
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(raw, list) or len(raw) != len(parsers):
            return None
        return tuple(
            None if value is None else parse(value) for parse, value in zip(parsers, raw, strict=True)
        )
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, OverflowError):
        return None


def as_int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or abs(value) > 2**62:
        raise ValueError("not an id")
    return value


def as_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("not text")
    return value


def as_date(value: Any) -> date:
    return date.fromisoformat(as_text(value))


def as_datetime(value: Any) -> datetime:
    moment = datetime.fromisoformat(as_text(value))
    if moment.tzinfo is None:
        raise ValueError("naive")
    return moment
