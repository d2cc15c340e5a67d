"""CSV import: the command, every row and file error (nothing imported), the bulk path."""

from __future__ import annotations

import csv
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from portal import imports, links, record
from portal.models import Account, Customer, OutboxEmail, PromiseItem, RecordEntry
from portal.salespeople import parse_incoming
from tests.conftest import count_rows

ROOT = Path(__file__).resolve().parent.parent
TABLES = (Customer, Account, PromiseItem, RecordEntry, OutboxEmail)
SALES_EMAIL = "sam@example.com"
HEADER = [
    "customer_name",
    "customer_email",
    "customer_phone",
    "service_address",
    "plan",
    "price",
    "first_visit",
    "salesperson_email",
    "visit_day",
    "gate_access",
    "billing",
    "custom",
]


def row(n: int = 0, **changes: str) -> dict[str, str]:
    values = {
        "customer_name": f"Customer {n}",
        "customer_email": f"customer{n}@example.com",
        "customer_phone": "+1 480 555 0134",
        "service_address": f"{100 + n} W Palm Ln, Phoenix, AZ",
        "plan": "Weekly full service",
        "price": "165.00",
        "first_visit": (date.today() + timedelta(days=10)).isoformat(),
        "salesperson_email": SALES_EMAIL,
        "visit_day": "Friday",
        "gate_access": "Side gate, code 4412",
        "billing": "Card autopay",
        "custom": "Skim the spa | Text before arriving",
    }
    values.update(changes)
    return values


