"""Handoffs from other systems: one at a time (the JSON API) or a whole CSV file.

A CSV file is all or nothing: every row is checked first, with every error reported by line
and column, and only a file without errors is imported, in one transaction. Rows go through
the same validator as the staff form and the API (`parse_handoff`, via `parse_incoming`); the
format is documented in docs/csv-format.md.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import date
from itertools import chain
from pathlib import Path
from typing import Any

import click
from flask.cli import with_appcontext
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from portal import deliverables, links, record
from portal.company import get_company
from portal.db import reserve_ids, table_of, unit_of_work, utcnow
from portal.deliverables import OPEN
from portal.handoffs import KIND_LABELS, create_handoff, new_customer, staff_actor, with_derived_promises
from portal.mail import queue_email
from portal.models import (
    Account,
    AccountStatus,
    Customer,
    OutboxEmail,
    Outcome,
    PromiseItem,
    PromiseTask,
    RecordEntry,
)
from portal.money import parse_money
from portal.occasions import Occasion, default_for, parse_when
from portal.onboarding import WelcomeSent, send_welcome
from portal.salespeople import IncomingHandoff, active_salespeople, parse_incoming
from portal.validation import OCCASION_FIELDS, HandoffInvalid

# A deliverable's when ("by 2027-05-31") and owner ("office"), beside its promise column.
occasions_columns = {"equipment": ("equipment_when", "equipment_owner")}
PROMISE_COLUMNS = ("visit_day", "start_date", "gate_access", "safety", "equipment", "billing", "custom")
REQUIRED_COLUMNS = ("customer_name", "customer_email", "service_address", "plan", "first_visit")
PRICE_COLUMNS = ("price", "price_cents")
COLUMNS = (
    *REQUIRED_COLUMNS[:2],
    "customer_phone",
    *REQUIRED_COLUMNS[2:4],
    "visits_per_week",
    "billing_cadence",
    *PRICE_COLUMNS,
    "first_visit",
    "salesperson_email",
    *PROMISE_COLUMNS,
    *(column for column, _ in occasions_columns.values()),
    *(column for _, column in occasions_columns.values()),
    "why_chose_us",
    "concerns",
    "contact_preference",
)
CUSTOM_SEPARATOR = "|"
# The validator's field paths, as the CSV columns people see.
COLUMN_FOR_PATH = {
    "customer.name": "customer_name",
    "customer.email": "customer_email",
    "customer.phone": "customer_phone",
}
SHOW_PROGRESS_ABOVE = 200
BATCH_SIZE = 500
# A database answers a long IN (...) list slowly or not at all; ask in slices.
LOOKUP_SLICE = 500

Progress = Callable[[int], None]


# ---------------------------------------------------------------- one handoff (the API)


def create_and_welcome(
    session: Session, incoming: IncomingHandoff, actor: str
) -> tuple[Account, WelcomeSent]:
    """Create the handoff and queue its welcome email. The caller commits once, so a failure
    in either step leaves nothing behind."""
    account = create_handoff(session, incoming.data, incoming.salesperson)
    return account, send_welcome(session, account, actor=actor)


# ---------------------------------------------------------------- reading a CSV file


@dataclass(frozen=True)
class RowError:
    line: int | None  # the line in the file (the header is line 1); None for the whole file
    field: str
    message: str

    def __str__(self) -> str:
        where = f"row {self.line}" if self.line is not None else "file"
        return f"{where}, {self.field}: {self.message}"


class ImportInvalid(ValueError):
    def __init__(self, errors: list[RowError]) -> None:
        super().__init__(f"{len(errors)} error(s); nothing imported")
        self.errors = errors


@dataclass(frozen=True)
class ParsedRow:
    line: int
    handoff: IncomingHandoff


@dataclass
class ImportResult:
    handoffs: int = 0
    emails: int = 0
    account_ids: list[int] = field(default_factory=list)


def read_csv(
    content: bytes,
    *,
    check_header: Callable[[list[str]], None] | None = None,
    rows_are: str = "handoffs",
    doc: str = "docs/csv-format.md",
) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and every non-blank record with the line it starts on; file-level problems
    (encoding, empty, broken quoting, bad header) raise `ImportInvalid`. The handoff file's
    header rules unless `check_header` is given (the invoice import, portal/invoice_import.py)."""
    try:
        # utf-8-sig: spreadsheet programs put a byte-order mark before the header.
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = content[: error.start].count(b"\n") + 1
        raise ImportInvalid(
            [
                RowError(
                    line,
                    "encoding",
                    "This line is not UTF-8 text. Save the file as 'CSV UTF-8' and try again.",
                )
            ]
        ) from error
    if not text.strip():
        raise ImportInvalid(
            [
                RowError(
                    None,
                    "file",
                    f"The file is empty. The first line must name the columns (see {doc}).",
                )
            ]
        )
    records = list(_records(text))
    header = [name.strip().lower() for name in records[0][1]]
    (check_header or _check_header)(header)
    if len(records) == 1:
        raise ImportInvalid([RowError(None, "file", f"The file has a header but no {rows_are}.")])
    return header, records[1:]


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        for values in reader:
            if any(value.strip() for value in values):
                yield start, values
            start = reader.line_num + 1
    except csv.Error as error:
        raise ImportInvalid(
            [
                RowError(
                    start,
                    "file",
                    f"The CSV cannot be read here: {error}. "
                    "A value with commas, quotes or line breaks needs "
                    "double quotes around it.",
                )
            ]
        ) from error


