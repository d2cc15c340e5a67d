"""Benchmark: a billing day (`flask bill`) for many accounts, against a plain ORM loop.

    .venv/bin/python bench/bill_scale.py [--sizes 1000,20000] [--no-sqlite]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

For each size and database: a fresh schema (a temp SQLite file; with --postgres, a database
bench_bill_<pid> created on that server and dropped afterwards), `portal.migrate.upgrade`, then
a bulk seed (Core executemany, no ORM per row): one customer, one signed monthly account first
visited on 2027-01-01 and two promises (visit day, billing) per account.

It then times, in the same run:

- `bill`: `plan_billing.bill(2027-01-01)`, the command's own code: per chunk of 1,000 accounts
  one transaction with a handful of statements (invoices with ON CONFLICT DO NOTHING, lines,
  emails, record entries through `record.append_many`, chain heads);
- `loop`: the reference, a plain ORM insert loop making the same rows for the next month's
  period, for the first `--loop-sample` accounts (2,000: it is slow): an Invoice added and
  flushed for its id, its line, its email through `mail.queue_email`, its entry through
  `record.append`, committing every 1,000 accounts.

It prints invoices per second for each and the ratio of the two rates, bill/loop (the figure
that travels between machines), checks both made one invoice per account, and verifies the hash
chain of a sample of accounts. It also runs `bill` again to time the idempotent re-run (every
period already invoiced).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, func, insert, select, text  # noqa: E402

from portal import create_app, migrate, record  # noqa: E402
from portal.db import get_db, table_of, unit_of_work  # noqa: E402
from portal.mail import queue_email  # noqa: E402
from portal.models import Account, Customer, Invoice, InvoiceLine, PromiseItem  # noqa: E402
from portal.payments import plan_billing  # noqa: E402
from portal.payments.invoices import issue_pay_link, pay_link_max_age  # noqa: E402

DAY = date(2027, 1, 1)
NEXT = (date(2027, 2, 1), date(2027, 2, 28))
SEED_CHUNK = 5000


def make_app(url: str, instance: Path) -> Any:
    os.environ["PORTAL_INSTANCE_PATH"] = str(instance)
    app = create_app(
        {
            "SECRET_KEY": "bench",
            "DATABASE_URL": url,
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1",
            "MAIL_BACKEND": "file",
            "PUBLIC_BASE_URL": "https://portal.example.com",
        }
    )
    migrate.upgrade(app)
    return app


def seed(app: Any, size: int) -> None:
    """Customers, signed accounts and their visit-day and billing promises, in chunks."""
    now = datetime.now(timezone.utc)
    with app.app_context():
        for first in range(0, size, SEED_CHUNK):
            numbers = range(first, min(size, first + SEED_CHUNK))
            with unit_of_work() as session:
                session.execute(
                    insert(table_of(Customer)),
                    [
                        {
                            "id": n + 1,
                            "name": f"Customer {n:06d}",
                            "email": f"c{n}@example.com",
                            "created_at": now,
                        }
                        for n in numbers
                    ],
                )
                session.execute(
                    insert(table_of(Account)),
                    [
                        {
                            "id": n + 1,
                            "customer_id": n + 1,
                            "service_address": f"{100 + n} W Palm Ln, Phoenix, AZ",
                            "plan": "Weekly full service",
                            "price_cents": 16500,
                            "billing_cadence": "monthly",
                            "first_visit": DAY,
                            "status": "signed",
                            "signed_at": now,
                            "version": 1,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for n in numbers
                    ],
                )
                session.execute(
                    insert(table_of(PromiseItem)),
                    [
                        {
                            "id": 2 * n + k + 1,
                            "account_id": n + 1,
                            "kind": kind,
                            "label": kind,
                            "promised_value": value,
                            "position": k,
                            "created_at": now,
                            "current_outcome": "promised",
                        }
                        for n in numbers
                        for k, (kind, value) in enumerate(
                            (("visit_day", "Friday"), ("billing", "Invoice by email"))
                        )
                    ],
                )


def time_bill(app: Any) -> tuple[float, plan_billing.BillReport]:
    with app.app_context():
        started = time.perf_counter()
        report = plan_billing.bill(DAY)
        return time.perf_counter() - started, report


def time_orm_loop(app: Any, size: int) -> float:
    """The reference: the same rows, one account at a time through the ORM, for the first
    `size` accounts."""
    with app.app_context():
        session = get_db()
        started = time.perf_counter()
        for first in range(0, size, 1000):
            with unit_of_work(session):
                accounts = session.scalars(
                    select(Account)
                    .where(Account.id > first, Account.id <= min(first + 1000, size))
                    .order_by(Account.id)
                ).unique()
                for account in accounts:
                    invoice = Invoice(
                        account_id=account.id,
                        number=f"pending-{account.id}",
                        status="open",
                        currency="USD",
                        total_cents=account.price_cents,
                        due_date=NEXT[0],
                        period_start=NEXT[0],
                        period_end=NEXT[1],
                    )
                    session.add(invoice)
                    session.flush()
                    invoice.number = f"INV-{invoice.id:06d}"
                    session.add(
                        InvoiceLine(
                            invoice_id=invoice.id, description=f"{account.plan}, February", amount_cents=16500
                        )
                    )
                    session.flush()
                    url = issue_pay_link(invoice)
                    email = queue_email(
                        session,
                        template="invoice",
                        to=account.customer.email,
                        account=account,
                        subject=f"Invoice {invoice.number}",
                        context={
                            "account": account,
                            "invoice": invoice,
                            "lines": invoice.lines,
                            "url": url,
                            "autopay_card": None,
                            "expires_days": pay_link_max_age().days,
                        },
                    )
                    session.flush()
                    record.append(
                        session,
                        account,
                        event="invoice_created",
                        actor="bench",
                        confirmed_value=invoice.number,
                        details={"invoice_id": invoice.id, "email_id": email.id},
                    )
            session.expunge_all()
        return time.perf_counter() - started


def check(app: Any, size: int, looped: int) -> None:
    with app.app_context():
        session = get_db()
        for start, expected in ((DAY, size), (NEXT[0], looped)):
            made = session.scalar(
                select(func.count()).select_from(Invoice).where(Invoice.period_start == start)
            )
            assert made == expected, (start, made, expected)
        for account_id in random.Random(7).sample(range(1, size + 1), min(size, 20)):
            assert record.verify_chain(session, account_id) is None, account_id


def databases(args: argparse.Namespace, size: int) -> Iterator[tuple[str, str]]:
    """Each database to measure on, fresh; a PostgreSQL one is dropped after its turn."""
    with tempfile.TemporaryDirectory() as folder:
        if not args.no_sqlite:
            yield "sqlite", f"sqlite:///{folder}/bill.sqlite3"
        if args.postgres:
            name = f"bench_bill_{os.getpid()}_{size}"
            admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                yield "postgresql", args.postgres.rsplit("/", 1)[0] + f"/{name}"
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,20000")
    parser.add_argument("--postgres", default="")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument(
        "--loop-sample",
        type=int,
        default=2000,
        help="Accounts the ORM loop makes invoices for (it is slow; its rate is per invoice).",
    )
    args = parser.parse_args()
    rows = []
    for size in (int(part) for part in args.sizes.split(",")):
        for backend, url in databases(args, size):
            with tempfile.TemporaryDirectory() as instance:
                app = make_app(url, Path(instance))
                started = time.perf_counter()
                seed(app, size)
                seeded = time.perf_counter() - started
                bill_s, report = time_bill(app)
                assert report.created == size, report
                again_s, again = time_bill(app)
                assert again.created == 0 and again.already == size, again
                looped = min(size, args.loop_sample)
                loop_s = time_orm_loop(app, looped)
                check(app, size, looped)
                app.extensions["portal.engine"].dispose()
            bill_rate, loop_rate = size / bill_s, looped / loop_s
            rows.append((backend, size, bill_s, bill_rate, loop_rate, bill_rate / loop_rate, again_s))
            print(
                f"{backend} {size}: seeded in {seeded:.1f} s; bill {bill_s:.1f} s "
                f"({bill_rate:.0f}/s), again {again_s:.1f} s; ORM loop {loop_s:.1f} s for "
                f"{looped} ({loop_rate:.0f}/s); bill is {bill_rate / loop_rate:.1f}x the loop",
                flush=True,
            )
    print("\n| database | accounts | bill s | bill invoices/s | ORM loop invoices/s | ratio | re-run s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for backend, size, bill_s, bill_rate, loop_rate, ratio, again_s in rows:
        print(
            f"| {backend} | {size:,} | {bill_s:.1f} | {bill_rate:.0f} | {loop_rate:.0f} | "
            f"{ratio:.1f}x | {again_s:.1f} |"
        )


if __name__ == "__main__":
    main()