def write_csv(path: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> Path:
    header = header or HEADER
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for values in rows:
            writer.writerow([values.get(column, "") for column in header])
    return path


def counts(db: Session) -> dict[str, int]:
    return {model.__tablename__: count_rows(db, model) for model in TABLES}


NOTHING = {model.__tablename__: 0 for model in TABLES}


@pytest.fixture
def sales(make_staff):  # type: ignore[no-untyped-def]
    return make_staff("sales", email=SALES_EMAIL, name="Sam Sales")


def run_import(runner, path: Path, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(args=["import-handoffs", str(path), *args])


# ---------------------------------------------------------------- the happy path


def test_a_file_is_imported_with_records_and_welcome_emails(runner, db, sales, tmp_path):
    path = write_csv(tmp_path / "handoffs.csv", [row(1), row(2, price="89.50"), row(3)])

    result = run_import(runner, path)

    assert result.exit_code == 0, result.output
    assert "Imported 3 handoffs; 3 welcome emails queued." in result.stdout
    accounts = db.scalars(select(Account).order_by(Account.id)).all()
    assert [a.customer.email for a in accounts] == [f"customer{n}@example.com" for n in (1, 2, 3)]
    assert [a.price_cents for a in accounts] == [16500, 8950, 16500]
    assert {a.salesperson_id for a in accounts} == {sales.id}
    assert {a.status for a in accounts} == {"link_sent"}
    first = accounts[0]
    assert sorted((i.kind, i.promised_value) for i in first.items) == sorted(
        [
            ("visit_day", "Friday"),
            ("gate_access", "Side gate, code 4412"),
            ("billing", "Card autopay"),
            ("custom", "Skim the spa"),
            ("custom", "Text before arriving"),
            ("price", "Weekly full service, $165.00 per month"),
            ("start_date", (date.today() + timedelta(days=10)).isoformat()),
        ]
    )
    for account in accounts:
        entries = record.entries_for(db, account.id)
        assert [e.event for e in entries] == ["promised"] * len(account.items) + ["link_sent"]
        assert entries[-1].actor == "import:handoffs.csv"
        assert record.verify_chain(db, account.id) is None
    emails = db.scalars(select(OutboxEmail).order_by(OutboxEmail.id)).all()
    assert [e.account_id for e in emails] == [a.id for a in accounts]
    token = re.search(r"/welcome/t/(\S+)", emails[0].text_body).group(1)
    assert links.check_token(db, token).account.id == first.id


def test_no_send_imports_drafts_without_emails(runner, db, sales, tmp_path):
    path = write_csv(tmp_path / "handoffs.csv", [row(1), row(2)])
    result = run_import(runner, path, "--no-send")
    assert result.exit_code == 0, result.output
    assert "Imported 2 handoffs; 0 welcome emails queued." in result.stdout
    assert {a.status for a in db.scalars(select(Account))} == {"draft"}
    assert count_rows(db, OutboxEmail) == 0
    assert {e.event for e in db.scalars(select(RecordEntry))} == {"promised"}


def test_the_example_file_imports_cleanly(db, sales):
    content = (ROOT / "examples" / "handoffs.csv").read_bytes()
    # Its dates are fixed (January 2027); check it as of a day they are all ahead of.
    rows = imports.parse_file(db, content, today=date(2026, 12, 1))
    result = imports.import_rows(db, rows, send=True, actor="import:example")
    db.commit()
    assert result.handoffs == 3 and result.emails == 3
    accounts = db.scalars(select(Account).order_by(Account.id)).all()
    assert [a.customer.name for a in accounts] == ["Avery Quinn", "Marcus Lee", "Priya Natarajan"]
    assert accounts[2].salesperson_id is None
    safety = next(i for i in accounts[2].items if i.kind == "safety")
    assert '"Max"' in safety.promised_value and "—" in safety.promised_value
    visit_days = next(i for i in accounts[1].items if i.kind == "visit_day")
    assert visit_days.promised_value == "Monday, Thursday"
    assert all(record.verify_chain(db, a.id) is None for a in accounts)


def test_large_files_show_progress_on_stderr(runner, db, sales, tmp_path):
    path = write_csv(tmp_path / "big.csv", [row(n) for n in range(imports.SHOW_PROGRESS_ABOVE + 1)])
    result = run_import(runner, path, "--no-send")
    assert result.exit_code == 0, result.output
    assert "Checking rows" in result.stderr and "Importing" in result.stderr
    assert count_rows(db, Account) == imports.SHOW_PROGRESS_ABOVE + 1

    small = run_import(runner, write_csv(tmp_path / "small.csv", [row(9999)]), "--no-send")
    assert small.exit_code == 0 and small.stderr == ""


# ---------------------------------------------------------------- errors in rows


def test_errors_in_several_rows_are_all_listed_and_nothing_is_imported(runner, db, sales, tmp_path):
    path = write_csv(
        tmp_path / "handoffs.csv",
        [
            row(1),
            row(2, customer_email="dana@"),
            row(3, salesperson_email="ghost@example.com", visit_day="Someday"),
            row(4),
            row(5, price="-5"),
            row(6, first_visit=(date.today() - timedelta(days=1)).isoformat()),
            row(7, customer_name="", custom="ok | "),
            row(8, price="12.345"),
        ],
    )

    result = run_import(runner, path)

    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    for expected in (
        "row 3, customer_email:",
        "row 4, salesperson_email:",
        "row 4, visit_day:",
        "row 6, price:",
        "row 7, first_visit:",
        "row 8, customer_name:",
        "row 9, price:",
    ):
        assert any(line.startswith(expected) for line in lines), (expected, result.stderr)
    assert not any(line.startswith(("row 2,", "row 5,")) for line in lines)
    assert "7 error(s) in handoffs.csv; nothing was imported." in result.stderr
    assert counts(db) == NOTHING


def test_price_cents_column_and_its_errors(runner, db, sales, tmp_path):
    header = [c if c != "price" else "price_cents" for c in HEADER]
    path = write_csv(tmp_path / "cents.csv", [row(1, price_cents="16500"), row(2, price_cents="1.5")], header)
    result = run_import(runner, path)
    assert result.exit_code == 1
    assert "row 3, price_cents: Give the price as a whole number of cents" in result.stderr
    assert counts(db) == NOTHING

    both = write_csv(tmp_path / "both.csv", [row(1, price_cents="16500")], HEADER + ["price_cents"])
    result = run_import(runner, both)
    assert "row 2, price: Fill in price or price_cents, not both." in result.stderr
    assert counts(db) == NOTHING


def test_a_row_with_a_multiline_value_is_one_row(runner, db, sales, tmp_path):
    path = write_csv(
        tmp_path / "handoffs.csv", [row(1, gate_access="Side gate\ncode 4412"), row(2, customer_email="bad")]
    )
    result = run_import(runner, path)
    # Row 2 starts on line 2 and ends on line 3; the next row starts on line 4.
    assert "row 4, customer_email:" in result.stderr
    assert counts(db) == NOTHING


def test_the_same_customer_and_address_twice_in_a_file(runner, db, sales, tmp_path):
    duplicate = row(
        1, service_address=" 101  w palm ln, phoenix, az ", customer_email="CUSTOMER1@example.com"
    )
    path = write_csv(tmp_path / "handoffs.csv", [row(1), row(2), duplicate])
    result = run_import(runner, path)
    assert result.exit_code == 1
    assert "row 4, customer_email: Same customer and service address as row 2." in result.stderr
    assert counts(db) == NOTHING


def test_running_the_same_file_twice_imports_nothing_twice(runner, db, sales, tmp_path):
    path = write_csv(tmp_path / "handoffs.csv", [row(1), row(2)])
    assert run_import(runner, path).exit_code == 0
    after_first = counts(db)

    again = run_import(runner, path)

    assert again.exit_code == 1
    assert "row 2, customer_email: This customer already has an account" in again.stderr
    assert "row 3, customer_email:" in again.stderr
    assert counts(db) == after_first


def test_one_customer_with_two_pools_gets_two_accounts_each_owning_its_contact(runner, db, sales, tmp_path):
    path = write_csv(tmp_path / "handoffs.csv", [row(1), row(1, service_address="9 Lake Dr")])
    assert run_import(runner, path).exit_code == 0
    assert count_rows(db, Customer) == 2 and count_rows(db, Account) == 2
    first, second = db.scalars(select(Account).order_by(Account.id)).all()
    assert (first.customer.email, first.customer.name) == (second.customer.email, second.customer.name)


# ---------------------------------------------------------------- errors in the file


def _csv_text(rows: list[list[str]]) -> bytes:
    return "".join(",".join(r) + "\r\n" for r in rows).encode()


VALID = [row(1)[c] if "," not in row(1)[c] else f'"{row(1)[c]}"' for c in HEADER]


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "file, file: The file is empty"),
        (b"  \r\n\r\n", "file, file: The file is empty"),
        (_csv_text([HEADER]), "file, file: The file has a header but no handoffs."),
        (_csv_text([HEADER + ["colour"], VALID + ["blue"]]), "row 1, colour: Unknown column."),
        (
            _csv_text([[c for c in HEADER if c != "plan"], VALID[:4] + VALID[5:]]),
            "row 1, plan: This required column is missing.",
        ),
        (
            _csv_text([[c for c in HEADER if c != "price"], VALID[:5] + VALID[6:]]),
            "row 1, price: Add a price column",
        ),
        (
            _csv_text([HEADER + ["plan"], VALID + ["Weekly"]]),
            "row 1, plan: This column appears more than once.",
        ),
        (
            _csv_text([HEADER, VALID]).replace(b"Customer 1", "Zoë".encode("latin-1")),
            "row 2, encoding: This line is not UTF-8",
        ),
        (_csv_text([HEADER, VALID + ["extra"]]), "row 2, columns: 13 values, but the header has 12"),
        (_csv_text([HEADER, VALID[:5]]), "row 2, columns: 5 values, but the header has 12"),
        (
            _csv_text([HEADER, VALID, ['"unclosed', *VALID[1:]]]).replace(b'"unclosed,', b'"unclosed"x,'),
            "row 3, file: The CSV cannot be read here",
        ),
    ],
)
def test_file_level_errors_import_nothing(runner, db, sales, tmp_path, content, expected):
    path = tmp_path / "handoffs.csv"
    path.write_bytes(content)
    result = run_import(runner, path)
    assert result.exit_code == 1
    assert expected in result.stderr
    assert "nothing was imported" in result.stderr
    assert counts(db) == NOTHING


