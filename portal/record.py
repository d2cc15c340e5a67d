"""The service record: append entries, derive current item state, verify the hash chains.

Each account's entries form a chain: an entry's hash is an HMAC, under the record key, of its
own fields and the previous entry's hash, so an entry altered behind the application's back
breaks every later link, and without the key nobody can recompute the chain to hide it. Each
account keeps its chain head (last seq and hash) beside it, written in the append's
transaction, so a cut tail or an emptied record shows too. A seal (`record-seal`) signs every
account's head at a moment; kept outside the database, it shows what was cut or rewritten
since, even by someone who also reset the heads.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from flask import current_app, g, has_request_context
from sqlalchemy import bindparam, event, func, select, update
from sqlalchemy.orm import Session, SessionTransaction, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from portal.db import table_of, utcnow
from portal.models import Account, PromiseItem, RecordEntry

GENESIS = "0" * 64

# What an entry's hash covers, besides the previous hash.
HASHED_FIELDS = (
    "account_id",
    "seq",
    "item_id",
    "event",
    "promised_value",
    "confirmed_value",
    "outcome",
    "actor",
    "note",
    "details",
    "created_at",
    "request_id",
)


def key_id(key: str) -> str:
    """A short name for a record key that says nothing about the key itself."""
    return hashlib.sha256(f"handoff-record-key:{key}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RecordKeys:
    """The key that signs new entries and the older ones that still verify (rotation)."""

    current: str
    fallbacks: tuple[str, ...] = ()

    @property
    def current_id(self) -> str:
        return key_id(self.current)

    def by_id(self, wanted: str) -> str | None:
        return next((key for key in (self.current, *self.fallbacks) if key_id(key) == wanted), None)


def record_keys() -> RecordKeys:
    config = current_app.config
    return RecordKeys(config["RECORD_KEY"], tuple(config.get("RECORD_KEY_FALLBACKS") or ()))


def entry_digest(fields: Mapping[str, Any], prev_hash: str, key: str) -> str:
    """The HMAC-SHA256 of an entry's fields (a mapping, or read off an entry) and the hash
    before it."""
    created_at: datetime = fields["created_at"]
    canonical = json.dumps(
        {
            **{name: fields[name] for name in HASHED_FIELDS},
            "created_at": created_at.isoformat(timespec="microseconds"),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hmac.new(key.encode(), f"{prev_hash}|{canonical}".encode(), hashlib.sha256).hexdigest()


def _fields_of(entry: RecordEntry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in HASHED_FIELDS}


@dataclass(frozen=True)
class ChainHead:
    """Where an account's chain ends: the last entry's seq (0 when empty) and its hash."""

    seq: int = 0
    hash: str = GENESIS


def chain_rows(
    account_id: int, head: ChainHead, contents: Iterable[Mapping[str, Any]], keys: RecordKeys
) -> tuple[list[dict[str, Any]], ChainHead]:
    """Every entry of the record is built here, by `append_all` and by the bulk import: each
    content (event, actor, item_id and the optional values) becomes a whole row, numbered and
    signed after the one before (`created_at` is now unless given: the benchmark seeds history).
    Returns the rows and the new head."""
    rows = []
    signing = keys.current_id
    for content in contents:
        row: dict[str, Any] = {
            "item_id": None,
            "promised_value": None,
            "confirmed_value": None,
            "outcome": None,
            "note": "",
            "request_id": current_request_id(),
            "created_at": utcnow(),
            **content,
            "details": dict(content.get("details") or {}),
            "account_id": account_id,
            "seq": head.seq + 1,
            "prev_hash": head.hash,
            "key_id": signing,
        }
        row["hash"] = entry_digest(row, head.hash, keys.current)
        rows.append(row)
        head = ChainHead(row["seq"], row["hash"])
    return rows, head


def current_request_id() -> str:
    return g.get("request_id", "") if has_request_context() else ""


@dataclass(frozen=True)
class Change:
    """One entry to append: what `append` takes after the account."""

    event: str
    actor: str
    item: PromiseItem | None = None
    promised_value: str | None = None
    confirmed_value: str | None = None
    outcome: str | None = None
    note: str = ""
    details: dict[str, Any] | None = None


def append(
    session: Session,
    account: Account,
    *,
    event: str,
    actor: str,
    item: PromiseItem | None = None,
    promised_value: str | None = None,
    confirmed_value: str | None = None,
    outcome: str | None = None,
    note: str = "",
    details: dict[str, Any] | None = None,
) -> RecordEntry:
    """Add one entry to the account's chain. The caller commits (one transaction per action)."""
    return append_all(
        session,
        account,
        [Change(event, actor, item, promised_value, confirmed_value, outcome, note, details)],
    )[0]


