"""Payment commands, under `flask --app wsgi`: bill, charge-autopay and reconcile-stripe."""

from __future__ import annotations

import sys
import time
from datetime import datetime

import click
from flask.cli import with_appcontext

from portal.company import company_today
from portal.db import get_db
from portal.models import StripeEvent
from portal.payments import autopay, demo, events, plan_billing
from portal.payments.gateway import PaymentProviderError, get_gateway


@click.command("charge-autopay")
@with_appcontext
def charge_autopay_command() -> None:
    """Charge every open invoice of a card-autopay account to its saved card (off-session).

    Declines and cards needing authentication email the customer a pay link and are tried again
    on the retry days in Settings; after the last one the office gets a follow-up. Exits 1 when Stripe
    could not be reached or answered with an error (run it again later: nothing is charged twice).
    """
    gateway = get_gateway()
    if gateway.off:
        raise click.ClickException(
            "Online payment is off (production without STRIPE_SECRET_KEY): nothing was charged."
        )
    session = get_db()
    results = autopay.run(session, gateway)
    for result in results:
        if gateway.demo and result.payment_intent is not None:
            demo.deliver(demo.autopay_events(result.payment_intent))
        click.echo(
            f"{result.invoice_number}: {result.outcome.replace('_', ' ')}"
            + (f" ({result.message})" if result.message else "")
        )
    counts = {
        outcome: sum(1 for r in results if r.outcome == outcome)
        for outcome in ("submitted", "declined", "authentication_required", "stripe_error", "skipped")
    }
    click.echo(
        f"Autopay: {counts['submitted']} charged, {counts['declined']} declined, "
        f"{counts['authentication_required']} need the customer, {counts['stripe_error']} Stripe "
        f"errors, {counts['skipped']} skipped."
    )
    if counts["stripe_error"]:
        sys.exit(1)


@click.command("reconcile-stripe")
@click.option(
    "--days",
    type=click.IntRange(1, 30),
    default=30,
    show_default=True,
    help="How far back to look (Stripe keeps events for 30 days).",
)
@click.option("--dry-run", is_flag=True, help="Only list the events; apply nothing.")
@with_appcontext
def reconcile_stripe_command(days: int, dry_run: bool) -> None:
    """List events Stripe could not deliver to the webhook and apply the ones not yet processed.

    Events are fetched from the Stripe API with the secret key and applied by the same code as
    the webhook, so each still takes effect once.
    """
    gateway = get_gateway()
    if gateway.demo or gateway.off:
        raise click.ClickException(
            f"{'Demo mode' if gateway.demo else 'Online payment is off'} "
            "(no STRIPE_SECRET_KEY): there is no Stripe account to reconcile."
        )
    session = get_db()
    since = int(time.time()) - days * 86400
    failed = applied = seen = 0
    try:
        for event in gateway.undelivered_events(since):
            seen += 1
            label = f"{event['id']} {event['type']}"
            if session.get(StripeEvent, event["id"]) is not None:
                click.echo(f"{label}: already processed")
                continue
            if dry_run:
                click.echo(f"{label}: missing (dry run, not applied)")
                continue
            try:
                outcome = events.receive(session, event, gateway)
            except Exception as exc:  # noqa: BLE001 - reported, counted, and the exit code says so
                failed += 1
                click.echo(f"{label}: FAILED ({exc})", err=True)
                continue
            applied += outcome != events.DUPLICATE
            click.echo(f"{label}: {outcome}")
    except PaymentProviderError as error:
        raise click.ClickException(f"Stripe: {error.details.get('message') or error.message}") from error
    click.echo(
        f"{seen} undelivered event(s) in the last {days} days; {applied} applied now"
        + (f", {failed} failed" if failed else "")
        + "."
    )
    if failed:
        sys.exit(1)


@click.command("bill")
@click.option(
    "--on",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The billing date, YYYY-MM-DD (default: today in the company's time zone).",
)
@with_appcontext
def bill_command(day: datetime | None) -> None:
    """Make the plan invoices due on a date: each signed account's plan charge for the period
    billed that day (Settings, "Plan billing"), with confirmed promotions taken off, emailed
    with a pay link. Running it again, or on two workers at once, makes no second invoice for
    a period; card-autopay accounts are charged by `charge-autopay` on the due date."""
    when = day.date() if day is not None else company_today()
    report = plan_billing.bill(when)
    click.echo(
        f"Billing {when.isoformat()}: {report.created} invoice(s) created, "
        f"{report.already} already invoiced for the period, "
        f"{report.nothing_to_bill} per-visit plan(s) without visits in the period."
    )


COMMANDS: list[click.Command] = [charge_autopay_command, reconcile_stripe_command, bill_command]
