"""`flask --app wsgi worker`: a deployment's background work in one long-running process.

- Delivers the outbox every few seconds (`--outbox-every`), and again at once while more is
  waiting, so a Monday-morning burst of welcome emails goes out back to back.
- Makes the day's plan invoices once a day (`--bill-at`, `flask bill` for today), before
  autopay charges them.
- Queues reminders once a day (`--reminders-at`), and charges autopay once a day
  (`--autopay-at`, when it also warns customers whose saved card expires next month) by
  running the `charge-autopay` command in this process, so a scheduled run
  and a run by hand are the same code and print the same lines.
- Asks each customer, the day after their first visit, whether it matched what was agreed
  (`--feedback-at`, once a day; one email per account ever, see portal/first_visit.py).
- Puts promised work past its due date in the office inbox (`--overdue-every`), each task
  once (see portal/follow_through.py).
- Emails the admins a seal of the service record every Monday (`--seal-at`), so a signed copy
  of every account's chain head lives outside the database (see `verify-record --seal`).
- Stops cleanly on SIGTERM or SIGINT: the task under way finishes its current small batch
  (an email being sent is sent and recorded), then the process exits 0. A second signal stops
  at once with exit code 1; an email that was then being sent stays claimed until its lease runs
  out and is sent again with the same Message-ID (see portal/outbox.py).

Several workers may run at once, also on several hosts: the outbox claims with
`FOR UPDATE SKIP LOCKED` (the write lock on SQLite), reminders lock each account and autopay
each invoice, so nothing is done twice. A task that fails (database or mail server down) is
logged and tried again after `--retry-after` seconds, doubling while it keeps failing (never
later than its next regular turn); the worker itself keeps running.
"""

from __future__ import annotations

import calendar
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from portal import follow_through
from portal.company import company_today
from portal.db import get_db, unit_of_work, utcnow
from portal.decisions import send_due_decision_emails
from portal.first_visit import send_due as send_due_feedback
from portal.outbox import FAILED, SENT, deliver_pending
from portal.payments import cards
from portal.payments.cli import bill_command, charge_autopay_command
from portal.record_seal import email_seal_to_admins
from portal.reminders import send_due_reminders

# Emails claimed per outbox call: the most a stop request waits for (besides one SMTP timeout).
OUTBOX_BATCH = 5
# Emails per outbox run; when more are waiting the run repeats at once, after any other task
# that has come due, so a long burst does not hold up the daily tasks.
OUTBOX_RUN = 100
# The longest the loop sleeps at a time, so a changed wall clock is noticed soon.
MAX_SLEEP = 30.0


class Schedule:
    """When a task is next due, given when it last finished (or the start)."""

    def next_after(self, moment: datetime) -> datetime:
        raise NotImplementedError


@dataclass(frozen=True)
class Every(Schedule):
    seconds: float

    def next_after(self, moment: datetime) -> datetime:
        return moment + timedelta(seconds=self.seconds)

    def __str__(self) -> str:
        return f"every {self.seconds:g} s"


@dataclass(frozen=True)
class DailyAt(Schedule):
    at: time
    zone: ZoneInfo

    def next_after(self, moment: datetime) -> datetime:
        local = moment.astimezone(self.zone)
        candidate = datetime.combine(local.date(), self.at, tzinfo=self.zone)
        if candidate <= local:
            candidate = datetime.combine(local.date() + timedelta(days=1), self.at, tzinfo=self.zone)
        return candidate.astimezone(timezone.utc)

    def __str__(self) -> str:
        return f"daily at {self.at:%H:%M:%S} {self.zone.key}"


@dataclass(frozen=True)
class WeeklyAt(Schedule):
    weekday: int  # Monday is 0
    at: time
    zone: ZoneInfo

    def next_after(self, moment: datetime) -> datetime:
        daily = DailyAt(self.at, self.zone)
        candidate = daily.next_after(moment)
        while candidate.astimezone(self.zone).weekday() != self.weekday:
            candidate = daily.next_after(candidate)
        return candidate

    def __str__(self) -> str:
        return f"weekly on {calendar.day_name[self.weekday]} at {self.at:%H:%M:%S} {self.zone.key}"


