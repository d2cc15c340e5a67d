"""The service record: append entries, derive current item state, verify the hash chains.

Each account's entries form a chain: an entry's hash covers its own fields and the previous
entry's hash, so an entry altered behind the application's back breaks every later link.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Protocol, Sequence

from flask import g, has_request_context
from sqlalchemy import bindparam, event, func, select
from sqlalchemy.orm import Session, SessionTransaction, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from portal.db import utcnow
from portal.models import Account, PromiseItem, RecordEntry

GENESIS = "0" * 64


def entry_digest(entry: RecordEntry, prev_hash: str) -> str:
    fields = {
        "account_id": entry.account_id,
        "seq": entry.seq,
        "item_id": entry.item_id,
        "event": entry.event,
        "promised_value": entry.promised_value,
        "confirmed_value": entry.confirmed_value,
        "outcome": entry.outcome,
        "actor": entry.actor,
        "note": entry.note,
        "details": entry.details,
        "created_at": entry.created_at.isoformat(timespec="microseconds"),
        "request_id": entry.request_id,
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}|{canonical}".encode()).hexdigest()


def current_request_id() -> str:
    return g.get("request_id", "") if has_request_context() else ""


class Identified(Protocol):
    """An account or item as a plain row (the customer step pages read those): its id."""

    @property
    def id(self) -> int: ...


@dataclass(frozen=True)
class Change:
    """One entry to append: what `append` takes after the account."""

    event: str
    actor: str
    item: PromiseItem | Identified | None = None
    promised_value: str | None = None
    confirmed_value: str | None = None
    outcome: str | None = None
    note: str = ""
    details: dict[str, Any] | None = None


def append(session: Session, account: Account | Identified, *, event: str, actor: str,
           item: PromiseItem | Identified | None = None, promised_value: str | None = None,
           confirmed_value: str | None = None, outcome: str | None = None, note: str = "",
           details: dict[str, Any] | None = None) -> RecordEntry:
    """Add one entry to the account's chain. The caller commits (one transaction per action)."""
    return append_all(session, account, [Change(event, actor, item, promised_value, confirmed_value,
                                                outcome, note, details)])[0]


def append_all(session: Session, account: Account | Identified,
               changes: Sequence[Change]) -> list[RecordEntry]:
    """Add entries to the account's chain, in order, with one INSERT ... RETURNING for all of
    them; the items' state pointers with one UPDATE run for each. The entries join the session
    as loaded objects. Nothing waits for a flush: a customer's answer appends two or three
    entries, and the unit of work cost more than the SQL."""
    if not changes:
        return []
    if any(change.item is not None and change.item.id is None for change in changes):
        session.flush()  # a promise added in this transaction: it needs its id first
    seq, prev_hash = _chain_head(session, account.id)
    entries = []
    for change in changes:
        entry = _chained_entry(account.id, seq, prev_hash, change)
        entries.append(entry)
        seq, prev_hash = seq + 1, entry.hash
    rows = [{column.key: getattr(entry, column.key) for column in _ENTRY_COLUMNS} for entry in entries]
    ids: dict[int, int] = dict(session.connection().execute(_INSERT_ENTRIES, rows).all())  # type: ignore[arg-type]
    for entry in entries:
        entry.id = ids[entry.seq]
        make_transient_to_detached(entry)
        session.add(entry)
    session.info[HEADS][account.id] = (seq, prev_hash)
    _set_item_states(session, [(change.item, entry) for change, entry in zip(changes, entries)
                               if change.item is not None and change.outcome is not None])
    return entries


def _chained_entry(account_id: int, seq: int, prev_hash: str, change: Change) -> RecordEntry:
    entry = RecordEntry(
        account_id=account_id,
        seq=seq,
        item_id=change.item.id if change.item is not None else None,
        event=change.event,
        promised_value=change.promised_value,
        confirmed_value=change.confirmed_value,
        outcome=change.outcome,
        actor=change.actor,
        note=change.note,
        details=change.details or {},
        created_at=utcnow(),
        request_id=current_request_id(),
        prev_hash=prev_hash,
    )
    entry.hash = entry_digest(entry, prev_hash)
    return entry


def _set_item_states(session: Session, changed: list[tuple[PromiseItem | Identified, RecordEntry]]) -> None:
    """Entries with an outcome carry their item's state; notes like 'assigned' leave it alone."""
    if not changed:
        return
    session.connection().execute(_SET_ITEM_STATE, [
        {"item_id": item.id, "entry_id": entry.id, "outcome": entry.outcome} for item, entry in changed])
    for item, entry in changed:
        if isinstance(item, PromiseItem):
            set_committed_value(item, "latest_entry_id", entry.id)
            set_committed_value(item, "current_outcome", entry.outcome)


_ENTRY_COLUMNS = [column for column in RecordEntry.__table__.columns if column.key != "id"]
# Rows come back in no set order: each id is matched to its entry by seq (unique within the
# account). Asking for them in order would cost SQLite one INSERT per row.
_INSERT_ENTRIES = RecordEntry.__table__.insert().returning(RecordEntry.__table__.c.seq,
                                                           RecordEntry.__table__.c.id)
_SET_ITEM_STATE = (PromiseItem.__table__.update()
                   .where(PromiseItem.__table__.c.id == bindparam("item_id"))
                   .values(latest_entry_id=bindparam("entry_id"), current_outcome=bindparam("outcome")))


HEADS = "record.chain_heads"
LOCKED = "record.locked_accounts"


