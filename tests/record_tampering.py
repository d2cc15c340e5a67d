"""What someone with write access to the database but without the record key can do to the
service record: rewrite every hash of an account's chain with plain SHA-256 (the hash the code
used before migration 0004, and the obvious one to try)."""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import Connection, select, text

from portal import record
from portal.models import RecordEntry


def sha256_chain(conn: Connection, account_id: int) -> str:
    """Rechain the account's entries with SHA-256; return the last hash. Reads only the hashed
    columns, so it also works on a schema from before 0004."""
    table = RecordEntry.__table__
    rows = conn.execute(
        select(*(table.c[name] for name in ("id", *record.HASHED_FIELDS)))
        .where(table.c.account_id == account_id)
        .order_by(table.c.seq)
    ).all()
    prev = record.GENESIS
    for row in rows:
        fields = {name: getattr(row, name) for name in record.HASHED_FIELDS}
        fields["created_at"] = row.created_at.isoformat(timespec="microseconds")
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(f"{prev}|{canonical}".encode()).hexdigest()
        conn.execute(
            text("UPDATE record_entries SET prev_hash = :p, hash = :h WHERE id = :id"),
            {"p": prev, "h": digest, "id": row.id},
        )
        prev = digest
    return prev
