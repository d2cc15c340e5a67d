"""Benchmark: import 10,000 handoffs from CSV into a fresh database.

    .venv/bin/python bench/import_handoffs.py [--rows 10000] [--no-send]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Prints, per database: the time to check the file and to import it, rows per second, the
process's peak memory (ru_maxrss) and, in a second run under tracemalloc, the peak of Python
allocations. As a yardstick that travels between machines it also times reading the same file
with the csv module alone; the ratio import/csv says more than seconds do.

With --postgres, a database named bench_handoffs_<pid> is created on that server and dropped
afterwards (the URL's own database is only used to issue CREATE/DROP DATABASE).
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, func, select, text  # noqa: E402

from portal import create_app, migrate  # noqa: E402
from portal.auth import create_staff  # noqa: E402
from portal.db import get_db, unit_of_work  # noqa: E402
from portal.imports import COLUMNS, check_records, import_rows, read_csv  # noqa: E402
from portal.models import Account, OutboxEmail, RecordEntry  # noqa: E402

SALES = ["sam@example.com", "sky@example.com", "sasha@example.com"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Mon and Thu"]
PLANS = [
    ("Weekly full service", "165.00"),
    ("Bi-weekly chemicals only", "89.50"),
    ("Weekly full service + filter", "189.00"),
]


@dataclass
class Figures:
    check_s: float
    import_s: float
    rows: int
    emails: int
    records: int
    rss_before_mb: float
    rss_peak_mb: float
    traced_peak_mb: float

    @property
    def total_s(self) -> float:
        return self.check_s + self.import_s


def write_csv(path: Path, rows: int, seed: int = 7) -> None:
    """Realistic rows: every column used, several promises, quoting where values need it."""
    rng = random.Random(seed)
    today = date.today()
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for n in range(rows):
            plan, price = rng.choice(PLANS)
            values = {
                "customer_name": f"Customer {n:05d}",
                "customer_email": f"customer{n:05d}@example.com",
                "customer_phone": f"+1 480 555 {n % 10000:04d}",
                "service_address": f"{100 + n} W Palm Ln, Phoenix, AZ 85007",
                "plan": plan,
                "price": price,
                "first_visit": (today + timedelta(days=1 + n % 300)).isoformat(),
                "salesperson_email": rng.choice(SALES),
                "visit_day": rng.choice(DAYS),
                "gate_access": f"Side gate, code {rng.randint(1000, 9999)}",
                "safety": "Dog in the yard, keep the gate latched" if n % 3 == 0 else "",
                "equipment": "Salt cell check before summer" if n % 2 == 0 else "",
                "billing": "Card autopay",
                "custom": "Skim leaves, please | Text before arriving" if n % 4 == 0 else "",
                "why_chose_us": "Neighbour recommended us, liked the reviews",
                "concerns": "Previous company skipped visits",
                "contact_preference": "Text, evenings",
            }
            writer.writerow([values.get(column, "") for column in COLUMNS])


def csv_only_seconds(path: Path) -> float:
    """The yardstick: read and split the same file with the csv module, nothing else."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        with path.open(newline="", encoding="utf-8") as handle:
            for _row in csv.DictReader(handle):
                pass
        best = min(best, time.perf_counter() - started)
    return best