def header_errors(header: list[str], columns: Iterable[str], required: Iterable[str]) -> list[RowError]:
    """Unknown, repeated and missing columns: the rules every CSV import shares."""
    known = set(columns)
    errors = [
        RowError(1, name or f"column {index + 1}", "Unknown column.")
        for index, name in enumerate(header)
        if name not in known
    ]
    errors += [
        RowError(1, name, "This column appears more than once.")
        for name in sorted({n for n in header if header.count(n) > 1 and n in known})
    ]
    errors += [
        RowError(1, name, "This required column is missing.") for name in required if name not in header
    ]
    return errors


def _check_header(header: list[str]) -> None:
    errors = header_errors(header, COLUMNS, REQUIRED_COLUMNS)
    if not any(name in header for name in PRICE_COLUMNS):
        errors.append(
            RowError(1, "price", "Add a price column (dollars, e.g. 165.00) or a price_cents column.")
        )
    if errors:
        raise ImportInvalid(errors)


# ---------------------------------------------------------------- checking the rows


@dataclass
class _RowPayload:
    payload: dict[str, Any]
    errors: dict[str, str]
    promise_columns: list[str]  # the column each entry of payload["promises"] came from
    price_column: str


def row_payload(values: dict[str, str]) -> _RowPayload:
    """One CSV row in the API's JSON shape, plus the errors only CSV can have."""
    errors: dict[str, str] = {}
    promises: list[dict[str, str]] = []
    promise_columns: list[str] = []
    for column in PROMISE_COLUMNS:
        raw = values.get(column, "")
        parts = raw.split(CUSTOM_SEPARATOR) if column == "custom" else [raw]
        for part in (p.strip() for p in parts):
            if part:
                promises.append({"kind": column, "value": part, **_occasion_cells(column, values, errors)})
                promise_columns.append(column)
    price_cents, price_column = _price(values, errors)
    payload = {
        "customer": {
            "name": values.get("customer_name"),
            "email": values.get("customer_email"),
            "phone": values.get("customer_phone"),
        },
        "service_address": values.get("service_address"),
        "plan": values.get("plan"),
        "visits_per_week": values.get("visits_per_week"),
        "billing_cadence": values.get("billing_cadence"),
        "price_cents": price_cents,
        "first_visit": (values.get("first_visit") or "").strip(),
        "salesperson_email": values.get("salesperson_email"),
        "promises": promises,
        "why_chose_us": values.get("why_chose_us"),
        "concerns": values.get("concerns"),
        "contact_preference": values.get("contact_preference"),
    }
    return _RowPayload(payload, errors, promise_columns, price_column)


def _occasion_cells(column: str, values: dict[str, str], errors: dict[str, str]) -> dict[str, str]:
    """The API's occasion fields from a promise's `_when` and `_owner` cells."""
    if column not in occasions_columns:
        return {}
    when_column, owner_column = occasions_columns[column]
    fields: dict[str, str] = {}
    when = (values.get(when_column) or "").strip()
    if when:
        parsed = parse_when(when)
        if parsed is None:
            errors[when_column] = (
                "Say when: first visit, by 2027-05-31, every 3 months (from 2027-01-15), or none."
            )
        else:
            fields.update(parsed)
    owner = (values.get(owner_column) or "").strip()
    if owner:
        fields["owner"] = owner
    return fields