# Built once: on a customer's answer, building these cost about what running them does.
_LOCK_SQL = select(Account.status).where(Account.id == bindparam("account_id")).with_for_update()
_LAST_SQL = (select(RecordEntry.seq, RecordEntry.hash)
             .where(RecordEntry.account_id == bindparam("account_id"))
             .order_by(RecordEntry.seq.desc()).limit(1))


def lock_account(session: Session, account_id: int) -> str | None:
    """Lock the account's row until the transaction ends (PostgreSQL; SQLite holds its write
    lock already) and return its status as stored, which may be newer than a loaded copy's.
    Nothing pending is flushed first: a stale copy's changes must not overwrite what it reads."""
    status = session.connection().scalar(_LOCK_SQL, {"account_id": account_id})
    session.info.setdefault(LOCKED, set()).add(account_id)
    return status


def _chain_head(session: Session, account_id: int) -> tuple[int, str]:
    """The next seq and the hash to chain from. The first append of a transaction locks the
    account (PostgreSQL row lock; SQLite holds its write lock already), so two requests never
    both extend the chain from the same entry, and reads the last entry; later appends in the
    same transaction continue from what the previous one wrote."""
    heads: dict[int, tuple[int, str]] = session.info.setdefault(HEADS, {})
    if account_id in heads:
        return heads[account_id]
    session.flush()
    if account_id not in session.info.get(LOCKED, ()):
        lock_account(session, account_id)
    last = session.connection().execute(_LAST_SQL, {"account_id": account_id}).first()
    return (last.seq + 1, last.hash) if last else (1, GENESIS)


@event.listens_for(Session, "after_transaction_end")
def _forget_heads(session: Session, transaction: SessionTransaction) -> None:
    # The lock and what was read under it end with the transaction, and a savepoint rolled
    # back may take entries with it. (A flush's own inner transaction changes nothing.)
    if transaction.parent is None or transaction.nested:
        session.info.pop(HEADS, None)
        session.info.pop(LOCKED, None)


@dataclass(frozen=True)
class ItemState:
    """An item's current state: its latest entry, read against the promise."""

    item: PromiseItem
    latest: RecordEntry | None

    @property
    def outcome(self) -> str:
        return self.latest.outcome if self.latest and self.latest.outcome else "promised"

    @property
    def current_value(self) -> str:
        if self.latest and self.latest.confirmed_value is not None:
            return self.latest.confirmed_value
        return self.item.promised_value


def latest_entries_by_item(session: Session, account_ids: Iterable[int]) -> dict[int, RecordEntry]:
    """The latest state entry of every item of the given accounts, in one query."""
    ids = list(account_ids)
    if not ids:
        return {}
    rows = session.scalars(
        select(RecordEntry)
        .join(PromiseItem, PromiseItem.latest_entry_id == RecordEntry.id)
        .where(PromiseItem.account_id.in_(ids))
    )
    return {entry.item_id: entry for entry in rows if entry.item_id is not None}


def _latest_state_seq(session: Session, account_id: int) -> dict[int, int]:
    """Recomputed from the entries themselves, to check the items' pointers against."""
    rows = session.execute(
        select(RecordEntry.item_id, func.max(RecordEntry.id))
        .where(RecordEntry.account_id == account_id, RecordEntry.item_id.is_not(None),
               RecordEntry.outcome.is_not(None))
        .group_by(RecordEntry.item_id)
    )
    return {item_id: entry_id for item_id, entry_id in rows}


def item_states(session: Session, account: Account) -> list[ItemState]:
    latest = latest_entries_by_item(session, [account.id])
    return [ItemState(item, latest.get(item.id)) for item in account.items]


def entries_for(session: Session, account_id: int) -> list[RecordEntry]:
    return list(
        session.scalars(
            select(RecordEntry).where(RecordEntry.account_id == account_id).order_by(RecordEntry.seq)
        )
    )


@dataclass(frozen=True)
class BrokenLink:
    account_id: int
    seq: int
    entry_id: int
    reason: str


def verify_chain(session: Session, account_id: int) -> BrokenLink | None:
    """Walk one account's chain; return the first entry whose link does not hold."""
    entries = session.scalars(
        select(RecordEntry)
        .where(RecordEntry.account_id == account_id)
        .order_by(RecordEntry.seq)
        .execution_options(yield_per=1000)
    )
    with entries:  # closes the server-side cursor when we stop early
        broken = _first_broken(account_id, entries)
    return broken or _stale_pointer(session, account_id)


def _stale_pointer(session: Session, account_id: int) -> BrokenLink | None:
    expected = _latest_state_seq(session, account_id)
    for item in session.scalars(select(PromiseItem).where(PromiseItem.account_id == account_id)):
        if item.latest_entry_id != expected.get(item.id):
            return BrokenLink(account_id, 0, item.latest_entry_id or 0,
                              f"item {item.id} does not point at its latest entry")
    return None


def _first_broken(account_id: int, entries: Iterable[RecordEntry]) -> BrokenLink | None:
    prev_hash = GENESIS
    for expected_seq, entry in enumerate(entries, start=1):
        if entry.seq != expected_seq:
            return BrokenLink(account_id, entry.seq, entry.id, f"expected entry {expected_seq}")
        if entry.prev_hash != prev_hash:
            return BrokenLink(account_id, entry.seq, entry.id, "previous hash does not match")
        if entry_digest(entry, prev_hash) != entry.hash:
            return BrokenLink(account_id, entry.seq, entry.id, "contents do not match the hash")
        prev_hash = entry.hash
    return None


def accounts_with_entries(session: Session) -> list[int]:
    return list(session.scalars(select(RecordEntry.account_id).distinct().order_by(RecordEntry.account_id)))
