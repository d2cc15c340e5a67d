"""The floor under the welcome page and the confirmation POST: their SQL alone, raw driver.

bench/load.py runs `measure` after its rounds, against the same seeded database, to say how
much of a target's budget the database work takes before any HTTP, Flask, form or ORM code
runs. For the welcome page that is one statement, the step read; for the confirmation POST,
one client sends, per POST, what the app sends for the "Visit schedule" step (see
portal.confirmations.record_answers and portal.record.append_all):

    the step read (confirmations.STEP_ACCOUNT_SQL, outside the transaction)
    BEGIN (SQLite: BEGIN IMMEDIATE, as a writing request does)
    INSERT the one-time form id ... ON CONFLICT DO NOTHING RETURNING       (once.claim)
    SELECT the account's status FOR UPDATE                                  (record.lock_account)
    SELECT the chain head: the account's last entry's seq and hash         (record._chain_head)
    INSERT the step's entries, hash-chained, in one statement RETURNING ids (record.append_all)
    UPDATE each item's state pointer (one executemany)                      (record._set_item_states)
    COMMIT

and measures the whole machine's busy CPU time per request (/proc/stat: this process, the
database server's processes, everything), which is what a request costs the machine's cores.
bench/bench_app.py serves the same work over HTTP as the "lean POST" (`answer_schedule` behind
the portal's session and CSRF check, nothing else): what the POST would cost written without
the ORM and the form library. Its entries are the right shape, not the app's own (their hashes
do not verify): a scratch database's business.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.engine import Dialect, Engine

from portal import once, record
from portal.confirmations import STEP_ACCOUNT_SQL
from portal.db import make_engine
from portal.models import RecordEntry

PROC_STAT = Path("/proc/stat")
ENTRY_COLUMNS = [column.key for column in RecordEntry.__table__.columns if column.key != "id"]
SCHEDULE_KINDS = ("visit_day", "start_date")


def machine_busy_seconds() -> float | None:
    """CPU seconds all the machine's cores have spent busy since boot (None off Linux)."""
    if not PROC_STAT.exists():
        return None
    ticks = [int(value) for value in PROC_STAT.read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


class RawStatement:
    """One of the app's statement objects compiled for the raw driver: its SQL text, and its
    parameters (the statement's own values, overridden by the call's) in the driver's style."""

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        self.compiled = statement.compile(dialect=dialect)
        self.sql = self.compiled.string
        self.positional = dialect.paramstyle == "qmark"

    def params(self, **values: Any) -> Any:
        merged = {**self.compiled.params, **values}
        return [merged[name] for name in self.compiled.positiontup or ()] if self.positional else merged


class Statements:
    """The step read and the POST's statements, compiled from the app's own statement objects
    (so the floor follows the app's SQL), in the driver's parameter style."""

    def __init__(self, dialect: Dialect) -> None:
        self.sqlite = dialect.name == "sqlite"
        self.dialect = dialect
        self.read = RawStatement(STEP_ACCOUNT_SQL, self.dialect)
        self.begin = "BEGIN IMMEDIATE" if self.sqlite else "BEGIN"  # as db._sqlite_begin sends
        self.claim = RawStatement(once._CLAIM_SQL[dialect.name], self.dialect)
        self.lock = RawStatement(record._LOCK_SQL, self.dialect)
        self.head = RawStatement(record._LAST_SQL, self.dialect)
        self.set_state = RawStatement(record._SET_ITEM_STATE, self.dialect)
        self._inserts: dict[int, RawStatement] = {}

    def insert_entries(self, count: int) -> RawStatement:
        """record._INSERT_ENTRIES for `count` rows in one statement, as insertmanyvalues sends it;
        row n's values are named column_n."""
        if count not in self._inserts:
            rows = [{column: bindparam(f"{column}_{n}") for column in ENTRY_COLUMNS} for n in range(count)]
            self._inserts[count] = RawStatement(record._INSERT_ENTRIES.values(rows), self.dialect)
        return self._inserts[count]


def measure(database_url: str, work: str = "post", seconds: float = 3.0) -> dict[str, float] | None:
    """Machine CPU ms, client CPU ms and wall ms per request's `work` ("post": the POST's
    statements; "read": the step read alone, all the welcome page reads), from `seconds` of
    them in a row going round the first accounts still open for answers (None where
    /proc/stat is absent)."""
    if machine_busy_seconds() is None:
        return None
    engine = make_engine(database_url)  # the app's connection settings (SQLite's pragmas)
    try:
        with raw_cursor(engine) as cursor:
            statements = Statements(engine.dialect)
            cursor.execute("SELECT id FROM accounts WHERE status <> 'signed' ORDER BY id LIMIT 32")
            accounts = [account_id for (account_id,) in cursor.fetchall()]
            step = answer_schedule if work == "post" else read_step
            for number in range(100):  # warm the caches
                step(cursor, statements, accounts[number % len(accounts)])
            count, started = 0, time.monotonic()
            wall, cpu, busy = time.perf_counter(), time.process_time(), machine_busy_seconds()
            while time.monotonic() - started < seconds:
                step(cursor, statements, accounts[count % len(accounts)])
                count += 1
            busy_after = machine_busy_seconds()
    finally:
        engine.dispose()
    assert busy is not None and busy_after is not None
    return {"machine_ms": (busy_after - busy) * 1000 / count,
            "client_ms": (time.process_time() - cpu) * 1000 / count,
            "wall_ms": (time.perf_counter() - wall) * 1000 / count, "count": count}


@contextmanager
def raw_cursor(engine: Engine) -> Iterator[Any]:
    """A driver cursor from the engine's pool that sends BEGIN and COMMIT itself, as the app's
    statements expect (SQLite's connections do already; psycopg's go to autocommit and back
    before the pool lends them to the app again)."""
    raw = engine.raw_connection()
    own_transactions = engine.dialect.name != "sqlite"
    try:
        if own_transactions:
            raw.driver_connection.autocommit = True
        yield raw.driver_connection.cursor()
    finally:
        if own_transactions:
            raw.driver_connection.autocommit = False
        raw.close()


def read_step(cursor: Any, statements: Statements, account_id: int) -> list[dict[str, Any]]:
    cursor.execute(statements.read.sql, statements.read.params(account_id=account_id))
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def answer_schedule(cursor: Any, statements: Statements, account_id: int) -> None:
    """Answer "that's right" to the schedule step's promises: the step read, then the write."""
    items = [row["item_id"] for row in read_step(cursor, statements, account_id)
             if row["kind"] in SCHEDULE_KINDS and row["current_outcome"] is not None]
    stamp: Any = datetime.now(timezone.utc)
    if statements.sqlite:
        stamp = stamp.isoformat()  # no bind processors run here: sqlite3 takes text
    cursor.execute(statements.begin)
    _run(cursor, statements.claim, token=secrets.token_urlsafe(18), purpose="step-schedule", created_at=stamp)
    cursor.fetchall()
    _run(cursor, statements.lock, account_id=account_id)
    cursor.fetchall()
    _run(cursor, statements.head, account_id=account_id)
    seq, prev_hash = cursor.fetchone()
    entries = []
    for item_id in items:
        seq += 1
        digest = hashlib.sha256(f"{prev_hash}|{account_id}|{seq}|{item_id}|confirmed".encode()).hexdigest()
        entries.append({"account_id": account_id, "seq": seq, "item_id": item_id, "event": "answered",
                        "promised_value": "Friday", "confirmed_value": "Friday", "outcome": "confirmed",
                        "actor": "customer", "note": "", "details": "{}", "created_at": stamp,
                        "request_id": "", "prev_hash": prev_hash, "hash": digest})
        prev_hash = digest
    _run(cursor, statements.insert_entries(len(entries)),
         **{f"{column}_{n}": value for n, entry in enumerate(entries) for column, value in entry.items()})
    ids = dict(cursor.fetchall())
    cursor.executemany(statements.set_state.sql, [
        statements.set_state.params(item_id=entry["item_id"], entry_id=ids[entry["seq"]], outcome="confirmed")
        for entry in entries])
    cursor.execute("COMMIT")


def _run(cursor: Any, statement: RawStatement, **values: Any) -> None:
    cursor.execute(statement.sql, statement.params(**values))
