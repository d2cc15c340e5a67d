"""Benchmark: the staff workspace at scale (issue 6, "Scale").

    .venv/bin/python bench/staff_scale.py [--sizes 1000,100000] [--requests 50]
        [--postgres postgresql://postgres@127.0.0.1:5432/handoff_scale_bench] [--no-sqlite]
        [--items 8] [--workers 2] [--page-seconds 30] [--keep] [--plans]

For each size (number of accounts) and each database it:

1. starts from an empty schema (a fresh SQLite file in a temp dir; with --postgres, the URL's
   database after DROP SCHEMA public CASCADE / CREATE SCHEMA public -- it is left seeded at the
   end, for EXPLAIN ANALYZE by hand) and migrates it with portal.migrate.upgrade;
2. seeds a realistic data set: staff (6 sales, 2 office, an admin, a technician), one customer,
   one account and one welcome email per account (first visits over the next 90 days; ~70 %
   signed, the rest link sent / opened / in progress; 0.5 % of emails failed), --items promise
   items per account (default 8, one of each kind), and each account's service record: a
   'promised' entry per item, link_sent, link_opened, the customer's answers (every item of a
   signed account, some of an account in progress; ~10 % changed or disputed), signed, and
   staff resolutions (~40 % of the differences of signed accounts) and assignments. That is
   ~17 entries per account with 8 items (1.69 M entries for 100,000 accounts); --items 4 gives
   ~10 (1 M). Each account's entries are hash-chained with portal.record.chain_rows, and each
   item's latest_entry_id / current_outcome point at its latest entry with an outcome
   (record.append's rule); verify_chain checks two accounts afterwards, which also proves the
   stored values read back as they were hashed. Rows go in through SQLAlchemy Core's
   Connection with driver-level executemany (at most 5,000 rows a statement, one transaction
   per 300 accounts), values pre-converted the way the app's column types bind them; worker
   processes (--workers) generate and hash the next chunks meanwhile. Entry ids are
   account_id * 64 + seq. Then ANALYZE (PostgreSQL: VACUUM ANALYZE);
3. signs an office user in through /staff/login and times --requests GETs of each page with
   the Flask test client: a bare route registered by this script (the yardstick), the
   dashboard, the differences list (first page, a middle page, kind=gate_access&status=open),
   account pages of random accounts, and the accounts list (first page, a middle page, first-
   visit order filtered to signed, a search for a customer's number and one for a phone number
   typed with dashes), after 3 untimed warm-up requests. The pages take turns, 5 requests at
   a time, so a shared machine's changing load falls on every page and on the bare route alike
   (their ratios stay comparable). Lists page by keyset, so the middle
   pages are reached once beforehand by following "Next" links. With PostgreSQL, whose bulk
   load runs with triggers off, the pipeline counts are rebuilt after it (pipeline.recount). A page that
   has taken more than --page-seconds in all stops early (after at least 20 requests; n is printed), which
   bounds the run time. It prints the median and 95th percentile in ms, each median as a
   multiple of the bare route's, and the SQL statements per request (counted with a
   before_cursor_execute listener; BEGIN/COMMIT not counted), which must not depend on size;
4. captures the statements of one request of each page, with their time in the database, and
   EXPLAINs them with their parameters (SQLite: EXPLAIN QUERY PLAN; PostgreSQL: EXPLAIN),
   printing how each table is reached and flagging full scans of record_entries,
   promise_items and accounts (plans of slow or flagged statements in full; --plans: all).

At the end: one table per database (backend, accounts, entries, page, median, p95, ratio to the
bare route, queries per request, n) and each page's growth factor from the smallest size to
the largest. Compare ratios and growth factors, not milliseconds (the team's PERFORMANCE.md):
the test client runs requests one at a time in this process, unlike wrk against gunicorn.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from importlib.metadata import version
from operator import itemgetter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import JSON, Date, event, func, select, text  # noqa: E402
from sqlalchemy.engine import Connection, Engine  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from portal import create_app, migrate  # noqa: E402
from portal.auth import create_staff  # noqa: E402
from portal.db import UTCDateTime, get_db, make_engine  # noqa: E402
from portal.handoffs import KIND_LABELS, KIND_ORDER  # noqa: E402
from portal.models import (  # noqa: E402
    DIFFERENT,
    Account,
    CompanySettings,
    Customer,
    OutboxEmail,
    PromiseItem,
    RecordEntry,
)
from portal.pipeline import recount  # noqa: E402
from portal.record import ChainHead, RecordKeys, chain_rows, verify_chain  # noqa: E402

PASSWORD = "bench-password-123"
OFFICE_EMAIL = "olivia@bench.example"
SALES = [
    (f"{name.lower()}@bench.example", f"{name} Sales")
    for name in ("Sam", "Sky", "Sasha", "Sol", "Sage", "Sid")
]
OFFICE = [(OFFICE_EMAIL, "Olivia Office"), ("omar@bench.example", "Omar Office")]
ROWS_PER_STATEMENT = 5_000
ACCOUNTS_PER_TRANSACTION = 300
# Entry ids are account_id * 64 + seq: unique, increasing with seq within an account (the
# "latest entry" rule compares ids), and computable in any process without a global counter.
ENTRY_ID_STRIDE = 64
NOT_COUNTED = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")
WATCHED_TABLES = ("record_entries", "promise_items", "accounts")
MIN_REQUESTS = 20

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Mon and Thu", "Tue and Fri"]
PLANS = [
    ("Weekly full service", 16500),
    ("Bi-weekly chemicals only", 8950),
    ("Weekly full service + filter", 18900),
]
SAFETY = [
    "Dog in the yard, keep the gate latched",
    "Toddler at home: always re-latch the gate",
    "No chemicals stored near the pump",
    "Slippery steps by the spa",
]
EQUIPMENT = [
    "Salt cell check before summer",
    "Replace the pump basket lid",
    "Check the heater before winter",
    "Clean the cartridge filter monthly",
]
CUSTOM = [
    "Skim leaves, please",
    "Text before arriving",
    "Use the side entrance",
    "Leave the test strip results on the patio table",
]
BILLING = ["Card autopay", "Invoice by email"]
# How often the customer corrects or disputes each kind of promise (~10 % overall).
DIFF_RATE = {
    "visit_day": 0.16,
    "start_date": 0.14,
    "gate_access": 0.15,
    "safety": 0.05,
    "equipment": 0.08,
    "price": 0.04,
    "billing": 0.08,
    "custom": 0.10,
}
COMMENTS = [
    "We changed the gate code last week.",
    "That day does not work for us any more.",
    "Please call before the first visit.",
    "My husband handles the billing.",
    "We agreed something else on the phone.",
]


# --------------------------------------------------------------------------------------------
# Seeding
# --------------------------------------------------------------------------------------------

BENCH_KEYS = RecordKeys("bench-record-key")


class Row(dict):  # type: ignore[type-arg]
    """A row for executemany, readable like a RecordEntry."""

    __getattr__ = dict.__getitem__


@dataclass
class Staff:
    sales: list[tuple[int, str]]
    office: list[tuple[int, str]]


@dataclass
class Chunk:
    customers: list[dict[str, Any]] = field(default_factory=list)
    accounts: list[dict[str, Any]] = field(default_factory=list)
    emails: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)

    def rows(self) -> int:
        return sum(len(v) for v in (self.customers, self.accounts, self.emails, self.items, self.entries))


@dataclass
class SeedResult:
    accounts: int
    items: int
    entries: int
    rows: int
    seconds: float
    analyze_seconds: float
    open_differences: int
    gate_access_open: int


class Generator:
    """Builds one account at a time: its customer, items, hash-chained entries and email."""

    def __init__(self, rng: random.Random, staff: Staff, now: datetime, items_per_account: int):
        self.rng = rng
        self.staff = staff
        self.now = now
        self.today = now.date()
        self.kinds = (
            KIND_ORDER[:items_per_account] if items_per_account < len(KIND_ORDER) else list(KIND_ORDER)
        )
        self.next_item_id = 1

    # time helpers: every timestamp strictly increases within an account and stays in the past
    def _later(self, t: datetime, low_s: float, high_s: float) -> datetime:
        room = (self.now - t).total_seconds() * 0.5
        return t + timedelta(seconds=min(self.rng.uniform(low_s, high_s), room))

    def account(self, account_id: int, chunk: Chunk) -> None:
        rng, now = self.rng, self.now
        roll = rng.random()
        status = (
            "signed"
            if roll < 0.70
            else "in_progress"
            if roll < 0.80
            else "opened"
            if roll < 0.90
            else "link_sent"
        )
        if status == "signed":
            sent = now - timedelta(days=rng.uniform(5, 60))
        else:  # most links went out recently; a tail is older than the 14-day link life
            sent = now - timedelta(days=min(1 + rng.expovariate(1 / 5), 40), seconds=rng.uniform(0, 86400))
        created = sent - timedelta(seconds=rng.uniform(300, 86400))
        sales_id, sales_name = rng.choice(self.staff.sales)
        plan, price = rng.choice(PLANS)
        first_visit = self.today + timedelta(days=rng.randint(1, 90))
        name = f"Customer {account_id:06d}"
        email = f"customer{account_id:06d}@example.com"

        chunk.customers.append(
            {
                "id": account_id,
                "name": name,
                "email": email,
                "phone": f"+1 480 555 {account_id % 10000:04d}",
                "created_at": created,
            }
        )
        promised = {
            "visit_day": rng.choice(DAYS),
            "start_date": first_visit.isoformat(),
            "gate_access": f"Side gate, code {rng.randint(1000, 9999)}",
            "safety": rng.choice(SAFETY),
            "equipment": rng.choice(EQUIPMENT),
            "price": f"{plan}, ${price / 100:,.2f} per month",
            "billing": rng.choice(BILLING),
            "custom": rng.choice(CUSTOM),
        }
        items = []
        for position, kind in enumerate(self.kinds):
            item = {
                "id": self.next_item_id,
                "account_id": account_id,
                "kind": kind,
                "label": KIND_LABELS[kind],
                "promised_value": promised[kind],
                "promised_by_id": sales_id,
                "position": position,
                "created_at": created,
                "withdrawn_at": None,
                "latest_entry_id": None,
                "current_outcome": "promised",
            }
            self.next_item_id += 1
            items.append(item)

        entries: list[Row] = []
        clock = [created]

        def add(
            at: datetime,
            event_: str,
            actor: str,
            item: dict[str, Any] | None = None,
            promised_value: str | None = None,
            confirmed_value: str | None = None,
            outcome: str | None = None,
            note: str = "",
            details: dict[str, Any] | None = None,
        ) -> Row:
            at = max(at, clock[0] + timedelta(microseconds=1000))
            clock[0] = at
            head = ChainHead(len(entries), entries[-1]["hash"]) if entries else ChainHead()
            (row,), _ = chain_rows(
                account_id,
                head,
                [
                    {
                        "item_id": item["id"] if item else None,
                        "event": event_,
                        "promised_value": promised_value,
                        "confirmed_value": confirmed_value,
                        "outcome": outcome,
                        "actor": actor,
                        "note": note,
                        "details": details or {},
                        "created_at": at,
                        "request_id": os.urandom(8).hex(),
                    }
                ],
                BENCH_KEYS,
            )
            entry = Row(id=account_id * ENTRY_ID_STRIDE + len(entries) + 1, **row)
            entries.append(entry)
            if item is not None and outcome is not None:  # record.append's rule
                item["latest_entry_id"], item["current_outcome"] = entry["id"], outcome
            return entry

        for item in items:
            add(
                created,
                "promised",
                f"staff:{sales_id}",
                item,
                item["promised_value"],
                outcome="promised",
                note=f"promised by {sales_name}",
            )
        add(sent, "link_sent", f"staff:{sales_id}", details={"to": email, "email_id": account_id})
        opened = signed_at = None
        differences: list[tuple[dict[str, Any], Row]] = []
        if status != "link_sent":
            opened = self._later(sent, 300, 2 * 86400)
            add(opened, "link_opened", "customer")
        if status in ("in_progress", "signed"):
            answered = items if status == "signed" else rng.sample(items, rng.randint(1, len(items) - 1))
            t = self._later(opened, 60, 1800)  # type: ignore[arg-type]
            for item in sorted(answered, key=lambda i: i["position"]):
                t = self._later(t, 20, 180)
                if rng.random() < DIFF_RATE[item["kind"]]:
                    disputed = rng.random() < 0.3
                    answer = add(
                        t,
                        "answered",
                        "customer",
                        item,
                        item["promised_value"],
                        None if disputed else self._changed(item, first_visit),
                        "disputed" if disputed else "changed",
                        rng.choice(COMMENTS),
                    )
                    differences.append((item, answer))
                else:
                    add(
                        t,
                        "answered",
                        "customer",
                        item,
                        item["promised_value"],
                        item["promised_value"],
                        "confirmed",
                    )
            if status == "signed":
                signed_at = self._later(t, 60, 600)
                add(
                    signed_at,
                    "signed",
                    "customer",
                    confirmed_value=name,
                    note="signed the onboarding summary",
                    details={
                        "summary_sha256": hashlib.sha256(name.encode()).hexdigest(),
                        "promises": len(items),
                    },
                )
        office_id, _ = rng.choice(self.staff.office)
        for item, answer in differences:
            t = self._later(clock[0], 3600, 2 * 86400)
            if signed_at is not None and rng.random() < 0.4:
                accepted = answer["outcome"] == "changed" and rng.random() < 0.6
                agreed = answer["confirmed_value"] if accepted else item["promised_value"]
                add(
                    t,
                    "resolved",
                    f"staff:{office_id}",
                    item,
                    item["promised_value"],
                    agreed,
                    "resolved",
                    "" if accepted else "Called the customer; they agreed to the promise.",
                    {
                        "resolution": "accepted" if accepted else "kept",
                        "customer_value": answer["confirmed_value"],
                        "customer_outcome": answer["outcome"],
                        "customer_comment": answer["note"],
                    },
                )
                if accepted and item["kind"] == "start_date":
                    first_visit = date.fromisoformat(agreed)
            elif rng.random() < 0.2:
                assignee_id, assignee = rng.choice(self.staff.sales)
                add(
                    t,
                    "assigned",
                    f"staff:{office_id}",
                    item,
                    note="Please call them",
                    details={"assignee_id": assignee_id, "assignee": assignee},
                )

        failed = rng.random() < 0.005
        chunk.emails.append(
            {
                "id": account_id,
                "account_id": account_id,
                "kind": "welcome",
                "to_address": email,
                "subject": "Blue Lagoon Pool Care: please confirm your pool service",
                "text_body": f"Hello {name},\n\nPlease confirm what we promised.\n" * 4,
                "html_body": f"<p>Hello {name},</p><p>Please confirm what we promised.</p>" * 4,
                "status": "failed" if failed else "sent",
                "attempts": 6 if failed else 1,
                "next_attempt_at": sent,
                "locked_until": None,
                "last_error": "550 5.1.1 mailbox unavailable" if failed else "",
                "message_id": f"<{account_id}.welcome@bench.example>",
                "attachments": [],
                "created_at": sent,
                "sent_at": None if failed else sent,
                "file_name": "",
            }
        )
        chunk.accounts.append(
            {
                "id": account_id,
                "customer_id": account_id,
                "visits_per_week": 1,
                "service_address": f"{100 + account_id % 9000} W Palm Ln, Phoenix, AZ 85007",
                "plan": plan,
                "price_cents": price,
                "first_visit": first_visit,
                "salesperson_id": sales_id,
                "status": status,
                "why_chose_us": "Neighbour recommended us",
                "concerns": "Previous company skipped visits",
                "contact_preference": "Text, evenings",
                "link_nonce_hash": os.urandom(32).hex(),
                "link_sent_at": sent,
                "link_opened_at": opened,
                "signed_at": signed_at,
                "reminders_sent": 0,
                "last_reminder_at": None,
                "billing_method": None,
                "stripe_customer_id": None,
                "card_brand": None,
                "card_last4": None,
                "card_exp": None,
                "stripe_payment_method_id": None,
                "deleted_at": None,
                "created_at": created,
                "updated_at": clock[0],
                "version": 1,
                "record_seq": len(entries),
                "record_head": entries[-1]["hash"],
            }
        )
        assert len(entries) < ENTRY_ID_STRIDE
        chunk.items.extend(items)
        chunk.entries.extend(entries)

    def _changed(self, item: dict[str, Any], first_visit: date) -> str:
        rng, kind, value = self.rng, item["kind"], item["promised_value"]
        if kind == "visit_day":
            return rng.choice([d for d in DAYS if d != value])
        if kind == "start_date":
            return (first_visit + timedelta(days=rng.choice([-3, -2, 2, 3, 7]))).isoformat()
        if kind == "gate_access":
            return f"Back gate, code {rng.randint(1000, 9999)}"
        if kind == "billing":
            return next(b for b in BILLING if b != value)
        if kind == "price":
            return value.replace("per month", "per month, first month free as agreed")
        return f"{value}, and please skip public holidays"


TABLES = {
    m.__tablename__: m.__table__ for m in (Customer, Account, OutboxEmail, RecordEntry, PromiseItem)
}  # insert order


def _converters(backend: str) -> dict[str, list[tuple[int, Callable[[Any], Any]]]]:
    """Per table: (column position, conversion) for the columns whose Python value is not
    what the driver should get, done the way the app's column types bind them (SQLite: naive
    UTC 'YYYY-MM-DD HH:MM:SS.ffffff' text and ISO dates; both: JSON text). verify_chain reads
    rows back through the ORM and re-hashes them, which checks these conversions."""

    def sqlite_time(value: datetime | None) -> str | None:
        # every generated time is UTC already (derived from datetime.now(timezone.utc))
        return None if value is None else value.replace(tzinfo=None).isoformat(" ", "microseconds")

    def sqlite_date(value: date | None) -> str | None:
        return None if value is None else value.isoformat()

    def to_json(value: Any) -> str:
        return json.dumps(value)

    result = {}
    for name, table in TABLES.items():
        convert: list[tuple[int, Callable[[Any], Any]]] = []
        for position, column in enumerate(table.columns):
            if isinstance(column.type, JSON):
                convert.append((position, to_json))
            elif backend == "sqlite" and isinstance(column.type, UTCDateTime):
                convert.append((position, sqlite_time))
            elif backend == "sqlite" and isinstance(column.type, Date):
                convert.append((position, sqlite_date))
        result[name] = convert
    return result


def _insert_sql(backend: str) -> dict[str, str]:
    mark = "?" if backend == "sqlite" else "%s"
    return {
        name: f"INSERT INTO {name} ({', '.join(c.name for c in table.columns)}) "
        f"VALUES ({', '.join([mark] * len(table.columns))})"
        for name, table in TABLES.items()
    }


def _generate(task: tuple[int, int, int, Staff, datetime, int, str]) -> dict[str, list[tuple[Any, ...]]]:
    """One chunk of accounts as driver-ready rows per table (in a worker process when
    --workers > 1, so generating and hashing overlap with the inserts)."""
    first, last, seed_, staff, now, items_per_account, backend = task
    gen = Generator(random.Random(f"{seed_}:{first}"), staff, now, items_per_account)
    gen.next_item_id = (first - 1) * len(gen.kinds) + 1
    chunk = Chunk()
    for account_id in range(first, last + 1):
        gen.account(account_id, chunk)
    data = {
        "customers": chunk.customers,
        "accounts": chunk.accounts,
        "outbox_emails": chunk.emails,
        "record_entries": chunk.entries,
        "promise_items": chunk.items,
    }
    result = {}
    for name, (getter, conversions) in _row_makers(backend).items():
        rows = []
        for row in data[name]:
            values = list(getter(row))
            for index, convert in conversions:
                values[index] = convert(values[index])
            rows.append(tuple(values))
        result[name] = rows
    return result


def _row_makers(backend: str) -> dict[str, tuple[Callable[[Any], Any], list[tuple[int, Any]]]]:
    converters = _converters(backend)
    return {
        name: (itemgetter(*(c.name for c in table.columns)), converters[name])
        for name, table in TABLES.items()
    }


def _chunks(
    accounts: int, items_per_account: int, staff: Staff, seed_: int, workers: int, backend: str
) -> Iterator[dict[str, list[tuple[Any, ...]]]]:
    """Chunks in account order."""
    now = datetime.now(timezone.utc)
    tasks = [
        (
            first,
            min(first + ACCOUNTS_PER_TRANSACTION - 1, accounts),
            seed_,
            staff,
            now,
            items_per_account,
            backend,
        )
        for first in range(1, accounts + 1, ACCOUNTS_PER_TRANSACTION)
    ]
    if workers <= 1:
        yield from map(_generate, tasks)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pending: deque[Any] = deque()
        for task in tasks:
            pending.append(pool.apply_async(_generate, (task,)))
            if len(pending) > 2 * workers:  # bounded look-ahead, bounded memory
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def seed(
    engine: Engine,
    backend: str,
    accounts: int,
    items_per_account: int,
    staff: Staff,
    seed_: int,
    workers: int,
) -> SeedResult:
    """Bulk-load through SQLAlchemy Core's Connection (driver-level executemany of at most
    ROWS_PER_STATEMENT rows), one transaction per chunk of ACCOUNTS_PER_TRANSACTION accounts."""
    sql = _insert_sql(backend)
    rows = items = entries = done = 0
    started = time.perf_counter()
    for chunk in _chunks(accounts, items_per_account, staff, seed_, workers, backend):
        with engine.begin() as conn:  # one transaction per chunk
            if backend == "postgresql":
                conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            for name, data in chunk.items():
                for start in range(0, len(data), ROWS_PER_STATEMENT):
                    conn.exec_driver_sql(sql[name], data[start : start + ROWS_PER_STATEMENT])
        rows += sum(len(data) for data in chunk.values())
        items += len(chunk["promise_items"])
        entries += len(chunk["record_entries"])
        before, done = done, done + len(chunk["accounts"])
        if accounts >= 20_000 and done // 20_000 > before // 20_000:
            print(
                f"    ... {done:,} accounts, {entries:,} entries, {time.perf_counter() - started:.0f} s",
                flush=True,
            )
    seconds = time.perf_counter() - started
    _check_foreign_keys(engine, backend)
    if backend == "postgresql":
        # Replica mode kept the triggers off, so the pipeline counts they keep start from a
        # recount (SQLite's triggers ran during the load, search index included; PostgreSQL's
        # search indexes need no trigger).
        with Session(engine) as session:
            recount(session)
            session.commit()
    if backend == "postgresql":
        with engine.begin() as conn:
            for name in ("customers", "accounts", "outbox_emails", "promise_items", "record_entries"):
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), (SELECT max(id) FROM {name}))"
                    )
                )
    analyze_started = time.perf_counter()
    if backend == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    analyze_seconds = time.perf_counter() - analyze_started
    with engine.connect() as conn:
        open_diffs = (
            conn.scalar(
                select(func.count())
                .select_from(PromiseItem)
                .where(PromiseItem.current_outcome.in_(DIFFERENT), PromiseItem.withdrawn_at.is_(None))
            )
            or 0
        )
        gate_open = (
            conn.scalar(
                select(func.count())
                .select_from(PromiseItem)
                .where(PromiseItem.current_outcome.in_(DIFFERENT), PromiseItem.kind == "gate_access")
            )
            or 0
        )
    return SeedResult(accounts, items, entries, rows, seconds, analyze_seconds, open_diffs, gate_open)


def seeding_engine(url: str, backend: str) -> Engine:
    """The app's engine settings, minus foreign-key enforcement while the rows go in.

    Items point at entries (latest_entry_id) and entries at items (item_id). Neither database
    can take that circle row by row: PostgreSQL's constraints are not deferrable, and SQLite's
    deferred mode looks for the child rows of every inserted parent while violations are
    outstanding -- a scan of promise_items per entry, as latest_entry_id has no index. So
    SQLite seeds with foreign_keys=OFF, PostgreSQL with session_replication_role=replica
    (superuser), and _check_foreign_keys verifies every reference afterwards."""
    engine = make_engine(url)
    if backend == "sqlite":
        event.listen(
            engine, "connect", lambda dbapi_conn, _record: dbapi_conn.execute("PRAGMA foreign_keys = OFF")
        )
    return engine


def _check_foreign_keys(engine: Engine, backend: str) -> None:
    if backend == "sqlite":
        with engine.connect() as conn:
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise SystemExit(f"seeding bug: foreign keys broken, e.g. {broken[:5]}")
        return
    checks = {
        "promise_items.latest_entry_id": "SELECT count(*) FROM promise_items p LEFT JOIN record_entries e"
        " ON e.id = p.latest_entry_id WHERE p.latest_entry_id IS NOT NULL AND e.id IS NULL",
        "record_entries.item_id": "SELECT count(*) FROM record_entries e LEFT JOIN promise_items p"
        " ON p.id = e.item_id WHERE e.item_id IS NOT NULL AND p.id IS NULL",
        "record_entries.account_id": "SELECT count(*) FROM record_entries e LEFT JOIN accounts a"
        " ON a.id = e.account_id WHERE a.id IS NULL",
    }
    with engine.connect() as conn:
        for name, sql in checks.items():
            orphans = conn.exec_driver_sql(sql).scalar()
            if orphans:
                raise SystemExit(f"seeding bug: {orphans} rows break the foreign key {name}")


def create_people(app: Any) -> Staff:
    with app.app_context():
        session = get_db()
        session.add(
            CompanySettings(
                name="Blue Lagoon Pool Care",
                phone="+1 480 555 0100",
                email="hello@bluelagoon.example",
                office_email="office@bluelagoon.example",
                currency="USD",
                timezone="America/Phoenix",
                readiness_checklist=[],
            )
        )
        sales = [(create_staff(session, e, PASSWORD, "sales", n).id, n) for e, n in SALES]
        office = [(create_staff(session, e, PASSWORD, "office", n).id, n) for e, n in OFFICE]
        create_staff(session, "alex@bench.example", PASSWORD, "admin", "Alex Admin")
        create_staff(session, "theo@bench.example", PASSWORD, "technician", "Theo Tech")
        session.commit()
    return Staff(sales, office)


def verify_samples(app: Any, accounts: int, rng: random.Random) -> list[int]:
    """verify_chain on a random account and on one with a staff resolution."""
    with app.app_context():
        session = get_db()
        resolved = session.scalar(
            select(RecordEntry.account_id)
            .where(RecordEntry.event == "resolved")
            .order_by(RecordEntry.id)
            .limit(1)
        )
        sample = [rng.randint(1, accounts)] + ([resolved] if resolved else [])
        for account_id in sample:
            broken = verify_chain(session, account_id)
            if broken is not None:
                raise SystemExit(f"seeded chain does not verify: {broken}")
    return sample


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


class StatementLog:
    """Counts the SQL statements an engine runs; optionally keeps them with their timings."""

    def __init__(self) -> None:
        self.count = 0
        self.capturing = False
        self.captured: list[list[Any]] = []  # [statement, parameters, seconds]

    def attach(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(
        self, conn: Connection, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        if statement.lstrip().upper().startswith(NOT_COUNTED):
            return
        self.count += 1
        if self.capturing:
            self.captured.append([statement, parameters, None])
            conn.info["bench_started"] = time.perf_counter()

    def _after(self, conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if self.capturing and self.captured and self.captured[-1][0] is statement:
            self.captured[-1][2] = time.perf_counter() - conn.info.pop("bench_started")


@dataclass
class PageFigures:
    page: str
    median_ms: float
    p95_ms: float
    queries: tuple[int, int]  # min, max per request
    kib: float
    n: int
    ratio: float = 0.0


@dataclass
class SizeFigures:
    backend: str
    accounts: int
    entries: int
    seed: SeedResult
    pages: list[PageFigures]
    plans: list[tuple[str, list[PlanLine]]]


@dataclass
class PlanLine:
    sql: str
    ms: float
    plan: list[str]
    access: list[str]
    flags: list[str]


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


ROUND = 5  # requests of one page in a row before the next page's turn


def measure(
    client: Any,
    log: StatementLog,
    pages: list[tuple[str, Callable[[], str]]],
    requests: int,
    budget_s: float,
    warmup: int = 3,
) -> list[PageFigures]:
    """`requests` timed GETs of each page after `warmup` untimed ones, the pages taking turns
    ROUND requests at a time, so a change in the machine's load (other people's work on a shared
    machine) falls on every page and on the bare route alike; a page that has taken more than
    budget_s in all stops early, after at least MIN_REQUESTS (so the whole run stays bounded)."""
    for _, path in pages:
        for _ in range(warmup):
            _get(client, path())
    times: list[list[float]] = [[] for _ in pages]
    counts: list[list[int]] = [[] for _ in pages]
    sizes = [0] * len(pages)
    spent = [0.0] * len(pages)
    gc.collect()
    for _ in range(math.ceil(requests / ROUND)):
        for index, (_, path) in enumerate(pages):
            for _ in range(ROUND):
                if len(times[index]) >= requests or (
                    len(times[index]) >= MIN_REQUESTS and spent[index] > budget_s
                ):
                    break
                url = path()
                log.count = 0
                started = time.perf_counter()
                response = client.get(url)
                took = time.perf_counter() - started
                spent[index] += took
                times[index].append(took * 1000)
                counts[index].append(log.count)
                _check(response, url)
                sizes[index] = len(response.get_data())
    return [
        PageFigures(
            name,
            statistics.median(times[index]),
            p95(times[index]),
            (min(counts[index]), max(counts[index])),
            sizes[index] / 1024,
            len(times[index]),
        )
        for index, (name, _) in enumerate(pages)
    ]


def _get(client: Any, url: str) -> Any:
    response = client.get(url)
    _check(response, url)
    return response


def _check(response: Any, url: str) -> None:
    if response.status_code != 200:
        raise SystemExit(f"GET {url} answered {response.status_code}")


def walk_next(client: Any, url: str, steps: int) -> str:
    """The URL `steps` "Next" links after `url` (keyset pages carry the last row's key)."""
    for _ in range(max(0, steps)):
        page = _get(client, url).get_data(as_text=True)
        found = re.search(r'href="([^"]+)" rel="next"', page)
        if found is None:
            break
        url = found.group(1).replace("&amp;", "&")
    return url


def signed_in_client(app: Any) -> Any:
    client = app.test_client()
    client.get("/staff/login")
    response = client.post("/staff/login", data={"email": OFFICE_EMAIL, "password": PASSWORD})
    if response.status_code != 302:
        raise SystemExit(f"could not sign in (HTTP {response.status_code})")
    return client


# --------------------------------------------------------------------------------------------
# Query plans
# --------------------------------------------------------------------------------------------


def explain(engine: Engine, backend: str, log: StatementLog, client: Any, url: str) -> list[PlanLine]:
    log.captured, log.capturing = [], True
    try:
        _get(client, url)
    finally:
        log.capturing = False
    lines = []
    with engine.connect() as conn:
        for statement, parameters, seconds in log.captured:
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            if backend == "sqlite":
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
                plan = [_indent_sqlite(rows, row) for row in rows]
                access, flags = _sqlite_access(rows)
            else:
                rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
                plan = [row[0] for row in rows]
                access, flags = _postgres_access(plan)
            lines.append(PlanLine(_short_sql(statement), (seconds or 0) * 1000, plan, access, flags))
        conn.rollback()
    return lines


def _indent_sqlite(rows: list[Any], row: Any) -> str:
    depth, parent = 0, row[1]
    parents = {r[0]: r[1] for r in rows}
    while parent:
        depth, parent = depth + 1, parents.get(parent, 0)
    return "  " * depth + row[3]


SQLITE_SCAN = re.compile(r"^SCAN (\w+)(?: USING (COVERING )?INDEX (\w+))?")
SQLITE_SEARCH = re.compile(r"^SEARCH (\w+) USING (?:(?:COVERING )?INDEX (\w+)|INTEGER PRIMARY KEY)")


def _sqlite_access(rows: list[Any]) -> tuple[list[str], list[str]]:
    access, flags = [], []
    for row in rows:
        detail = row[3]
        if m := SQLITE_SEARCH.match(detail):
            access.append(f"{m.group(1)}: index {m.group(2) or 'primary key'}")
        elif m := SQLITE_SCAN.match(detail):
            table, index = m.group(1), m.group(3)
            if index:
                access.append(f"{table}: full index scan {index}")
                if table in WATCHED_TABLES:
                    flags.append(f"full index scan of {table} ({index})")
            elif table in WATCHED_TABLES or not table.startswith("anon"):
                access.append(f"{table}: TABLE SCAN")
                if table in WATCHED_TABLES:
                    flags.append(f"FULL TABLE SCAN of {table}")
        elif "TEMP B-TREE" in detail:
            access.append(detail.lower())
    return access, flags


PG_NODE = re.compile(
    r"(Seq Scan|Index Only Scan|Index Scan|Bitmap Heap Scan)(?: Backward)?"
    r"(?: using (\w+))? on (\w+)"
)


def _postgres_access(plan: list[str]) -> tuple[list[str], list[str]]:
    access, flags = [], []
    for number, line in enumerate(plan):
        m = PG_NODE.search(line)
        if not m:
            if "Sort" in line and "Key" not in line and "->" in line:
                access.append(line.strip().split("  (")[0].lstrip("-> ").lower())
            continue
        node, index, table = m.groups()
        if node == "Seq Scan":
            access.append(f"{table}: TABLE SCAN")
            if table in WATCHED_TABLES:
                flags.append(f"FULL TABLE SCAN of {table}")
            continue
        conditioned = any(
            ("Index Cond" in follow or "Recheck Cond" in follow)
            for follow in plan[number + 1 : number + 4]
            if "->" not in follow
        )
        what = index or "bitmap"
        if conditioned or node == "Bitmap Heap Scan":
            access.append(f"{table}: index {what}")
        else:
            access.append(f"{table}: full index scan {what}")
            if table in WATCHED_TABLES:
                flags.append(f"full index scan of {table} ({what})")
    return access, flags


def _short_sql(statement: str) -> str:
    flat = " ".join(statement.split())
    tables = re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", flat)
    where = re.search(r"\bWHERE (.{0,90})", flat)
    head = "SELECT count" if flat.startswith("SELECT count") else "SELECT"
    return f"{head} .. FROM {', '.join(dict.fromkeys(tables))}" + (
        f" WHERE {where.group(1)}.." if where else ""
    )


# --------------------------------------------------------------------------------------------
# One size on one database
# --------------------------------------------------------------------------------------------


def run_size(
    backend: str, database_url: str, accounts: int, args: argparse.Namespace, workdir: Path
) -> SizeFigures:
    label = "SQLite" if backend == "sqlite" else "PostgreSQL"
    print(f"\n=== {label}, {accounts:,} accounts ===", flush=True)
    os.environ["PORTAL_INSTANCE_PATH"] = str(workdir / "instance")
    settings = {
        "DATABASE_URL": database_url,
        "TESTING": True,
        "SECRET_KEY": "bench-secret-key",
        "RECORD_KEY": BENCH_KEYS.current,
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1",
        "WTF_CSRF_ENABLED": False,
        "RATELIMIT_STORAGE_URI": "memory://",
        "MAIL_BACKEND": "file",
        "MAIL_OUTBOX_DIR": str(workdir / "outbox"),
        "PUBLIC_BASE_URL": "https://portal.example.com",
    }
    started = time.perf_counter()
    app = create_app(settings)
    app.add_url_rule("/__bench/bare", "bench_bare", lambda: "ok")
    migrate.upgrade(app)
    print(f"  migrated in {time.perf_counter() - started:.1f} s", flush=True)
    rng = random.Random(args.seed)
    staff = create_people(app)
    seeder = seeding_engine(database_url, backend)
    try:
        result = seed(seeder, backend, accounts, args.items, staff, args.seed, args.workers)
    finally:
        seeder.dispose()
    print(
        f"  seeded {result.accounts:,} accounts, {result.items:,} promise items, "
        f"{result.entries:,} record entries ({result.rows:,} rows) in {result.seconds:.1f} s "
        f"= {result.rows / result.seconds:,.0f} rows/s; "
        f"{'ANALYZE' if backend == 'sqlite' else 'VACUUM ANALYZE'} {result.analyze_seconds:.1f} s"
    )
    print(
        f"  open differences: {result.open_differences:,} "
        f"(gate_access: {result.gate_access_open:,} changed/disputed)"
    )
    checked = verify_samples(app, accounts, rng)
    print(
        f"  verify_chain accepts accounts {', '.join(map(str, checked))} "
        "(hash chain and latest-entry pointers)",
        flush=True,
    )
    if backend == "sqlite":
        size_mb = sum(p.stat().st_size for p in workdir.glob("*.sqlite3*")) / 1e6
        print(f"  database file: {size_mb:,.0f} MB")

    engine = app.extensions["portal.engine"]
    log = StatementLog()
    log.attach(engine)
    client = signed_in_client(app)
    pages_total = max(1, math.ceil(result.open_differences / 25))
    middle = max(1, pages_total // 2)
    # Keyset pages have no number: walk "Next" to the middle once, as a reader would.
    started = time.perf_counter()
    differences_middle = walk_next(client, "/staff/differences", middle - 1)
    account_pages = max(1, math.ceil(accounts / 50))
    accounts_middle = walk_next(client, "/staff/accounts", account_pages // 2 - 1)
    print(
        f"  walked to the middle pages ({middle - 1 + account_pages // 2 - 1} pages) in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    pick = random.Random(args.seed + 1)
    found = random.Random(args.seed + 3)
    pages: list[tuple[str, Callable[[], str]]] = [
        ("bare route", lambda: "/__bench/bare"),
        ("dashboard", lambda: "/staff/"),
        ("differences", lambda: "/staff/differences"),
        (f"differences page {middle}/{pages_total}", lambda: differences_middle),
        ("differences gate_access open", lambda: "/staff/differences?kind=gate_access&status=open"),
        ("account page (random)", lambda: f"/staff/accounts/{pick.randint(1, accounts)}"),
        ("accounts list", lambda: "/staff/accounts"),
        (f"accounts list page {account_pages // 2}/{account_pages}", lambda: accounts_middle),
        ("accounts first visit, signed", lambda: "/staff/accounts?sort=first_visit&status=signed"),
        # A customer's number as typed (their name is "Customer 012345"), and a phone number
        # typed with dashes (the seeded phones repeat every 10,000 accounts).
        ("accounts search: number", lambda: f"/staff/accounts?q={found.randint(1, accounts):06d}"),
        (
            "accounts search: phone",
            lambda: f"/staff/accounts?q=480-555-{found.randint(1, accounts) % 10000:04d}",
        ),
    ]
    load_before = os.getloadavg()[0]
    figures = measure(client, log, pages, args.requests, args.page_seconds)
    print(
        f"  machine load average while timing: {load_before:.1f} -> {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs (compare sizes measured under similar load)"
    )
    bare = figures[0].median_ms
    for page in figures:
        page.ratio = page.median_ms / bare
        queries = (
            f"{page.queries[0]}"
            if page.queries[0] == page.queries[1]
            else f"{page.queries[0]}-{page.queries[1]}"
        )
        print(
            f"  {page.page:32} median {page.median_ms:8.2f} ms  p95 {page.p95_ms:8.2f} ms  "
            f"x{page.ratio:7.1f} bare  {queries:>5} queries  {page.kib:6.1f} KiB  n={page.n}",
            flush=True,
        )

    plans = []
    plan_pick = random.Random(args.seed + 2)
    for name, path in pages[1:]:
        url = path() if "account page" not in name else f"/staff/accounts/{plan_pick.randint(1, accounts)}"
        plans.append((f"{name}: {url}", explain(engine, backend, log, client, url)))
    app.extensions["portal.engine"].dispose()
    return SizeFigures(label, accounts, result.entries, result, figures, plans)


def print_plans(size: SizeFigures, verbose: bool) -> None:
    print(
        f"\n--- Query plans: {size.backend}, {size.accounts:,} accounts "
        f"({'EXPLAIN QUERY PLAN' if size.backend == 'SQLite' else 'EXPLAIN'}) ---"
    )
    for page, lines in size.plans:
        print(f"\n  {page}  ({len(lines)} SELECTs, {sum(line.ms for line in lines):.1f} ms in the database)")
        for line in lines:
            marker = "  <-- " + "; ".join(line.flags) if line.flags else ""
            print(f"    [{line.ms:7.2f} ms] {line.sql}{marker}")
            print(f"               access: {', '.join(line.access) or 'no table'}")
            if verbose or line.flags or line.ms > 5:
                for plan_line in line.plan:
                    print(f"                 | {plan_line}")


def print_summary(sizes: list[SizeFigures]) -> None:
    if not sizes:
        return
    backend = sizes[0].backend
    print(f"\n===== {backend}: summary =====")
    print(
        f"{'backend':11} {'accounts':>9} {'entries':>10}  {'page':32} {'median ms':>10} "
        f"{'p95 ms':>9} {'x bare':>8} {'queries/req':>12} {'n':>4}"
    )
    for size in sizes:
        for page in size.pages:
            queries = (
                f"{page.queries[0]}"
                if page.queries[0] == page.queries[1]
                else f"{page.queries[0]}-{page.queries[1]}"
            )
            print(
                f"{size.backend:11} {size.accounts:>9,} {size.entries:>10,}  {page.page:32} "
                f"{page.median_ms:>10.2f} {page.p95_ms:>9.2f} {page.ratio:>8.1f} {queries:>12} "
                f"{page.n:>4}"
            )
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        print(f"\nGrowth of the median from {small.accounts:,} to {large.accounts:,} accounts ({backend}):")
        for before, after in zip(small.pages, large.pages, strict=True):
            same = (
                "same"
                if before.queries == after.queries
                else f"DIFFERENT ({before.queries} -> {after.queries})"
            )
            name = re.sub(r" \d+/\d+", " (middle)", after.page)
            print(
                f"  {name:32} x{after.median_ms / before.median_ms:6.2f}  "
                f"(ratio to bare x{before.ratio:.1f} -> x{after.ratio:.1f}; queries {same})"
            )
    flagged = [
        (size.accounts, page, line)
        for size in sizes
        for page, lines in size.plans
        for line in lines
        if line.flags
    ]
    print(f"\nScans of {', '.join(WATCHED_TABLES)} ({backend}):" + ("" if flagged else " none"))
    for accounts, page, line in flagged:
        print(
            f"  {accounts:>7,} accounts  {page.split(':')[0]:30} [{line.ms:7.2f} ms] "
            f"{'; '.join(line.flags)}  -- {line.sql}"
        )


# --------------------------------------------------------------------------------------------


def fresh_postgres(url: str) -> str:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
        print(
            f"  PostgreSQL {conn.execute(text('SHOW server_version')).scalar()}: "
            "public schema dropped and recreated"
        )
    engine.dispose()
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="1000,100000", help="comma-separated numbers of accounts (default 1000,100000)"
    )
    parser.add_argument("--requests", type=int, default=50, help="timed requests per page")
    parser.add_argument(
        "--page-seconds",
        type=float,
        default=30.0,
        help=f"stop timing a page after this long (at least {MIN_REQUESTS} requests)",
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="also run on this PostgreSQL database (its public schema is dropped)",
    )
    parser.add_argument("--no-sqlite", action="store_true", help="only PostgreSQL")
    parser.add_argument(
        "--items",
        type=int,
        default=8,
        choices=range(2, 9),
        metavar="2..8",
        help="promise items per account (default 8, one of each kind)",
    )
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="processes generating and hashing rows while the main one inserts",
    )
    parser.add_argument("--keep", action="store_true", help="keep the SQLite files (path printed)")
    parser.add_argument("--plans", action="store_true", help="print every query plan in full")
    args = parser.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    backends = ([] if args.no_sqlite else ["sqlite"]) + (["postgresql"] if args.postgres else [])
    if not backends:
        parser.error("nothing to run: --no-sqlite needs --postgres")

    print(
        f"Python {sys.version.split()[0]}, Flask {version('flask')}, SQLAlchemy "
        f"{version('sqlalchemy')}, SQLite {sqlite3.sqlite_version}; {os.cpu_count()} CPUs; "
        f"sizes {', '.join(f'{s:,}' for s in sizes)}; {args.requests} requests a page; "
        f"{args.items} items an account; {args.workers} seeding workers"
    )
    results: dict[str, list[SizeFigures]] = {}
    overall = time.perf_counter()
    for backend in backends:
        backend_started = time.perf_counter()
        for accounts in sizes:
            tmp = tempfile.mkdtemp(prefix="bench-staff-")
            workdir = Path(tmp)
            if backend == "sqlite":
                url = f"sqlite:///{workdir / f'scale_{accounts}.sqlite3'}"
            else:
                url = fresh_postgres(args.postgres)
            try:
                results.setdefault(backend, []).append(run_size(backend, url, accounts, args, workdir))
            finally:
                if backend == "sqlite" and args.keep:
                    print(f"  kept {url}")
                else:
                    shutil.rmtree(workdir)
        print(f"\n{backend}: all sizes in {time.perf_counter() - backend_started:.0f} s")
    for sizes_done in results.values():
        for size in sizes_done:
            print_plans(size, args.plans)
    for sizes_done in results.values():
        print_summary(sizes_done)
    print(f"\nTotal run time {time.perf_counter() - overall:.0f} s")


if __name__ == "__main__":
    main()