def append_all(session: Session, account: Account, changes: Sequence[Change]) -> list[RecordEntry]:
    """Add entries to the account's chain, in order, and move the account's chain head in
    the same transaction; each item an entry decides points at it. The caller commits."""
    if not changes:
        return []
    if any(change.item is not None and change.item.id is None for change in changes):
        session.flush()  # a promise added in this transaction: it needs its id first
    rows = _append_rows(session, [(account.id, [_content(change) for change in changes])])
    entries = []
    for row in rows:
        entry = RecordEntry(**row)
        make_transient_to_detached(entry)
        session.add(entry)
        entries.append(entry)
    _set_item_states(
        session,
        [
            (change.item, entry)
            for change, entry in zip(changes, entries, strict=True)
            if change.item is not None and change.outcome is not None
        ],
    )
    return entries


def append_many(session: Session, batch: Sequence[tuple[int, Sequence[Change]]]) -> list[int]:
    """`append_all` for many accounts at once (a billing day): one statement locks their
    chain heads, one inserts every entry, one moves every head; no entry objects are built.
    Entries here decide no promise (no item). Returns the new entries' ids in batch order.
    The caller commits."""
    if any(change.item is not None for _, changes in batch for change in changes):
        raise ValueError("append_many takes entries about no promise; use append_all")
    rows = _append_rows(
        session, [(account_id, [_content(change) for change in changes]) for account_id, changes in batch]
    )
    return [row["id"] for row in rows]


def _append_rows(
    session: Session, contents: Sequence[tuple[int, Sequence[Mapping[str, Any]]]]
) -> list[dict[str, Any]]:
    """The one writer of the record: chain each account's contents onto its head (locked on
    the transaction's first append to it), insert the rows, move the heads. Returns the rows
    with their ids, in order."""
    heads = _chain_heads(session, [account_id for account_id, _ in contents])
    keys = record_keys()
    rows: list[dict[str, Any]] = []
    moved: dict[int, ChainHead] = {}
    for account_id, account_contents in contents:
        if not account_contents:
            continue
        account_rows, moved[account_id] = chain_rows(
            account_id, moved.get(account_id, heads[account_id]), account_contents, keys
        )
        rows += account_rows
    if not rows:
        return []
    ids = {
        (account_id, seq): entry_id
        for account_id, seq, entry_id in session.connection().execute(_INSERT_ENTRIES, rows).all()
    }
    for row in rows:
        row["id"] = ids[(row["account_id"], row["seq"])]
    session.connection().execute(
        _SET_HEAD,
        [
            {"account_id": account_id, "record_seq": head.seq, "record_head": head.hash}
            for account_id, head in moved.items()
        ],
    )
    session.info[HEADS].update(moved)
    return rows


def _content(change: Change) -> dict[str, Any]:
    return {
        "event": change.event,
        "actor": change.actor,
        "item_id": change.item.id if change.item is not None else None,
        "promised_value": change.promised_value,
        "confirmed_value": change.confirmed_value,
        "outcome": change.outcome,
        "note": change.note,
        "details": change.details or {},
    }


def _set_item_states(session: Session, changed: list[tuple[PromiseItem, RecordEntry]]) -> None:
    """Entries with an outcome carry their item's state; notes like 'assigned' leave it alone."""
    if not changed:
        return
    session.connection().execute(
        _SET_ITEM_STATE,
        [{"item_id": item.id, "entry_id": entry.id, "outcome": entry.outcome} for item, entry in changed],
    )
    for item, entry in changed:
        set_committed_value(item, "latest_entry_id", entry.id)
        set_committed_value(item, "current_outcome", entry.outcome)


_ENTRIES = table_of(RecordEntry)
# Rows come back in no set order: each id is matched to its entry by account and seq (unique).
_INSERT_ENTRIES = _ENTRIES.insert().returning(_ENTRIES.c.account_id, _ENTRIES.c.seq, _ENTRIES.c.id)
_SET_ITEM_STATE = (
    table_of(PromiseItem)
    .update()
    .where(table_of(PromiseItem).c.id == bindparam("item_id"))
    .values(latest_entry_id=bindparam("entry_id"), current_outcome=bindparam("outcome"))
)
# Not through the ORM: the head is the record's, and moving it must not move the account's
# version (a staff edit open meanwhile is not stale because a customer answered).
_SET_HEAD = (
    update(table_of(Account))
    .where(table_of(Account).c.id == bindparam("account_id"))
    .values(record_seq=bindparam("record_seq"), record_head=bindparam("record_head"))
)


