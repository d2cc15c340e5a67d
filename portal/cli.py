"""Command-line tools, all under `flask --app wsgi`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

import alembic.util
import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select

from portal import (
    api_tokens,
    first_visit,
    imports,
    invoice_import,
    links,
    migrate,
    outbox,
    record,
    reminders,
    worker,
)
from portal.auth import ALL_STAFF, create_staff
from portal.db import get_db, unit_of_work
from portal.demo import DEMO_PASSWORD, seed_demo
from portal.models import Account


def register(app: Flask) -> None:
    app.cli.add_command(db_group)
    app.cli.add_command(seed_demo_command)
    app.cli.add_command(demo_info_command)
    app.cli.add_command(create_staff_command)
    app.cli.add_command(verify_record_command)
    app.cli.add_command(record_seal_command)
    for command in (
        *outbox.COMMANDS,
        *reminders.COMMANDS,
        *imports.COMMANDS,
        *invoice_import.COMMANDS,
        *api_tokens.COMMANDS,
        *worker.COMMANDS,
        *first_visit.COMMANDS,
    ):
        app.cli.add_command(command)
    from portal.payments.cli import COMMANDS as PAYMENT_COMMANDS  # charge-autopay, reconcile-stripe

    for command in PAYMENT_COMMANDS:
        app.cli.add_command(command)


@click.group("db", cls=AppGroup)
def db_group() -> None:
    """Database schema (Alembic migrations)."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    migrate.upgrade(current_app, revision)
    click.echo(f"Database is at {revision}.")


@db_group.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION ('base' empties the database)."""
    migrate.downgrade(current_app, revision)
    click.echo(f"Database is at {revision}.")


@db_group.command("revision")
@click.option("-m", "--message", required=True, help="What the migration does (names the file).")
@click.option("--empty", is_flag=True, help="Write a blank revision to fill in by hand.")
@click.option(
    "--versions-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the file here instead of migrations/versions.",
)
def db_revision(message: str, empty: bool, versions_dir: Path | None) -> None:
    """Write a migration for the model changes the database (at the latest revision) lacks."""
    try:
        written = migrate.revision(current_app, message, empty=empty, versions_dir=versions_dir)
    except alembic.util.CommandError as error:  # e.g. the database is not at the latest revision
        raise click.ClickException(str(error)) from error
    if written is None:
        click.echo("No changes in the models: no revision written.")
    else:
        click.echo(f"Wrote {written}: review it before committing.")


@click.command("seed-demo")
@with_appcontext
def seed_demo_command() -> None:
    """Add a demo company, staff logins and accounts (does nothing if staff exist already)."""
    with unit_of_work() as session:
        created = seed_demo(session)
    if created:
        click.echo("Demo data added.")
    else:
        click.echo("Staff users exist already; demo data left alone.")
    click.echo(f"Demo staff login: admin@example.com / {DEMO_PASSWORD}")


@click.command("demo-info")
@with_appcontext
def demo_info_command() -> None:
    """Print the demo staff login and a fresh welcome link for the demo customer."""
    with unit_of_work() as session:
        account = session.scalars(
            select(Account).where(Account.deleted_at.is_(None)).order_by(Account.id)
        ).first()
        url = links.issue_welcome_link(account) if account is not None else ""
    click.echo("")
    click.echo(f"  Staff sign-in:  {current_app.config['PUBLIC_BASE_URL']}/staff/login")
    click.echo(f"  Demo login:     admin@example.com / {DEMO_PASSWORD}")
    if account is not None:
        click.echo(f"  Welcome link for {account.customer.name}: {url}")
    click.echo("  The worker started by `make run` sends queued emails within seconds")
    click.echo(f"  (with MAIL_BACKEND=file as .eml files in {current_app.config['MAIL_OUTBOX_DIR']}).")
    click.echo("")


@click.command("create-staff")
@with_appcontext
@click.argument("email")
@click.option("--role", type=click.Choice(ALL_STAFF), required=True, help="What the user may do.")
@click.option("--name", default="", help="Name shown to colleagues.")
@click.password_option(help="At least 10 characters; asked for when not given.")
def create_staff_command(email: str, role: str, name: str, password: str) -> None:
    """Create a staff user who signs in with EMAIL."""
    try:
        with unit_of_work() as session:
            create_staff(session, email, password, role, name)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"Created {role} {email}.")


@click.command("verify-record")
@with_appcontext
@click.argument("account_id", required=False, type=int)
@click.option(
    "--seal",
    "seal_file",
    type=click.File("r"),
    help="A seal from record-seal: also name every account cut or rewritten since.",
)
def verify_record_command(account_id: int | None, seal_file: TextIO | None) -> None:
    """Check the service record of one account, or of every account: each entry's signature
    under RECORD_KEY (or a fallback), each link of the chain, the chain against the account's
    head, and each item's pointer to its latest entry. Exit 1 naming every broken account."""
    session = get_db()
    ids = [account_id] if account_id is not None else record.all_account_ids(session)
    broken = [link for current in ids if (link := record.verify_chain(session, current))]
    for link in broken:
        click.echo(f"Account {link.account_id}: broken at entry {link.seq}: {link.reason}.", err=True)
    changed: list[record.BrokenLink] = []
    if seal_file is not None:
        try:
            seal = record.read_seal(seal_file.read())
        except record.SealError as error:
            raise click.ClickException(f"{seal_file.name}: {error}") from None
        changed = [
            link
            for link in record.changed_since_seal(session, seal)
            if account_id is None or link.account_id == account_id
        ]
        for link in changed:
            click.echo(
                f"Account {link.account_id}: changed since the seal of {seal['sealed_at']}: {link.reason}.",
                err=True,
            )
    if broken or changed:
        sys.exit(1)
    sealed = " and as sealed" if seal_file is not None else ""
    click.echo(f"Service record intact{sealed} for {len(ids)} account(s).")


@click.command("record-seal")
@with_appcontext
@click.option(
    "--output",
    "-o",
    type=click.File("w"),
    default="-",
    show_default=True,
    help="Where to write the seal (a file to keep outside the database).",
)
def record_seal_command(output: TextIO) -> None:
    """Print a seal: every account's service record head, signed with RECORD_KEY, with its
    time. Keep it outside the database; `verify-record --seal FILE` names every account whose
    history was cut or rewritten since."""
    seal = record.make_seal(get_db())
    json.dump(seal, output, separators=(",", ":"))
    output.write("\n")