def _price(values: dict[str, str], errors: dict[str, str]) -> tuple[str | int | None, str]:
    dollars = (values.get("price") or "").strip()
    cents = (values.get("price_cents") or "").strip()
    column = "price" if "price" in values else "price_cents"
    if dollars and cents:
        errors["price"] = "Fill in price or price_cents, not both."
        return None, column
    if not dollars and not cents:
        errors[column] = "Enter the monthly price, e.g. 165.00."
        return None, column
    if cents:
        return cents, "price_cents"
    try:
        return parse_money(dollars), "price"
    except ValueError as error:
        errors["price"] = str(error) + "."
        return None, "price"


def check_row(
    line: int, values: dict[str, str], lookup: Callable[[str], Any], today: date | None
) -> tuple[ParsedRow | None, list[RowError]]:
    row = row_payload(values)
    try:
        handoff = parse_incoming(row.payload, lookup, today)
    except HandoffInvalid as invalid:
        errors = {_column(path, row): message for path, message in invalid.errors.items()}
        errors.update(row.errors)  # the CSV's own message about a column says more
        return None, [RowError(line, column, message) for column, message in errors.items()]
    if row.errors:
        return None, [RowError(line, column, message) for column, message in row.errors.items()]
    return ParsedRow(line, handoff), []


def _column(path: str, row: _RowPayload) -> str:
    if path in COLUMN_FOR_PATH:
        return COLUMN_FOR_PATH[path]
    if path == "price_cents":
        return row.price_column
    if path.startswith("promises."):
        parts = path.split(".")
        index = parts[1]
        if index.isdigit() and int(index) < len(row.promise_columns):
            column = row.promise_columns[int(index)]
            if len(parts) > 2 and parts[2] in OCCASION_FIELDS and column in occasions_columns:
                return occasions_columns[column][1 if parts[2] == "owner" else 0]
            return column
        return "custom"
    if path == "promises":
        return "custom"
    return path


def parse_file(session: Session, content: bytes, *, today: date | None = None) -> list[ParsedRow]:
    """Check a whole file; return every row, or raise `ImportInvalid` listing every error."""
    header, records = read_csv(content)
    return check_records(session, header, records, today=today)


def check_records(
    session: Session,
    header: list[str],
    records: list[tuple[int, list[str]]],
    *,
    today: date | None = None,
    progress: Progress | None = None,
) -> list[ParsedRow]:
    salespeople = active_salespeople(session)  # one query for the whole file
    parsed: list[ParsedRow] = []
    errors: list[RowError] = []
    seen: dict[tuple[str, str], int] = {}
    for line, values in records:
        row_errors = shape_errors(line, header, values)
        if not row_errors:
            named = dict(
                zip(header, values, strict=False)
            )  # trailing empty cells beyond the header are allowed
            row, row_errors = check_row(line, named, salespeople.get, today)
            row_errors += _duplicate_in_file(line, named, seen)
            if row is not None and not row_errors:
                parsed.append(row)
        errors += row_errors
        if progress:
            progress(1)
    errors += _duplicates_in_database(session, parsed)
    if errors:
        raise ImportInvalid(sorted(errors, key=lambda e: e.line or 0))
    return parsed


def shape_errors(line: int, header: list[str], values: list[str]) -> list[RowError]:
    extra = values[len(header) :]
    if len(values) < len(header) or any(value.strip() for value in extra):
        return [
            RowError(
                line,
                "columns",
                f"{len(values)} values, but the header has "
                f"{len(header)} columns. A value with a comma or line break needs "
                "double quotes around it.",
            )
        ]
    return []


def _address_key(address: str) -> str:
    return " ".join(address.lower().split())


def _duplicate_in_file(line: int, values: dict[str, str], seen: dict[tuple[str, str], int]) -> list[RowError]:
    email = (values.get("customer_email") or "").strip().lower()
    address = _address_key(values.get("service_address") or "")
    if not email or not address:
        return []
    first = seen.setdefault((email, address), line)
    if first == line:
        return []
    return [RowError(line, "customer_email", f"Same customer and service address as row {first}.")]