HEADS = "record.chain_heads"

# In id order, so two transactions locking overlapping sets of accounts never deadlock.
_LOCK_SQL = (
    select(Account.id, Account.status, Account.record_seq, Account.record_head)
    .where(Account.id.in_(bindparam("account_ids", expanding=True)))
    .order_by(Account.id)
    .with_for_update()
)


def lock_account(session: Session, account_id: int) -> str | None:
    """Lock the account's row until the transaction ends (PostgreSQL; SQLite holds its write
    lock already) and return its status as stored, which may be newer than a loaded copy's.
    The chain head is read under the same lock, for the appends that follow.
    Nothing pending is flushed first: a stale copy's changes must not overwrite what it reads."""
    return _lock_accounts(session, [account_id]).get(account_id)


def _lock_accounts(session: Session, account_ids: Sequence[int]) -> dict[int, str]:
    """`lock_account` for many accounts in one statement: their stored statuses by id."""
    heads: dict[int, ChainHead] = session.info.setdefault(HEADS, {})
    statuses = {}
    for row in session.connection().execute(_LOCK_SQL, {"account_ids": list(account_ids)}):
        heads[row.id] = ChainHead(row.record_seq, row.record_head)
        statuses[row.id] = row.status
    return statuses


def _chain_heads(session: Session, account_ids: Sequence[int]) -> dict[int, ChainHead]:
    """Where the next entries chain on. The first append of a transaction to an account locks
    it (PostgreSQL row lock; SQLite holds its write lock already), so two requests never both
    extend the chain from the same entry; later appends in the same transaction continue
    from what the previous one wrote."""
    heads: dict[int, ChainHead] = session.info.setdefault(HEADS, {})
    unlocked = sorted({account_id for account_id in account_ids if account_id not in heads})
    if unlocked:
        session.flush()
        _lock_accounts(session, unlocked)
    return heads


def lock_chains(session: Session, account_ids: Sequence[int]) -> None:
    """Take the accounts' chain locks now, ahead of rows that reference the accounts: such an
    insert share-locks the account row on PostgreSQL, and two transactions each holding that
    while waiting for the other's chain lock deadlock. The caller's appends reuse the heads."""
    _chain_heads(session, account_ids)


@event.listens_for(Session, "after_transaction_end")
def _forget_heads(session: Session, transaction: SessionTransaction) -> None:
    # The lock and what was read under it end with the transaction, and a savepoint rolled
    # back may take entries with it. (A flush's own inner transaction changes nothing.)
    if transaction.parent is None or transaction.nested:
        session.info.pop(HEADS, None)


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

    @property
    def effective_from(self) -> date | None:
        """When the latest agreed value starts, if a decision set it from a date (a change the
        customer asked for "from Dec 10"); before it, the previous value holds."""
        starts = (self.latest.details or {}).get("effective_from") if self.latest else None
        try:
            return date.fromisoformat(starts) if isinstance(starts, str) else None
        except ValueError:
            return None

    def value_on(self, day: date) -> str:
        """The value agreed for `day` (a visit): the previous one until a dated change starts."""
        starts = self.effective_from
        if starts is not None and day < starts and self.latest is not None:
            return str(self.latest.details.get("previous_value", self.item.promised_value))
        return self.current_value


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
        .where(
            RecordEntry.account_id == account_id,
            RecordEntry.item_id.is_not(None),
            RecordEntry.outcome.is_not(None),
        )
        .group_by(RecordEntry.item_id)
    )
    return {item_id: entry_id for item_id, entry_id in rows if item_id is not None}


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


def verify_chain(session: Session, account_id: int, keys: RecordKeys | None = None) -> BrokenLink | None:
    """Walk one account's chain against its head; return the first link that does not hold."""
    keys = keys or record_keys()
    head = session.execute(
        select(Account.record_seq, Account.record_head).where(Account.id == account_id)
    ).first()
    if head is None:
        return BrokenLink(account_id, 0, 0, "the account is gone")
    entries = session.scalars(
        select(RecordEntry)
        .where(RecordEntry.account_id == account_id)
        .order_by(RecordEntry.seq)
        .execution_options(yield_per=1000)
    )
    with entries:  # closes the server-side cursor when we stop early
        broken = _first_broken(account_id, entries, ChainHead(head.record_seq, head.record_head), keys)
    return broken or _stale_pointer(session, account_id)