def test_a_byte_order_mark_and_trailing_empty_cells_are_fine(runner, db, sales, tmp_path):
    content = b"\xef\xbb\xbf" + _csv_text([[c.upper() for c in HEADER], VALID + ["", ""]])
    path = tmp_path / "excel.csv"
    path.write_bytes(content)
    result = run_import(runner, path)
    assert result.exit_code == 0, result.output
    assert count_rows(db, Account) == 1


def test_a_database_failure_midway_rolls_back_every_batch(runner, db, sales, tmp_path, monkeypatch):
    monkeypatch.setattr(imports, "BATCH_SIZE", 2)
    real_write = imports.write_batch
    calls: list[int] = []

    def fail_on_third_batch(*args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 3:
            raise OperationalError("INSERT", {}, Exception("disk I/O error"))
        return real_write(*args, **kwargs)

    monkeypatch.setattr(imports, "write_batch", fail_on_third_batch)
    path = write_csv(tmp_path / "handoffs.csv", [row(n) for n in range(6)])

    result = run_import(runner, path)

    assert len(calls) == 3  # two batches were written before the failure
    assert result.exit_code == 1
    assert "rolled back; nothing was imported" in result.stderr
    assert counts(db) == NOTHING


# ---------------------------------------------------------------- the bulk path


def _snapshot(db: Session) -> list[dict[str, Any]]:
    """Everything a handoff wrote, without ids and times, in account order. (Not the
    optimistic-lock version: one path inserts the account whole, the other updates it.)"""
    db.flush()
    accounts = db.scalars(select(Account).order_by(Account.id)).all()
    snapshot = []
    for account in accounts:
        items = db.scalars(
            select(PromiseItem).where(PromiseItem.account_id == account.id).order_by(PromiseItem.position)
        ).all()
        position = {item.id: item.position for item in items}
        emails = db.scalars(select(OutboxEmail).where(OutboxEmail.account_id == account.id)).all()
        email_ids = {email.id: n for n, email in enumerate(emails)}
        entries = record.entries_for(db, account.id)
        seq_of = {entry.id: entry.seq for entry in entries}
        assert record.verify_chain(db, account.id) is None
        url = re.search(r"https?://\S+/welcome/t/(\S+)", emails[0].text_body) if emails else None
        if url:
            assert links.check_token(db, url.group(1)).account.id == account.id
        snapshot.append(
            {
                "account": {
                    name: getattr(account, name)
                    for name in (
                        "service_address",
                        "plan",
                        "price_cents",
                        "first_visit",
                        "salesperson_id",
                        "status",
                        "why_chose_us",
                        "concerns",
                        "contact_preference",
                    )
                },
                "link": (account.link_nonce_hash is not None, account.link_sent_at is not None),
                "customer": (
                    account.customer.name,
                    account.customer.email,
                    account.customer.phone,
                    account.customer_id == accounts[0].customer_id,
                ),
                "items": [
                    (
                        i.kind,
                        i.label,
                        i.promised_value,
                        i.promised_by_id,
                        i.position,
                        i.current_outcome,
                        seq_of.get(i.latest_entry_id),
                    )
                    for i in items
                ],
                "entries": [
                    (
                        e.seq,
                        e.event,
                        position.get(e.item_id),
                        e.promised_value,
                        e.confirmed_value,
                        e.outcome,
                        e.actor,
                        e.note,
                        e.request_id,
                        {**e.details, "email_id": email_ids.get(e.details.get("email_id"))},
                    )
                    for e in entries
                ],
                "states": [
                    (s.item.kind, s.outcome, s.current_value) for s in record.item_states(db, account)
                ],
                "emails": [
                    (
                        e.kind,
                        e.to_address,
                        e.subject,
                        e.status,
                        re.sub(r"/welcome/t/\S+", "/welcome/t/TOKEN", e.text_body),
                        re.sub(r"/welcome/t/[^\"\s]+", "/welcome/t/TOKEN", e.html_body),
                    )
                    for e in emails
                ],
            }
        )
    return snapshot


def _incoming(db: Session, sales) -> list[Any]:  # type: ignore[no-untyped-def]
    today = date.today()
    bodies = [
        {
            "customer": {"name": "Dana Reyes", "email": "dana@example.com", "phone": "+1 480 555 0134"},
            "service_address": "1820 W Palm Ln",
            "plan": "Weekly",
            "price_cents": 16500,
            "first_visit": (today + timedelta(days=5)).isoformat(),
            "salesperson_email": SALES_EMAIL,
            "promises": [
                {"kind": "visit_day", "value": "fri"},
                {"kind": "custom", "value": "Spa", "label": "Spa care"},
            ],
            "why_chose_us": "Reviews",
            "concerns": "Skipped weeks",
            "contact_preference": "Text",
        },
        # The same customer again, at a second address: two accounts, each with its own contact.
        {
            "customer": {"name": "Dana Reyes", "email": "dana@example.com", "phone": ""},
            "service_address": "9 Lake Dr",
            "plan": "Bi-weekly",
            "price_cents": 8950,
            "first_visit": (today + timedelta(days=9)).isoformat(),
            "promises": [
                {"kind": "start_date", "value": "After the holidays"},
                {"kind": "price", "value": "First month free"},
            ],
        },
        {
            "customer": {"name": "Marcus Lee", "email": "marcus@example.com"},
            "service_address": "77 E Camelback Rd",
            "plan": "Weekly",
            "price_cents": 18900,
            "first_visit": (today + timedelta(days=30)).isoformat(),
            "salesperson_email": SALES_EMAIL,
            "promises": [],
        },
    ]
    salespeople = {SALES_EMAIL: sales}
    return [parse_incoming(body, salespeople.get) for body in bodies]


@pytest.mark.parametrize("send", [True, False])
def test_the_bulk_path_writes_what_the_one_by_one_path_writes(db, sales, monkeypatch, send):
    monkeypatch.setattr(imports, "BATCH_SIZE", 2)  # a customer seen again across batches too
    incoming = _incoming(db, sales)
    imports.import_rows(
        db, [imports.ParsedRow(n, h) for n, h in enumerate(incoming)], send=send, actor="import:test"
    )
    bulk = _snapshot(db)
    db.rollback()
    assert count_rows(db, Account) == 0

    for handoff in incoming:
        account = imports.create_handoff(db, handoff.data, handoff.salesperson)
        if send:
            imports.send_welcome(db, account, actor="import:test")
    one_by_one = _snapshot(db)

    assert len(bulk) == 3
    for bulk_account, reference in zip(bulk, one_by_one, strict=True):
        for key, value in bulk_account.items():
            assert value == reference[key], key  # names the part that drifted
    assert bulk == one_by_one