def _duplicates_in_database(session: Session, rows: list[ParsedRow]) -> list[RowError]:
    """Running the same file twice must not create every account (and email) twice."""
    emails = sorted({row.handoff.data.customer_email for row in rows})
    existing: dict[tuple[str, str], int] = {}
    for start in range(0, len(emails), LOOKUP_SLICE):
        found = session.execute(
            select(Customer.email, Account.service_address, Account.id)
            .join(Account, Account.customer_id == Customer.id)
            .where(Customer.email.in_(emails[start : start + LOOKUP_SLICE]), Account.deleted_at.is_(None))
        )
        for email, address, account_id in found:
            existing.setdefault((email, _address_key(address)), account_id)
    errors = []
    for row in rows:
        data = row.handoff.data
        duplicate_of = existing.get((data.customer_email, _address_key(data.service_address)))
        if duplicate_of is not None:
            errors.append(
                RowError(
                    row.line,
                    "customer_email",
                    f"This customer already has an account at this address (account {duplicate_of}).",
                )
            )
    return errors


# ---------------------------------------------------------------- importing checked rows


def import_rows(
    session: Session,
    rows: list[ParsedRow],
    *,
    send: bool,
    actor: str,
    progress: Progress | None = None,
) -> ImportResult:
    """Write checked rows in batches inside the caller's transaction. The caller commits."""
    result = ImportResult()
    currency = get_company().currency
    for start in range(0, len(rows), BATCH_SIZE):
        batch = [row.handoff for row in rows[start : start + BATCH_SIZE]]
        accounts, emails = write_batch(
            session, batch, currency=currency, welcome_actor=actor if send else None
        )
        result.handoffs += len(accounts)
        result.emails += emails
        result.account_ids += [account.id for account in accounts]
        if progress:
            progress(len(batch))
    return result


@dataclass(frozen=True)
class WrittenItem:
    """A promise item for the batch INSERT, with the attributes of `PromiseItem` that the
    welcome email reads."""

    id: int
    account_id: int
    kind: str
    label: str
    promised_value: str
    promised_by_id: int | None
    position: int
    occasion: Occasion

    @property
    def row(self) -> dict[str, Any]:
        # Spelled out: dataclasses.asdict deep-copies, and showed up in the profile.
        return {
            "id": self.id,
            "account_id": self.account_id,
            "kind": self.kind,
            "label": self.label,
            "promised_value": self.promised_value,
            "promised_by_id": self.promised_by_id,
            "position": self.position,
            "current_outcome": Outcome.PROMISED.value,
            "created_at": utcnow(),
            "occasion": self.occasion.kind,
            "occasion_on": self.occasion.on,
            "every": self.occasion.every,
            "every_unit": self.occasion.unit,
            "owner": self.occasion.owner,
        }


def write_batch(
    session: Session, batch: list[IncomingHandoff], *, currency: str, welcome_actor: str | None
) -> tuple[list[Account], int]:
    """What `create_handoff` (+ `send_welcome` when welcome_actor is given) does for each
    handoff, in a handful of multi-row statements per batch instead of several per promise.
    tests/test_import.py checks the result equals the one-by-one path.

    Primary keys are reserved up front, so every INSERT is a plain executemany: with
    RETURNING, SQLAlchemy inserts one row at a time on SQLite to keep the ids in order.
    Items and record entries skip the ORM too; building objects cost more than the database.
    """
    with session.no_autoflush:  # everything gets its id first, then one flush
        customers = _customers_for(session, batch)
        account_ids = reserve_ids(session, Account, len(batch))
        accounts = [
            _new_account(incoming, customer, account_id)
            for incoming, customer, account_id in zip(batch, customers, account_ids, strict=True)
        ]
        # The link goes into the INSERT; setting it after would cost an UPDATE per account.
        urls = [_issue_link(account) if welcome_actor else "" for account in accounts]
        session.add_all(accounts)
        # Now, not with the emails: the unit of work cannot order outbox rows after their
        # accounts (no relationship between them), and the foreign key wants that order.
        session.flush()
        items = _items(session, accounts, batch, currency)
        emails: list[OutboxEmail | None] = [None] * len(accounts)
        if welcome_actor:
            email_ids = reserve_ids(session, OutboxEmail, len(accounts))
            emails = [
                _queue_welcome(session, *args) for args in zip(accounts, items, urls, email_ids, strict=True)
            ]
        entries, heads = [], []
        keys = record.record_keys()
        for account, incoming, account_items, email in zip(accounts, batch, items, emails, strict=True):
            rows, head = record.chain_rows(
                account.id,
                record.ChainHead(),
                _entry_contents(account, incoming, account_items, email, welcome_actor),
                keys,
            )
            entries += rows
            heads.append({"b_id": account.id, "record_seq": head.seq, "record_head": head.hash})
    session.flush()  # the emails, as one executemany
    _insert_many(session, PromiseItem, [item.row for item in chain(*items)])
    _insert_many(session, RecordEntry, entries)
    session.execute(_SET_HEADS, heads)
    _point_items_at_latest_entries(session, account_ids)
    if tasks := _first_tasks(accounts, items):
        _insert_many(session, PromiseTask, tasks)
    return accounts, sum(email is not None for email in emails)