def _stale_pointer(session: Session, account_id: int) -> BrokenLink | None:
    expected = _latest_state_seq(session, account_id)
    for item in session.scalars(select(PromiseItem).where(PromiseItem.account_id == account_id)):
        if item.latest_entry_id != expected.get(item.id):
            return BrokenLink(
                account_id, 0, item.latest_entry_id or 0, f"item {item.id} does not point at its latest entry"
            )
    return None


def _first_broken(
    account_id: int, entries: Iterable[RecordEntry], head: ChainHead, keys: RecordKeys
) -> BrokenLink | None:
    last = ChainHead()
    for expected_seq, entry in enumerate(entries, start=1):
        if entry.seq != expected_seq:
            return BrokenLink(account_id, entry.seq, entry.id, f"expected entry {expected_seq}")
        if entry.prev_hash != last.hash:
            return BrokenLink(account_id, entry.seq, entry.id, "previous hash does not match")
        key = keys.by_id(entry.key_id)
        if key is None:
            return BrokenLink(account_id, entry.seq, entry.id, "signed with an unknown record key")
        if not hmac.compare_digest(entry_digest(_fields_of(entry), last.hash, key), entry.hash):
            return BrokenLink(account_id, entry.seq, entry.id, "contents do not match the hash")
        last = ChainHead(entry.seq, entry.hash)
    if last != head:
        missing = "entries" if last.seq < head.seq else "the chain head"
        return BrokenLink(
            account_id,
            last.seq,
            0,
            f"the record ends at entry {last.seq} but its head says {head.seq}: {missing} missing or altered",
        )
    return None


def all_account_ids(session: Session) -> list[int]:
    """Every account, deleted or not, with entries or without: each has a head to check."""
    return list(session.scalars(select(Account.id).order_by(Account.id)))


# ---------------------------------------------------------------- seals

SEAL_FORMAT = "handoff-record-seal/1"


class SealError(ValueError):
    """The seal file is not one this record key made, or not a seal at all."""


def make_seal(session: Session, keys: RecordKeys | None = None) -> dict[str, Any]:
    """Every account's chain head at this moment, signed with the current record key."""
    keys = keys or record_keys()
    heads = [
        [row.id, row.record_seq, row.record_head]
        for row in session.execute(
            select(Account.id, Account.record_seq, Account.record_head).order_by(Account.id)
        )
    ]
    seal: dict[str, Any] = {
        "format": SEAL_FORMAT,
        "sealed_at": utcnow().isoformat(),
        "key_id": keys.current_id,
        "accounts": heads,
    }
    seal["signature"] = _seal_signature(seal, keys.current)
    return seal


def _seal_signature(seal: Mapping[str, Any], key: str) -> str:
    body = json.dumps(
        {name: seal[name] for name in ("format", "sealed_at", "key_id", "accounts")},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hmac.new(key.encode(), f"seal|{body}".encode(), hashlib.sha256).hexdigest()


def read_seal(text: str, keys: RecordKeys | None = None) -> dict[str, Any]:
    keys = keys or record_keys()
    try:
        seal: dict[str, Any] = json.loads(text)
        key = keys.by_id(seal["key_id"]) if seal.get("format") == SEAL_FORMAT else None
        signed = key is not None and hmac.compare_digest(_seal_signature(seal, key), seal["signature"])
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise SealError(f"not a record seal ({error})") from None
    if not signed:
        raise SealError("the seal's signature does not verify with any record key")
    return seal


def changed_since_seal(
    session: Session, seal: Mapping[str, Any], keys: RecordKeys | None = None
) -> list[BrokenLink]:
    """The accounts whose history up to the seal is no longer there as it was sealed: gone,
    cut back, or rewritten (each sealed head must still be an entry of an intact chain)."""
    keys = keys or record_keys()
    changed = []
    for account_id, seq, head_hash in seal["accounts"]:
        broken = verify_chain(session, account_id, keys)
        if broken is None and seq > 0:
            sealed = session.scalar(
                select(RecordEntry.hash).where(RecordEntry.account_id == account_id, RecordEntry.seq == seq)
            )
            if sealed is None:
                broken = BrokenLink(account_id, seq, 0, f"entry {seq} was sealed and is gone")
            elif sealed != head_hash:
                broken = BrokenLink(account_id, seq, 0, f"entry {seq} is not the one sealed")
        if broken is not None:
            changed.append(broken)
    return changed