def rss_mb() -> float:
    """This process's peak resident memory so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def run_import(database_url: str, csv_path: Path, send: bool, instance: Path, trace: bool = False) -> Figures:
    """Migrate a fresh database, add the salespeople, then time checking and importing."""
    os.environ["PORTAL_INSTANCE_PATH"] = str(instance)
    app = create_app(
        {
            "SECRET_KEY": "bench",
            "DATABASE_URL": database_url,
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1",
            "MAIL_BACKEND": "file",
            "PUBLIC_BASE_URL": "https://portal.example.com",
        }
    )
    migrate.upgrade(app)
    try:
        with app.app_context():
            session = get_db()
            for email in SALES:
                create_staff(session, email, "bench-password", "sales", email.split("@")[0].title())
            session.commit()
        with app.app_context(), unit_of_work() as session:  # as the command does
            rss_before = rss_mb()
            if trace:
                tracemalloc.start()
            started = time.perf_counter()
            header, records = read_csv(csv_path.read_bytes())
            rows = check_records(session, header, records)
            checked = time.perf_counter()
            result = import_rows(session, rows, send=send, actor="import:bench")
            finished = time.perf_counter()
            traced = tracemalloc.get_traced_memory()[1] / (1024 * 1024) if trace else 0.0
            tracemalloc.stop()
            records_written = session.scalar(select(func.count()).select_from(RecordEntry)) or 0
            assert session.scalar(select(func.count()).select_from(Account)) == len(rows)
            assert session.scalar(select(func.count()).select_from(OutboxEmail)) == result.emails
        return Figures(
            checked - started,
            finished - checked,
            result.handoffs,
            result.emails,
            records_written,
            rss_before,
            rss_mb(),
            traced,
        )
    finally:
        app.extensions["portal.engine"].dispose()


def in_child(*args: Any) -> Figures:
    """Each run in a fresh process, so ru_maxrss is that run's own peak."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork")) as pool:
        return pool.submit(run_import, *args).result()


@contextmanager
def fresh_sqlite(workdir: Path, name: str) -> Iterator[str]:
    yield f"sqlite:///{workdir / f'{name}.sqlite3'}"


@contextmanager
def fresh_postgres(server_url: str, name: str) -> Iterator[str]:
    database = f"bench_handoffs_{os.getpid()}_{name}"
    admin = create_engine(
        server_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{database}"'))
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    try:
        yield server_url.rsplit("/", 1)[0] + "/" + database
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def report(label: str, figures: Figures, traced_mb: float, csv_s: float) -> None:
    print(f"\n== {label} ==")
    print(
        f"  handoffs imported   {figures.rows:,} ({figures.emails:,} welcome emails, "
        f"{figures.records:,} record entries)"
    )
    print(f"  check the file      {figures.check_s:7.2f} s")
    print(f"  import + commit     {figures.import_s:7.2f} s")
    print(f"  total               {figures.total_s:7.2f} s  = {figures.rows / figures.total_s:,.0f} rows/s")
    print(
        f"  peak memory         {figures.rss_peak_mb:7.1f} MB process RSS (ru_maxrss; "
        f"{figures.rss_before_mb:.1f} MB before the import), "
        f"{traced_mb:.1f} MB peak of Python allocations during it (tracemalloc)"
    )
    print(
        f"  vs csv module only  {figures.total_s / csv_s:7.0f} x  "
        f"(csv.DictReader alone: {csv_s * 1000:.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--no-send", action="store_true", help="import without welcome emails")
    parser.add_argument("--postgres", metavar="URL", help="also run on this PostgreSQL server")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        workdir = Path(tmp)
        csv_path = workdir / "handoffs.csv"
        write_csv(csv_path, args.rows)
        csv_s = csv_only_seconds(csv_path)
        print(
            f"{args.rows:,} rows, {csv_path.stat().st_size / 1024:,.0f} KiB of CSV; "
            f"welcome emails {'off' if args.no_send else 'on'}; Python {sys.version.split()[0]}"
        )
        targets: list[tuple[str, Callable[[str], AbstractContextManager[str]]]] = [
            ("SQLite", lambda name: fresh_sqlite(workdir, name))
        ]
        if args.postgres:
            targets.append(("PostgreSQL", lambda name: fresh_postgres(args.postgres, name)))
        for label, fresh in targets:
            with fresh("timed") as url:
                figures = in_child(url, csv_path, not args.no_send, workdir / "instance")
            # A second run under tracemalloc, which slows Python down too much to time it.
            with fresh("traced") as url:
                traced = in_child(url, csv_path, not args.no_send, workdir / "instance", True)
            report(label, figures, traced.traced_peak_mb, csv_s)


if __name__ == "__main__":
    main()