def _first_tasks(accounts: list[Account], items: list[list[WrittenItem]]) -> list[dict[str, Any]]:
    """What `deliverables.plan` creates for a new promise: its first occurrence, if due."""
    tasks = []
    for account, account_items in zip(accounts, items, strict=True):
        for item in account_items:
            due = item.occasion.due(0, account.first_visit)
            if due is not None:
                now = utcnow()
                tasks.append(
                    {
                        "account_id": account.id,
                        "item_id": item.id,
                        "occurrence": 0,
                        "due_on": due,
                        "owner": item.occasion.owner,
                        "status": OPEN,
                        "note": "",
                        "created_at": now,
                        "updated_at": now,
                    }
                )
    return tasks


def _insert_many(session: Session, model: type[Any], rows: list[dict[str, Any]]) -> None:
    """One executemany on the table, past the ORM (the rows carry their ids already)."""
    session.execute(insert(model.__table__), rows)


def _point_items_at_latest_entries(session: Session, account_ids: list[int]) -> None:
    """What `record.append` keeps per entry (PromiseItem.latest_entry_id), for the whole
    batch in one UPDATE ... FROM (SQLite 3.33+). Items and entries refer to each other, so
    one of them is written first and pointed afterwards. Each new item has exactly one
    entry with an outcome (its 'promised'), so the join is one to one; on PostgreSQL it ran
    twice as fast as a correlated max() per item."""
    items, entries = table_of(PromiseItem), table_of(RecordEntry)
    session.execute(
        update(items)
        .where(
            items.c.account_id.in_(account_ids),
            entries.c.account_id.in_(account_ids),
            entries.c.item_id == items.c.id,
            entries.c.outcome.is_not(None),
        )
        .values(latest_entry_id=entries.c.id)
    )


def _customers_for(session: Session, batch: list[IncomingHandoff]) -> list[Customer]:
    """`new_customer` for a whole batch: one contact row per account, ids reserved at once."""
    customers = [new_customer(incoming.data) for incoming in batch]
    for customer, customer_id in zip(customers, reserve_ids(session, Customer, len(customers)), strict=True):
        customer.id = customer_id
    return customers


def _new_account(incoming: IncomingHandoff, customer: Customer, account_id: int) -> Account:
    data = incoming.data
    return Account(
        id=account_id,
        customer=customer,
        service_address=data.service_address,
        plan=data.plan,
        visits_per_week=data.visits_per_week,
        billing_cadence=data.billing_cadence,
        price_cents=data.price_cents,
        first_visit=data.first_visit,
        salesperson=incoming.salesperson,
        status=AccountStatus.DRAFT.value,
        why_chose_us=data.why_chose_us,
        concerns=data.concerns,
        contact_preference=data.contact_preference,
    )


def _items(
    session: Session, accounts: list[Account], batch: list[IncomingHandoff], currency: str
) -> list[list[WrittenItem]]:
    """The items of each account, with their ids; written later with the batch."""
    promises = [with_derived_promises(incoming.data, currency) for incoming in batch]
    ids = iter(reserve_ids(session, PromiseItem, sum(len(p) for p in promises)))
    return [
        [
            WrittenItem(
                id=next(ids),
                account_id=account.id,
                kind=promise.kind,
                label=promise.label or KIND_LABELS[promise.kind],
                promised_value=promise.value,
                promised_by_id=incoming.salesperson.id if incoming.salesperson else None,
                position=position,
                occasion=promise.occasion or default_for(promise.kind),
            )
            for position, promise in enumerate(account_promises)
        ]
        for account, incoming, account_promises in zip(accounts, batch, promises, strict=True)
    ]


