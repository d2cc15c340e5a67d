"""Invoices from other systems by CSV file: `flask --app wsgi import-invoices FILE.csv`.

The same rules as the handoff import (portal/imports.py, whose reader and errors this uses): the
file is all or nothing, every row is checked first and every error is reported by line and
column. One row per invoice line; the rows with the same account and `external_id` are one
invoice, checked by the API's validator (`validation.parse_invoice`) and created by the API's
service function (`external_invoices.create_external_invoice`), so each is a record entry and an email
with a pay link. An invoice imported before (the same account, external id and content) is left
as it was, so running the same file again creates nothing; the same external id with different
lines is an error. The format is in docs/csv-invoices.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from flask.cli import with_appcontext
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from portal import external_invoices
from portal.company import company_today, get_company
from portal.db import unit_of_work
from portal.imports import ImportInvalid, RowError, header_errors, read_csv, shape_errors
from portal.models import Account, Customer
from portal.money import parse_money
from portal.validation import HandoffInvalid, InvoiceData, parse_invoice

AMOUNT_COLUMNS = ("amount", "amount_cents")
ACCOUNT_COLUMNS = ("account_id", "customer_email")
REQUIRED_COLUMNS = ("external_id", "due_date", "description")
COLUMNS = (*ACCOUNT_COLUMNS, *REQUIRED_COLUMNS, *AMOUNT_COLUMNS, "quantity", "currency")
DOC = "docs/csv-invoices.md"


@dataclass
class _Group:
    """The rows of one invoice: the same account and external id."""

    account: Account
    external_id: str
    rows: list[tuple[int, dict[str, str], str]] = field(default_factory=list)  # line, values, amount column


@dataclass(frozen=True)
class CheckedInvoice:
    line: int  # its first row
    account: Account
    data: InvoiceData


@dataclass
class InvoiceImportResult:
    created: int = 0
    unchanged: int = 0
    invoice_ids: list[int] = field(default_factory=list)


def check_header(header: list[str]) -> None:
    errors = header_errors(header, COLUMNS, REQUIRED_COLUMNS)
    if not any(name in header for name in ACCOUNT_COLUMNS):
        errors.append(RowError(1, "account_id", "Add an account_id column or a customer_email column."))
    if not any(name in header for name in AMOUNT_COLUMNS):
        errors.append(RowError(1, "amount", "Add an amount column (dollars, e.g. 165.00) or amount_cents."))
    if errors:
        raise ImportInvalid(errors)


def parse_file(session: Session, content: bytes) -> list[CheckedInvoice]:
    """Check a whole file; every invoice in it, or `ImportInvalid` listing every error."""
    header, records = read_csv(content, check_header=check_header, rows_are="invoice lines", doc=DOC)
    errors: list[RowError] = []
    finder = _AccountFinder(session)
    groups: dict[tuple[int, str], _Group] = {}
    for line, values in records:
        row_errors = shape_errors(line, header, values)
        if row_errors:
            errors += row_errors
            continue
        # Not strict: trailing empty cells past the header are allowed (shape_errors).
        named = {name: value.strip() for name, value in zip(header, values, strict=False)}
        account, problem = finder.find(named)
        if account is None:
            errors.append(RowError(line, problem[0], problem[1]))
            continue
        external_id = named.get("external_id", "")
        amount_column = "amount" if "amount" in named and not named.get("amount_cents") else "amount_cents"
        group = groups.setdefault((account.id, external_id), _Group(account, external_id))
        group.rows.append((line, named, amount_column))
    checked: list[CheckedInvoice] = []
    for group in groups.values():
        invoice, group_errors = _check_group(session, group)
        errors += group_errors
        if invoice is not None:
            checked.append(invoice)
    if errors:
        raise ImportInvalid(sorted(errors, key=lambda e: (e.line or 0, e.field)))
    return checked


class _AccountFinder:
    """Rows name the account by id or by its customer's email; one query per distinct value."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.by_id: dict[str, Account | None] = {}
        self.by_email: dict[str, list[Account]] = {}

    def find(self, values: dict[str, str]) -> tuple[Account | None, tuple[str, str]]:
        account_id, email = values.get("account_id", ""), values.get("customer_email", "").lower()
        if account_id and email:
            return None, ("account_id", "Fill in account_id or customer_email on a row, not both.")
        if account_id:
            if not account_id.isdigit() or len(account_id) > 12:
                return None, ("account_id", "Give the account's number, e.g. 1042.")
            if account_id not in self.by_id:
                found = self.session.get(Account, int(account_id))
                self.by_id[account_id] = found if found is not None and found.deleted_at is None else None
            account = self.by_id[account_id]
            return account, ("account_id", "No account has this number.")
        if not email:
            return None, ("account_id", "Name the account: its account_id or its customer_email.")
        if email not in self.by_email:
            self.by_email[email] = list(
                self.session.scalars(
                    select(Account)
                    .join(Customer, Account.customer_id == Customer.id)
                    .where(func.lower(Customer.email) == email, Account.deleted_at.is_(None))
                    .order_by(Account.id)
                )
            )
        accounts = self.by_email[email]
        if len(accounts) == 1:
            return accounts[0], ("", "")
        if not accounts:
            return None, ("customer_email", "No account has a customer with this email address.")
        numbers = ", ".join(str(a.id) for a in accounts)
        return None, ("customer_email", f"Several accounts ({numbers}) have this customer; use account_id.")