@dataclass(frozen=True)
class Outcome:
    summary: str
    more: bool = False  # run again at once: work is still waiting


@dataclass
class Task:
    name: str
    run: Callable[[threading.Event], Outcome]  # inside an app context of its own
    schedule: Schedule
    due: datetime
    failures: int = 0  # in a row; the wait before the next try doubles with each


class Worker:
    """Runs each task when it is due until `stop` is set; one task at a time."""

    def __init__(
        self,
        app: Flask,
        tasks: list[Task],
        *,
        retry_after: float = 60.0,
        clock: Callable[[], datetime] = utcnow,
        echo: Callable[[str], None] = click.echo,
    ) -> None:
        self.app = app
        self.tasks = tasks
        self.retry_after = timedelta(seconds=retry_after)
        self.clock = clock
        self.echo = echo
        self.stop = threading.Event()
        self.current: str | None = None

    def run(self) -> None:
        while not self.stop.is_set():
            for task in sorted(self.tasks, key=lambda t: t.due):
                if self.stop.is_set():
                    break
                if task.due <= self.clock():
                    self.run_task(task)
            if not self.tasks:
                self.stop.wait(MAX_SLEEP)
                continue
            wait = (min(t.due for t in self.tasks) - self.clock()).total_seconds()
            if wait > 0:
                self.stop.wait(min(wait, MAX_SLEEP))

    def run_task(self, task: Task) -> None:
        self.current = task.name
        try:
            with self.app.app_context():
                outcome = task.run(self.stop)
        except Exception:  # noqa: BLE001 - logged; the task is tried again later
            task.failures += 1
            now = self.clock()
            wait = min(
                self.retry_after * 2 ** min(task.failures - 1, 10), task.schedule.next_after(now) - now
            )
            task.due = now + wait
            self.app.logger.exception(
                "worker: %s failed (%d in a row); trying again in %s s",
                task.name,
                task.failures,
                f"{wait.total_seconds():g}",
            )
            return
        finally:
            self.current = None
        task.failures = 0
        if outcome.summary:
            self.echo(f"{self.clock():%Y-%m-%d %H:%M:%S} UTC {task.name}: {outcome.summary}")
        task.due = self.clock() if outcome.more else task.schedule.next_after(self.clock())

    def request_stop(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop.is_set():
            raise SystemExit(1)  # asked twice: stop now
        self.stop.set()
        name = signal.Signals(signum).name
        doing = f"; finishing {self.current} first" if self.current else ""
        self.echo(f"{name} received: stopping{doing} (send it again to stop at once)")


# -- the tasks ------------------------------------------------------------------------------


def deliver_outbox(stop: threading.Event) -> Outcome:
    """Deliver due emails a small batch at a time until none is left or a stop is asked for."""
    with unit_of_work() as batch:  # decisions waiting long enough become one email per account
        send_due_decision_emails(batch)
    session = get_db()
    sent = retry = failed = 0
    while True:  # until the queue is empty, a stop is asked for, or OUTBOX_RUN emails
        report = deliver_pending(session, limit=OUTBOX_BATCH)
        sent += report.count(SENT)
        retry += report.count("retry")
        failed += report.count(FAILED)
        stopped = report.stopped
        if stopped or len(report.deliveries) < OUTBOX_BATCH:
            return Outcome(_outbox_summary(sent, retry, failed, stopped))
        if stop.is_set() or sent + retry + failed >= OUTBOX_RUN:
            return Outcome(_outbox_summary(sent, retry, failed, ""), more=True)


def _outbox_summary(sent: int, retry: int, failed: int, stopped: str) -> str:
    if not (sent or retry or failed or stopped):
        return ""  # nothing was due: stay quiet
    text = f"delivered {sent}, to retry {retry}, failed {failed}"
    return text + (f" (stopped early: {stopped})" if stopped else "")


def seal_record(_stop: threading.Event) -> Outcome:
    with unit_of_work() as session:
        count = email_seal_to_admins(session)
    return Outcome(f"record seal emailed to {count} admin(s)")


def queue_reminders(_stop: threading.Event) -> Outcome:
    sent = send_due_reminders(get_db())
    return Outcome(f"queued {len(sent)} reminder(s)")


def warn_expiring_cards(_stop: threading.Event) -> Outcome:
    sent = cards.warn_expiring_cards(get_db())
    return Outcome(f"warned {len(sent)} customer(s) of a card expiring next month")


def ask_feedback(_stop: threading.Event) -> Outcome:
    asked = send_due_feedback(get_db())
    return Outcome(f"queued {len(asked)} first-visit feedback email(s)")


def bill_plans(_stop: threading.Event) -> Outcome:
    """The `bill` command for today, run here."""
    bill_command.main(args=[], prog_name="flask bill", standalone_mode=False)
    return Outcome("done")


def raise_overdue_work(_stop: threading.Event) -> Outcome:
    """Promised work past its due date, to the office inbox: each task once, so running this
    every hour (or on two workers) raises nothing twice."""
    with unit_of_work() as session:
        count = follow_through.raise_overdue(session, company_today())
    return Outcome(f"{count} overdue promise(s) to the office" if count else "")


def charge_autopay(_stop: threading.Event) -> Outcome:
    """The `charge-autopay` command, run here; its lines go to the worker's output."""
    try:
        charge_autopay_command.main(args=[], prog_name="flask charge-autopay", standalone_mode=False)
    except SystemExit as exit_:  # the command's way of saying "run me again later"
        if exit_.code not in (0, None):
            raise RuntimeError(f"charge-autopay exited with {exit_.code}") from None
    return Outcome("done")


# -- the command ----------------------------------------------------------------------------


class TimeOfDay(click.ParamType[time | None, Any]):
    """HH:MM or HH:MM:SS, or 'off'."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> time | None:
        if value is None or isinstance(value, time):
            return value
        text = str(value).strip().lower()
        if text in ("off", "never", "none", ""):
            return None
        try:
            return time.fromisoformat(text)
        except ValueError:
            self.fail(f"{value!r} is not a time of day like 09:00, or 'off'", param, ctx)


class TimeZoneName(click.ParamType[ZoneInfo, Any]):
    name = "zone"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> ZoneInfo:
        if isinstance(value, ZoneInfo):
            return value
        try:
            return ZoneInfo(str(value))
        except (ZoneInfoNotFoundError, ValueError):
            self.fail(f"{value!r} is not a time zone name like UTC or America/Phoenix", param, ctx)


def build_tasks(
    now: datetime,
    outbox_every: float,
    reminders_at: time | None,
    autopay_at: time | None,
    zone: ZoneInfo,
    seal_at: time | None = None,
    feedback_at: time | None = None,
    bill_at: time | None = None,
    overdue_every: float | None = 3600.0,
) -> list[Task]:
    tasks = [Task("outbox", deliver_outbox, Every(outbox_every), now)]  # at once on start
    if overdue_every:  # at once on start too: a worker down overnight catches up
        tasks.append(Task("overdue work", raise_overdue_work, Every(overdue_every), now))
    schedules: list[tuple[str, Callable[[threading.Event], Outcome], Schedule | None]] = [
        ("bill", bill_plans, DailyAt(bill_at, zone) if bill_at else None),
        ("reminders", queue_reminders, DailyAt(reminders_at, zone) if reminders_at else None),
        ("autopay", charge_autopay, DailyAt(autopay_at, zone) if autopay_at else None),
        ("expiring cards", warn_expiring_cards, DailyAt(autopay_at, zone) if autopay_at else None),
        ("record seal", seal_record, WeeklyAt(SEAL_WEEKDAY, seal_at, zone) if seal_at else None),
        ("first-visit feedback", ask_feedback, DailyAt(feedback_at, zone) if feedback_at else None),
    ]
    for name, run, schedule in schedules:
        if schedule is not None:
            tasks.append(Task(name, run, schedule, schedule.next_after(now)))
    return tasks


SEAL_WEEKDAY = 0  # Monday: the seal of the week before reaches the admins as the week starts


@click.command("worker")
@click.option(
    "--outbox-every",
    type=click.FloatRange(min=0.05),
    default=10.0,
    show_default=True,
    envvar="WORKER_OUTBOX_EVERY",
    help="Seconds between outbox deliveries.",
)
@click.option(
    "--bill-at",
    type=TimeOfDay(),
    default="07:00",
    show_default=True,
    envvar="WORKER_BILL_AT",
    help="Time of day to make the day's plan invoices (before autopay), or 'off'.",
)
@click.option(
    "--reminders-at",
    type=TimeOfDay(),
    default="09:00",
    show_default=True,
    envvar="WORKER_REMINDERS_AT",
    help="Time of day to queue reminders, or 'off'.",
)
@click.option(
    "--autopay-at",
    type=TimeOfDay(),
    default="10:00",
    show_default=True,
    envvar="WORKER_AUTOPAY_AT",
    help="Time of day to charge autopay, or 'off'.",
)
@click.option(
    "--seal-at",
    type=TimeOfDay(),
    default="06:00",
    show_default=True,
    envvar="WORKER_SEAL_AT",
    help="Time on Mondays to email the admins the service record seal, or 'off'.",
)
@click.option(
    "--feedback-at",
    type=TimeOfDay(),
    default="10:30",
    show_default=True,
    envvar="WORKER_FEEDBACK_AT",
    help="Time of day to ask about yesterday's first visits, or 'off'.",
)
@click.option(
    "--overdue-every",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    envvar="WORKER_OVERDUE_EVERY",
    help="Seconds between sweeps for overdue promised work (0: off).",
)
@click.option(
    "--timezone",
    "zone",
    type=TimeZoneName(),
    default="UTC",
    show_default=True,
    envvar="WORKER_TIMEZONE",
    help="The zone of those times of day.",
)
@click.option(
    "--retry-after",
    type=click.FloatRange(min=0.05),
    default=60.0,
    show_default=True,
    envvar="WORKER_RETRY_AFTER",
    help="Seconds before a failed task is tried again.",
)
@with_appcontext
def worker_command(
    outbox_every: float,
    bill_at: time | None,
    reminders_at: time | None,
    autopay_at: time | None,
    seal_at: time | None,
    feedback_at: time | None,
    overdue_every: float,
    zone: ZoneInfo,
    retry_after: float,
) -> None:
    """Run the background work until stopped: deliver the outbox every few seconds, make the
    day's plan invoices, queue reminders, ask about yesterday's first visits and charge autopay
    once a day, send overdue promised work to the office inbox every hour, email the admins the
    record seal once a week.
    SIGTERM or Ctrl-C stops it cleanly (exit 0) after the task under way; several workers may run at once."""
    # Flask types current_app as Flask; it is a LocalProxy, and the worker needs the app itself.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    tasks = build_tasks(
        utcnow(),
        outbox_every,
        reminders_at,
        autopay_at,
        zone,
        seal_at,
        feedback_at,
        bill_at,
        overdue_every or None,
    )
    worker = Worker(app, tasks, retry_after=retry_after)
    previous = {sig: signal.signal(sig, worker.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        click.echo("Worker started: " + "; ".join(f"{t.name} {t.schedule}" for t in tasks))
        worker.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("Worker stopped.")


COMMANDS: list[click.Command] = [worker_command]