def _issue_link(account: Account) -> str:
    url = links.issue_welcome_link(account)
    account.link_sent_at = utcnow()
    account.status = AccountStatus.LINK_SENT.value
    return url


def _queue_welcome(
    session: Session, account: Account, items: list[WrittenItem], url: str, email_id: int
) -> OutboxEmail:
    """`send_welcome`'s email for a first send (its record entry comes with `_entries`)."""
    email = queue_email(
        session,
        template="welcome",
        to=account.customer.email,
        subject=f"{get_company().name}: please confirm your pool service",
        context={"account": account, "items": items, "url": url, "expires_days": links.max_age().days},
        account=account,
    )
    email.id = email_id
    return email


def _entry_contents(
    account: Account,
    incoming: IncomingHandoff,
    items: list[WrittenItem],
    email: OutboxEmail | None,
    welcome_actor: str | None,
) -> list[dict[str, Any]]:
    """What `create_handoff` and `send_welcome` append for a new account; nobody else can
    see these accounts before we commit, so their chains start here, from the genesis."""
    salesperson = incoming.salesperson
    note = f"promised by {salesperson.display_name if salesperson else 'sales'}"
    contents: list[dict[str, Any]] = [
        {
            "event": "promised",
            "actor": staff_actor(salesperson),
            "item_id": item.id,
            "promised_value": item.promised_value,
            "outcome": "promised",
            "note": note,
            **(
                {"details": found}
                if (found := deliverables.details(item.occasion, account.first_visit))
                else {}
            ),
        }
        for item in items
    ]
    if email is not None and welcome_actor:
        contents.append(
            {
                "event": "link_sent",
                "actor": welcome_actor,
                "details": {"to": account.customer.email, "email_id": email.id},
            }
        )
    return contents


# Executemany over the new accounts: not through the ORM, which would move their versions.
_SET_HEADS = (
    update(table_of(Account))
    .where(table_of(Account).c.id == bindparam("b_id"))
    .values(record_seq=bindparam("record_seq"), record_head=bindparam("record_head"))
)


# ---------------------------------------------------------------- the command


@click.command("import-handoffs")
@with_appcontext
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--no-send",
    is_flag=True,
    help="Import without queueing welcome emails (send them later from the account page).",
)
def import_handoffs_command(csv_file: Path, no_send: bool) -> None:
    """Import handoffs from FILE.csv (format: docs/csv-format.md), all or nothing.

    Every row is checked first; if any row has an error, each error is listed with its line
    and column and nothing is imported. Welcome emails are queued in the outbox unless
    --no-send is given; deliver them with `outbox send`.
    """
    actor = f"import:{csv_file.name}"[:40]
    try:
        # Checked and imported in one unit: no other writer comes between the check and the rows.
        with unit_of_work() as session:
            header, records = read_csv(csv_file.read_bytes())
            with _progress(len(records), "Checking rows") as step:
                rows = check_records(session, header, records, progress=step)
            with _progress(len(rows), "Importing") as step:
                result = import_rows(session, rows, send=not no_send, actor=actor, progress=step)
    except ImportInvalid as invalid:
        for error in invalid.errors:
            click.echo(str(error), err=True)
        raise click.ClickException(
            f"{len(invalid.errors)} error(s) in {csv_file.name}; nothing was imported."
        ) from None
    except SQLAlchemyError as error:
        raise click.ClickException(
            f"The import failed and was rolled back; nothing was imported ({error.__class__.__name__}: "
            f"{getattr(error, 'orig', error)})."
        ) from error
    click.echo(f"Imported {result.handoffs} handoffs; {result.emails} welcome emails queued.")


def _progress(total: int, label: str) -> AbstractContextManager[Progress | None]:
    """A progress bar on stderr for files big enough to wait for; nothing for small ones."""
    if total <= SHOW_PROGRESS_ABOVE:
        return nullcontext(None)
    return _Bar(total, label)


class _Bar:
    def __init__(self, total: int, label: str) -> None:
        self._bar = click.progressbar(length=total, label=label, file=sys.stderr)

    def __enter__(self) -> Progress:
        self._bar.__enter__()
        return self._bar.update

    def __exit__(self, *exc: object) -> None:
        # click's ProgressBar.__exit__ names its three arguments; this passes them through as given.
        self._bar.__exit__(*exc)  # type: ignore[arg-type]


COMMANDS: list[click.Command] = [import_handoffs_command]