def _check_group(session: Session, group: _Group) -> tuple[CheckedInvoice | None, list[RowError]]:
    first_line, first, _ = group.rows[0]
    errors: list[RowError] = []
    for line, values, _ in group.rows[1:]:
        for column in ("due_date", "currency"):
            if values.get(column, "") != first.get(column, ""):
                errors.append(
                    RowError(
                        line, column, f"Every line of invoice {group.external_id} needs the same {column}."
                    )
                )
    lines: list[dict[str, Any]] = []
    for line, values, amount_column in group.rows:
        amount: Any = values.get("amount_cents", "")
        if values.get("amount") and values.get("amount_cents"):
            errors.append(RowError(line, "amount", "Fill in amount or amount_cents, not both."))
        elif amount_column == "amount":
            try:
                amount = parse_money(values.get("amount", ""))
            except ValueError as error:
                errors.append(RowError(line, "amount", f"{error}."))
        lines.append(
            {
                "description": values.get("description"),
                "amount_cents": amount,
                "quantity": values.get("quantity") or 1,
            }
        )
    payload = {
        "external_id": group.external_id,
        "currency": first.get("currency") or None,
        "due_date": first.get("due_date"),
        "lines": lines,
    }
    try:
        data = parse_invoice(payload, today=company_today(), currency=get_company().currency)
    except HandoffInvalid as invalid:
        for path, message in invalid.errors.items():
            if not any(
                e.line == _line_of(path, group) and e.field == _column_of(path, group) for e in errors
            ):
                errors.append(RowError(_line_of(path, group), _column_of(path, group), message))
        return None, errors
    if errors:
        return None, errors
    existing = external_invoices.by_external_id(session, group.account, data.external_id)
    if existing is not None and existing.external_digest != data.digest:
        return None, [
            RowError(
                first_line,
                "external_id",
                f"Invoice {existing.number} was imported with this external_id and different lines, "
                "currency or due date; give the new invoice its own external_id.",
            )
        ]
    return CheckedInvoice(first_line, group.account, data), []


def _line_of(path: str, group: _Group) -> int:
    parts = path.split(".")
    if parts[0] == "lines" and len(parts) > 1 and parts[1].isdigit() and int(parts[1]) < len(group.rows):
        return group.rows[int(parts[1])][0]
    return group.rows[0][0]


def _column_of(path: str, group: _Group) -> str:
    parts = path.split(".")
    if parts[0] != "lines":
        return parts[0]
    if len(parts) < 3:
        return "external_id" if len(group.rows) > 30 else group.rows[0][2]
    if parts[2] == "amount_cents":
        return group.rows[int(parts[1])][2]
    return parts[2]


def import_invoices(session: Session, invoices: list[CheckedInvoice], actor: str) -> InvoiceImportResult:
    """Create every checked invoice not imported before, inside the caller's transaction."""
    result = InvoiceImportResult()
    for checked in invoices:
        invoice, created = external_invoices.create_external_invoice(
            session, checked.account, checked.data, actor
        )
        result.created += created
        result.unchanged += not created
        result.invoice_ids.append(invoice.id)
    return result


@click.command("import-invoices")
@with_appcontext
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_invoices_command(csv_file: Path) -> None:
    """Import invoices from FILE.csv (format: docs/csv-invoices.md), all or nothing.

    One row per invoice line; rows with the same account and external_id make one invoice.
    Every row is checked first; if any has an error, each error is listed with its line and
    column and nothing is imported. Each new invoice is emailed to the customer with a pay link
    (queued in the outbox); invoices imported before are left as they were.
    """
    actor = f"import:{csv_file.name}"[:40]
    try:
        # Checked and imported in one unit: no other writer comes between the check and the rows.
        with unit_of_work() as session:
            invoices = parse_file(session, csv_file.read_bytes())
            result = import_invoices(session, invoices, actor)
    except ImportInvalid as invalid:
        for error in invalid.errors:
            click.echo(str(error), err=True)
        raise click.ClickException(
            f"{len(invalid.errors)} error(s) in {csv_file.name}; nothing was imported."
        ) from None
    except SQLAlchemyError as error:
        raise click.ClickException(
            f"The import failed and was rolled back; nothing was imported ({error.__class__.__name__})."
        ) from error
    click.echo(
        f"Imported {result.created} invoices; {result.created} invoice emails queued; "
        f"{result.unchanged} imported before, left as they were."
    )


COMMANDS: list[click.Command] = [import_invoices_command]
