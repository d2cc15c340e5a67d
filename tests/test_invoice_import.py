"""`import-invoices`: one row per line, rows of one account and external_id are one invoice,
created as the API creates it; all or nothing with errors by line and column; a re-run creates
nothing new."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import record
from portal.models import Invoice, InvoiceLine, OutboxEmail, RecordEntry
from tests.conftest import count_rows

ROOT = Path(__file__).resolve().parent.parent
TABLES = (Invoice, InvoiceLine, OutboxEmail, RecordEntry)
DUE = (date.today() + timedelta(days=14)).isoformat()
HEADER = ["account_id", "customer_email", "external_id", "due_date", "description", "amount", "quantity"]


def counts(db: Session) -> dict[str, int]:
    return {model.__tablename__: count_rows(db, model) for model in TABLES}


def write_csv(path: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> Path:
    header = header or HEADER
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        for values in rows:
            writer.writerow({name: values.get(name, "") for name in header})
    return path


@pytest.fixture
def accounts(make_account):  # type: ignore[no-untyped-def]
    one = make_account()
    two = make_account(service_address="9 Elm St, Phoenix, AZ", customer_email="lee@example.com")
    return one, two


def sample_rows(one_id: int) -> list[dict[str, str]]:
    return [
        {
            "account_id": str(one_id),
            "external_id": "QB-1",
            "due_date": DUE,
            "description": "Weekly service",
            "amount": "165.00",
        },
        {
            "account_id": str(one_id),
            "external_id": "QB-1",
            "due_date": DUE,
            "description": "Chlorine tablets",
            "amount": "12.00",
            "quantity": "3",
        },
        {
            "customer_email": "LEE@example.com",
            "external_id": "QB-2",
            "due_date": DUE,
            "description": "Filter clean",
            "amount": "$85",
        },
    ]


def test_a_file_makes_one_invoice_per_account_and_external_id_each_recorded_and_emailed(
    runner, db, accounts, tmp_path
):
    one, two = accounts
    path = write_csv(tmp_path / "invoices.csv", sample_rows(one.id))

    result = runner.invoke(args=["import-invoices", str(path)])

    assert result.exit_code == 0, result.output
    assert "Imported 2 invoices; 2 invoice emails queued; 0 imported before" in result.output
    invoices = {i.account_id: i for i in db.scalars(select(Invoice))}
    assert set(invoices) == {one.id, two.id}
    first = invoices[one.id]
    assert (first.external_id, first.total_cents, first.due_date.isoformat()) == ("QB-1", 20100, DUE)
    assert [(line.description, line.amount_cents) for line in first.lines] == [
        ("Weekly service", 16500),
        ("Chlorine tablets (3 × $12.00)", 3600),
    ]
    assert (invoices[two.id].external_id, invoices[two.id].total_cents) == ("QB-2", 8500)
    for account, invoice in ((one, first), (two, invoices[two.id])):
        [entry] = [e for e in record.entries_for(db, account.id) if e.event == "invoice_created"]
        assert entry.actor == "import:invoices.csv" and entry.details["invoice_id"] == invoice.id
    emails = db.scalars(select(OutboxEmail).where(OutboxEmail.kind == "invoice")).all()
    assert sorted(e.to_address for e in emails) == sorted([one.customer.email, "lee@example.com"])
    assert all("/pay/t/" in e.text_body for e in emails)


def test_running_the_same_file_again_creates_nothing_new(runner, db, accounts, tmp_path):
    path = write_csv(tmp_path / "invoices.csv", sample_rows(accounts[0].id))
    assert runner.invoke(args=["import-invoices", str(path)]).exit_code == 0
    before = counts(db)

    again = runner.invoke(args=["import-invoices", str(path)])

    assert again.exit_code == 0, again.output
    assert (
        "Imported 0 invoices; 0 invoice emails queued; 2 imported before, left as they were." in again.output
    )
    assert counts(db) == before


def test_an_invoice_made_by_the_api_is_not_imported_again(client, runner, db, accounts, tmp_path):
    from portal import api_tokens

    token = api_tokens.create_token(db, "crm").plaintext
    db.commit()
    one = accounts[0]
    body = {
        "external_id": "QB-1",
        "due_date": DUE,
        "lines": [
            {"description": "Weekly service", "amount_cents": 16500},
            {"description": "Chlorine tablets", "amount_cents": 1200, "quantity": 3},
        ],
    }
    response = client.post(
        f"/api/v1/accounts/{one.id}/invoices", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201
    path = write_csv(tmp_path / "invoices.csv", sample_rows(one.id)[:2])

    result = runner.invoke(args=["import-invoices", str(path)])

    assert result.exit_code == 0 and "1 imported before" in result.output
    assert count_rows(db, Invoice) == 1


def test_errors_in_several_rows_are_all_listed_by_line_and_column_and_nothing_is_imported(
    runner, db, accounts, tmp_path
):
    one, two = accounts
    rows = [
        *sample_rows(one.id),  # lines 2-4 are fine
        {"account_id": "99999", "external_id": "X", "due_date": DUE, "description": "a", "amount": "1"},
        {
            "account_id": str(one.id),
            "external_id": "QB-3",
            "due_date": "soon",
            "description": "a",
            "amount": "1",
        },
        {
            "account_id": str(one.id),
            "external_id": "QB-4",
            "due_date": DUE,
            "description": "",
            "amount": "-5",
        },
        {
            "account_id": str(one.id),
            "external_id": "QB-5",
            "due_date": DUE,
            "description": "Line\u2028two",
            "amount": "10",
            "quantity": "zero",
        },
        {
            "customer_email": "nobody@example.com",
            "external_id": "X",
            "due_date": DUE,
            "description": "a",
            "amount": "1",
        },
        {
            "account_id": str(two.id),
            "customer_email": "lee@example.com",
            "external_id": "X",
            "due_date": DUE,
            "description": "a",
            "amount": "1",
        },
        {"account_id": str(one.id), "external_id": "", "due_date": DUE, "description": "a", "amount": "10"},
    ]
    path = write_csv(tmp_path / "invoices.csv", rows)
    before = counts(db)

    result = runner.invoke(args=["import-invoices", str(path)])

    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("row ")]
    where = {line.split(":")[0] for line in lines}
    assert where == {
        "row 5, account_id",
        "row 6, due_date",
        "row 7, description",
        "row 7, amount",
        "row 8, description",
        "row 8, quantity",
        "row 9, customer_email",
        "row 10, account_id",
        "row 11, external_id",
    }, result.output
    assert "nothing was imported" in result.output
    assert counts(db) == before


def test_lines_of_one_invoice_must_agree_and_the_total_is_checked(runner, db, accounts, tmp_path):
    one = accounts[0]
    later = (date.today() + timedelta(days=20)).isoformat()
    rows = [
        {
            "account_id": str(one.id),
            "external_id": "QB-1",
            "due_date": DUE,
            "description": "a",
            "amount": "10",
        },
        {
            "account_id": str(one.id),
            "external_id": "QB-1",
            "due_date": later,
            "description": "b",
            "amount": "10",
        },
        {
            "account_id": str(one.id),
            "external_id": "QB-2",
            "due_date": DUE,
            "description": "tiny",
            "amount": "0.10",
        },
    ]
    result = runner.invoke(args=["import-invoices", str(write_csv(tmp_path / "i.csv", rows))])
    assert result.exit_code == 1
    assert "row 3, due_date: Every line of invoice QB-1 needs the same due_date." in result.output
    assert "row 4, amount: The total must be at least 0.50" in result.output
    assert count_rows(db, Invoice) == 0


def test_the_same_external_id_with_different_lines_is_an_error_and_changes_nothing(
    runner, db, accounts, tmp_path
):
    one = accounts[0]
    path = write_csv(tmp_path / "invoices.csv", sample_rows(one.id))
    assert runner.invoke(args=["import-invoices", str(path)]).exit_code == 0
    changed = sample_rows(one.id)
    changed[0]["amount"] = "175.00"
    before = counts(db)

    result = runner.invoke(args=["import-invoices", str(write_csv(tmp_path / "changed.csv", changed))])

    assert result.exit_code == 1
    assert "row 2, external_id: Invoice INV-" in result.output and "different lines" in result.output
    assert counts(db) == before


def test_an_email_shared_by_two_accounts_asks_for_the_account_id(runner, db, make_account, tmp_path):
    make_account()
    make_account(service_address="9 Elm St, Phoenix, AZ")  # the same customer, a second pool
    rows = [
        {
            "customer_email": "dana@example.com",
            "external_id": "X",
            "due_date": DUE,
            "description": "a",
            "amount": "10",
        }
    ]
    result = runner.invoke(args=["import-invoices", str(write_csv(tmp_path / "i.csv", rows))])
    assert result.exit_code == 1 and "use account_id" in result.output
    assert count_rows(db, Invoice) == 0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (["account_id", "external_id", "due_date", "description"], "row 1, amount: Add an amount column"),
        (["external_id", "due_date", "description", "amount"], "row 1, account_id: Add an account_id column"),
        (["account_id", "external_id", "description", "amount", "colour"], "row 1, colour: Unknown column."),
        (
            ["account_id", "external_id", "description", "amount"],
            "row 1, due_date: This required column is missing.",
        ),
    ],
)
def test_header_errors_import_nothing(runner, db, accounts, tmp_path, header, expected):
    rows = [
        {
            "account_id": str(accounts[0].id),
            "external_id": "X",
            "due_date": DUE,
            "description": "a",
            "amount": "10",
        }
    ]
    result = runner.invoke(args=["import-invoices", str(write_csv(tmp_path / "i.csv", rows, header))])
    assert result.exit_code == 1 and expected in result.output, result.output
    assert count_rows(db, Invoice) == 0


def test_amount_cents_and_currency_columns(runner, db, accounts, tmp_path):
    header = ["account_id", "external_id", "due_date", "description", "amount_cents", "currency"]
    ok = {
        "account_id": str(accounts[0].id),
        "external_id": "A",
        "due_date": DUE,
        "description": "a",
        "amount_cents": "16500",
        "currency": "usd",
    }
    bad = {**ok, "external_id": "B", "amount_cents": "165.00", "currency": "EUR"}
    result = runner.invoke(args=["import-invoices", str(write_csv(tmp_path / "i.csv", [ok, bad], header))])
    assert result.exit_code == 1
    assert "row 3, amount_cents:" in result.output and "row 3, currency:" in result.output
    assert "row 2" not in result.output and count_rows(db, Invoice) == 0
    result = runner.invoke(args=["import-invoices", str(write_csv(tmp_path / "j.csv", [ok], header))])
    assert result.exit_code == 0 and db.scalars(select(Invoice)).one().total_cents == 16500


def test_the_example_file_imports_cleanly(runner, db, make_account):
    account = make_account()  # the demo customer, dana@example.com, as `make run` seeds her

    result = runner.invoke(args=["import-invoices", str(ROOT / "examples" / "invoices.csv")])

    assert result.exit_code == 0, result.output
    assert sorted((i.external_id, i.total_cents) for i in db.scalars(select(Invoice))) == [
        ("QB-INV-1042", 20100),
        ("QB-INV-1043", 8500),
    ]
    assert {i.account_id for i in db.scalars(select(Invoice))} == {account.id}
