"""the service record signed with RECORD_KEY, and each account's chain head

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Entries were chained with plain SHA-256, which anyone can recompute after rewriting an entry.
From here each entry's hash is an HMAC under RECORD_KEY and names the key (`key_id`), and each
account keeps its chain head (last seq and hash) so a cut tail or an emptied record shows.
Existing entries are checked against their SHA-256 chain first (a broken chain stops the
upgrade, naming the account: run `verify-record` on the old version), then re-signed in place,
with the append-only triggers lifted for that moment only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

import sqlalchemy as sa
from alembic import context, op

import portal.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

GENESIS = "0" * 64
FIELDS = (
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

entries = sa.table(
    "record_entries",
    sa.column("id", sa.Integer),
    sa.column("account_id", sa.Integer),
    sa.column("seq", sa.Integer),
    sa.column("item_id", sa.Integer),
    sa.column("event", sa.String),
    sa.column("promised_value", sa.Text),
    sa.column("confirmed_value", sa.Text),
    sa.column("outcome", sa.String),
    sa.column("actor", sa.String),
    sa.column("note", sa.Text),
    sa.column("details", sa.JSON),
    sa.column("created_at", portal.db.UTCDateTime(timezone=True)),
    sa.column("request_id", sa.String),
    sa.column("prev_hash", sa.String),
    sa.column("hash", sa.String),
    sa.column("key_id", sa.String),
)
accounts = sa.table(
    "accounts",
    sa.column("id", sa.Integer),
    sa.column("record_seq", sa.Integer),
    sa.column("record_head", sa.String),
)


def _canonical(row: Any) -> str:
    fields = {name: getattr(row, name) for name in FIELDS}
    fields["created_at"] = row.created_at.isoformat(timespec="microseconds")
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def upgrade() -> None:
    # Plain ALTER TABLE on both databases (no batch copy: that would drop SQLite's triggers).
    op.add_column("accounts", sa.Column("record_seq", sa.Integer(), server_default="0", nullable=False))
    op.add_column(
        "accounts", sa.Column("record_head", sa.String(length=64), server_default=GENESIS, nullable=False)
    )
    op.add_column(
        "record_entries", sa.Column("key_id", sa.String(length=16), server_default="", nullable=False)
    )
    _resign_existing_entries()


def _resign_existing_entries() -> None:
    bind = op.get_bind()
    if bind.execute(sa.select(sa.func.count()).select_from(entries)).scalar() == 0:
        return
    key = context.config.attributes.get("record_key") or os.environ.get("RECORD_KEY")
    if not key:
        raise RuntimeError(
            "The service record is re-signed by this migration: set RECORD_KEY "
            "(or run it through `flask --app wsgi db upgrade`)."
        )
    key_id = hashlib.sha256(f"handoff-record-key:{key}".encode()).hexdigest()[:16]
    _lift_append_only(bind)
    account_id, stored_prev, new_prev, seq = None, GENESIS, GENESIS, 0
    heads: dict[int, tuple[int, str]] = {}
    for row in bind.execute(sa.select(entries).order_by(entries.c.account_id, entries.c.seq)).all():
        if row.account_id != account_id:
            account_id, stored_prev, new_prev, seq = row.account_id, GENESIS, GENESIS, 0
        canonical = _canonical(row)
        seq += 1
        # SHA-256 as before 0004, or already this key's HMAC (upgraded before, then downgraded).
        if (
            row.seq != seq
            or row.prev_hash != stored_prev
            or row.hash
            not in (
                hashlib.sha256(f"{stored_prev}|{canonical}".encode()).hexdigest(),
                hmac.new(key.encode(), f"{stored_prev}|{canonical}".encode(), hashlib.sha256).hexdigest(),
            )
        ):
            raise RuntimeError(
                f"Account {row.account_id}: the service record is broken at entry "
                f"{row.seq} already; not re-signing it."
            )
        new_hash = hmac.new(key.encode(), f"{new_prev}|{canonical}".encode(), hashlib.sha256).hexdigest()
        bind.execute(
            entries.update()
            .where(entries.c.id == row.id)
            .values(prev_hash=new_prev, hash=new_hash, key_id=key_id)
        )
        stored_prev, new_prev = row.hash, new_hash
        heads[row.account_id] = (row.seq, new_hash)
    for head_account, (head_seq, head_hash) in heads.items():
        bind.execute(
            accounts.update()
            .where(accounts.c.id == head_account)
            .values(record_seq=head_seq, record_head=head_hash)
        )
    _restore_append_only(bind)


def _lift_append_only(bind: sa.Connection) -> None:
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE record_entries DISABLE TRIGGER record_entries_append_only")
    else:
        op.execute("DROP TRIGGER IF EXISTS record_entries_no_update")


def _restore_append_only(bind: sa.Connection) -> None:
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE record_entries ENABLE TRIGGER record_entries_append_only")
    else:
        op.execute(
            "CREATE TRIGGER record_entries_no_update BEFORE UPDATE ON record_entries "
            "BEGIN SELECT RAISE(ABORT, 'service record entries are append-only'); END"
        )


def downgrade() -> None:
    # The HMAC chain stays as it is (an older version reads it as broken); upgrading again
    # accepts it.
    op.drop_column("record_entries", "key_id")
    op.drop_column("accounts", "record_head")
    op.drop_column("accounts", "record_seq")
