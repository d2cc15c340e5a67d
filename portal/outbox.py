"""Delivering the outbox: claim a batch, send it outside any transaction, record each outcome.

An email moves `pending` → `sending` (claimed, with a lease) → `sent`; or back to `pending` with a
later `next_attempt_at` (backoff); or `failed`, with an `email_failed` entry in the account's
service record so staff see it.

Claiming is one short transaction that sets `status='sending'` and `locked_until = now + lease`.
On PostgreSQL it reads with `FOR UPDATE SKIP LOCKED`, so several workers take disjoint batches
without waiting on each other; on SQLite the claim is a unit of work, whose transaction begins with
BEGIN IMMEDIATE, so claimers queue for the one write lock and each sees the earlier claims.

Delivery is at least once, and exactly once unless a worker dies at the wrong moment:
- An email is marked `sent` only after the server accepted it, in a transaction of its own, and
  only while this worker still holds its lease (`locked_until` unchanged acts as a fencing token).
- A worker that dies after the server accepted an email but before that commit leaves the email
  `sending`. When the lease runs out another worker sends it again, with the same Message-ID (fixed
  at the first claim), so the copy can be recognised. SMTP has no idempotency key, so this window,
  one email per crashed worker, cannot be closed; commits after every email keep it that small.
- Nothing is lost: an email is `sending` only while a lease runs, and an expired lease can be
  claimed again. The interrupted try counts as an attempt, so an email that kills every worker
  ends `failed` instead of looping.
- A worker slower than its lease hands the rest of its batch back before the lease can run out;
  if it loses an email anyway, its final write matches no row and the email is reported `lost`.
  Leases are read on the workers' own clocks: hosts running workers must keep their clocks in
  sync (skew far below half of OUTBOX_LEASE_SECONDS, which must itself be far above SMTP_TIMEOUT).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Any, Protocol

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from portal import decisions, record, webhooks
from portal.company import email_reply_to, email_sender
from portal.config import ConfigError
from portal.db import get_db, unit_of_work, utcnow
from portal.files import write_atomically
from portal.models import Account, OutboxEmail

log = logging.getLogger(__name__)

PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"
# Wait after the 1st, 2nd, ... failed attempt; the last step repeats until OUTBOX_MAX_ATTEMPTS.
BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=12),
)
# Small batches keep a lease short and let parallel workers share the queue.
CLAIM_BATCH = 10


class DeliveryError(Exception):
    """A send that did not go through.

    `permanent`: retrying cannot help (a 5xx refusal of the recipient or the message).
    `server`: the server or our settings are at fault rather than this email (unreachable, login
    or sender refused), so the other emails would fail the same way: stop the run.
    """

    def __init__(self, reason: str, *, permanent: bool = False, server: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.server = server


# -- building and transporting messages ------------------------------------------------------


def new_message_id(email: OutboxEmail, sender: str) -> str:
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    return make_msgid(idstring=f"outbox-{email.id}", domain=domain)


def build_message(email: OutboxEmail, sender: str, reply_to: str = "") -> EmailMessage:
    """The MIME message: a text part with an HTML alternative, and any attachments."""
    message = EmailMessage()
    try:
        message["From"] = sender
        if reply_to:
            message["Reply-To"] = reply_to
        message["To"] = email.to_address
        message["Subject"] = email.subject
        # When the portal wrote it, so every retry carries the same date.
        message["Date"] = format_datetime(email.created_at, usegmt=True)
        message["Message-ID"] = email.message_id
    except ValueError as error:  # e.g. a line break in a header: no retry will fix it
        raise DeliveryError(f"cannot build the message: {error}", permanent=True) from error
    message.set_content(email.text_body)
    message.add_alternative(email.html_body, subtype="html")
    for attachment in email.attachments or ():
        maintype, _, subtype = attachment["content_type"].partition("/")
        message.add_attachment(
            base64.b64decode(attachment["data"]),
            maintype=maintype,
            subtype=subtype,
            filename=attachment["filename"],
        )
    return message


class Transport(Protocol):
    def send(self, email: OutboxEmail, message: EmailMessage) -> str:
        """Deliver or raise DeliveryError; returns the file written, if the transport writes one."""
        ...

    def close(self) -> None: ...


@dataclass
class FileTransport:
    """Development: each email becomes one `.eml` file, written whole or not at all."""

    directory: Path

    def send(self, email: OutboxEmail, message: EmailMessage) -> str:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        target = self.directory / f"{email.id:08d}-{stamp}.eml"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_atomically(target, message.as_bytes())
        except OSError as error:
            raise DeliveryError(f"cannot write {target}: {error}", server=True) from error
        return target.name

    def close(self) -> None:
        pass


class SmtpTransport:
    """One connection per run, opened on first use and reopened after an error."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self._smtp: smtplib.SMTP | None = None

    def send(self, email: OutboxEmail, message: EmailMessage) -> str:
        try:
            refused = self._connection().send_message(message)
        except OSError as error:  # smtplib's exceptions, sockets, timeouts and TLS alike
            self._drop()  # the SMTP conversation is in an unknown state now
            raise classify_smtp_error(error) from error
        if refused:  # only some recipients refused; we send to one, so this is defensive
            code, text = next(iter(refused.values()))
            raise DeliveryError(f"recipient refused: {code} {_text(text)}", permanent=code >= 500)
        return ""

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is None:
            config = self.config
            smtp = smtplib.SMTP(config["SMTP_HOST"], config["SMTP_PORT"], timeout=config["SMTP_TIMEOUT"])
            try:
                if config["SMTP_STARTTLS"]:
                    smtp.starttls(context=ssl.create_default_context())
                if config["SMTP_USER"]:
                    smtp.login(config["SMTP_USER"], config["SMTP_PASSWORD"] or "")
            except BaseException:
                smtp.close()
                raise
            self._smtp = smtp
        return self._smtp

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    def close(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(OSError):
                self._smtp.quit()
            self._drop()


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def classify_smtp_error(error: OSError) -> DeliveryError:
    """5xx about this recipient or message: permanent. 4xx: retry. Anything about the server,
    the connection or our login: retry later, and stop this run."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(error.recipients.values()))
        return DeliveryError(f"recipient refused: {code} {_text(text)}", permanent=code >= 500)
    if isinstance(error, smtplib.SMTPDataError):
        return DeliveryError(
            f"message refused: {error.smtp_code} {_text(error.smtp_error)}", permanent=error.smtp_code >= 500
        )
    if isinstance(error, smtplib.SMTPResponseException):  # sender, HELO or login refused
        return DeliveryError(f"server refused: {error.smtp_code} {_text(error.smtp_error)}", server=True)
    return DeliveryError(f"server unreachable: {error or type(error).__name__}", server=True)


def make_transport(config: Mapping[str, Any]) -> Transport:
    backend = config["MAIL_BACKEND"]
    if backend == "file":
        return FileTransport(Path(config["MAIL_OUTBOX_DIR"]))
    if backend == "smtp":
        return SmtpTransport(config)
    raise ConfigError(f"MAIL_BACKEND must be 'file' or 'smtp', not {backend!r}")


# -- the queue --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """What happened to one email in this run: sent, retry, failed or lost."""

    email_id: int
    kind: str
    to: str
    result: str
    detail: str = ""
    next_attempt_at: datetime | None = None


@dataclass
class DeliveryReport:
    deliveries: list[Delivery] = field(default_factory=list)
    stopped: str = ""  # why the run ended before the queue was empty, if it did

    def count(self, result: str) -> int:
        return sum(1 for delivery in self.deliveries if delivery.result == result)


def backoff(attempts: int) -> timedelta:
    return BACKOFF[min(attempts, len(BACKOFF)) - 1]


def claim(session: Session, *, now: datetime, limit: int, lease: timedelta, sender: str) -> list[OutboxEmail]:
    """Take up to `limit` due emails for this worker and commit, so the claim is visible."""
    due = or_(
        and_(OutboxEmail.status == PENDING, OutboxEmail.next_attempt_at <= now),
        and_(OutboxEmail.status == SENDING, OutboxEmail.locked_until <= now),
    )
    with unit_of_work(session):
        emails = session.scalars(
            select(OutboxEmail)
            .where(due)
            .order_by(OutboxEmail.next_attempt_at, OutboxEmail.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite renders nothing and needs nothing
            .execution_options(populate_existing=True)
        ).all()
        for email in emails:
            if email.status == SENDING:  # its worker died or stalled mid-delivery: that was a try
                email.attempts += 1
            email.status = SENDING
            email.locked_until = now + lease
            email.message_id = email.message_id or new_message_id(email, sender)
    return list(emails)


def release(session: Session, emails: list[OutboxEmail]) -> None:
    """Hand claimed but untried emails back to the queue, as they were."""
    with unit_of_work(session):
        for email in emails:
            ours = _reload_if_ours(session, email)
            if ours is not None:
                ours.status, ours.locked_until = PENDING, None


def _reload_if_ours(session: Session, email: OutboxEmail) -> OutboxEmail | None:
    """The row, locked and fresh, while this worker's lease on it holds; else None."""
    return session.scalars(
        select(OutboxEmail)
        .where(
            OutboxEmail.id == email.id,
            OutboxEmail.status == SENDING,
            OutboxEmail.locked_until == email.locked_until,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def _finish(session: Session, email: OutboxEmail, change: Callable[[OutboxEmail], Delivery]) -> Delivery:
    """Apply `change` in its own transaction if the lease still holds."""
    with unit_of_work(session):
        ours = _reload_if_ours(session, email)
        if ours is not None:
            return change(ours)
    log.warning("outbox email %s was taken over by another worker; it may go out twice", email.id)
    return Delivery(
        email.id,
        email.kind,
        email.to_address,
        "lost",
        "lease expired and another worker took it over; it may go out twice",
    )


def _mark_sent(now: datetime, file_name: str) -> Callable[[OutboxEmail], Delivery]:
    def change(email: OutboxEmail) -> Delivery:
        email.status, email.sent_at, email.locked_until = SENT, now, None
        email.file_name = file_name
        return Delivery(email.id, email.kind, email.to_address, SENT, file_name)

    return change


def _mark_failed(session: Session, reason: str) -> Callable[[OutboxEmail], Delivery]:
    def change(email: OutboxEmail) -> Delivery:
        fail(session, email, reason)
        return Delivery(email.id, email.kind, email.to_address, FAILED, reason)

    return change


def _mark_failed_try(
    session: Session, error: DeliveryError, now: datetime, max_attempts: int
) -> Callable[[OutboxEmail], Delivery]:
    def change(email: OutboxEmail) -> Delivery:
        email.attempts += 1
        if error.permanent or email.attempts >= max_attempts:
            return _mark_failed(session, error.reason)(email)
        email.status, email.locked_until, email.last_error = PENDING, None, error.reason[:2000]
        email.next_attempt_at = now + backoff(email.attempts)
        return Delivery(email.id, email.kind, email.to_address, "retry", error.reason, email.next_attempt_at)

    return change


def fail(session: Session, email: OutboxEmail, reason: str) -> None:
    """Give up on an email and say so in the account's service record, where staff look."""
    email.status, email.locked_until, email.last_error = FAILED, None, reason[:2000]
    account = session.get(Account, email.account_id) if email.account_id is not None else None
    if account is None:
        return
    tries = "attempt" if email.attempts == 1 else "attempts"
    record.append(
        session,
        account,
        event="email_failed",
        actor="system",
        note=f"The {email.kind} email to {email.to_address} could not be delivered "
        f"after {email.attempts} {tries}: {reason}",
        details={"email_id": email.id, "kind": email.kind, "attempts": email.attempts},
    )


@dataclass(frozen=True)
class _Run:
    session: Session
    transport: Transport
    clock: Callable[[], datetime]
    sender: str
    reply_to: str
    lease: timedelta
    max_attempts: int


def deliver_pending(
    session: Session, *, limit: int = 100, now: datetime | None = None, batch_size: int = CLAIM_BATCH
) -> DeliveryReport:
    """Deliver up to `limit` due emails and report each outcome.

    Runs its own short transactions (claim, then one per email): call it with none open.
    `now` fixes the clock, so tests can move time instead of sleeping.
    """
    config = current_app.config
    # The company's sending name and reply address, read when sending (a rename shows on the
    # emails still waiting); the claim's unit of work ends this read before it writes.
    sender, reply_to = email_sender(config["MAIL_FROM"]), email_reply_to()
    report = DeliveryReport()
    with contextlib.closing(make_transport(config)) as transport:
        run = _Run(
            session,
            transport,
            (lambda: now) if now is not None else utcnow,
            sender,
            reply_to,
            timedelta(seconds=config["OUTBOX_LEASE_SECONDS"]),
            config["OUTBOX_MAX_ATTEMPTS"],
        )
        while len(report.deliveries) < limit and not report.stopped:
            size = min(batch_size, limit - len(report.deliveries))
            batch = claim(session, now=run.clock(), limit=size, lease=run.lease, sender=run.sender)
            if not batch:
                break
            _deliver_batch(run, batch, report)
    return report


def _deliver_batch(run: _Run, batch: list[OutboxEmail], report: DeliveryReport) -> None:
    # Stop starting new sends at half the lease (measured on the real clock, whatever `now`
    # says), so a slow server cannot make the lease run out under us.
    deadline = time.monotonic() + run.lease.total_seconds() / 2
    for position, email in enumerate(batch):
        if time.monotonic() >= deadline:
            release(run.session, batch[position:])
            report.stopped = f"half the lease used; handed {len(batch) - position} back"
            return
        delivery, error = _deliver_one(run, email)
        report.deliveries.append(delivery)
        if error is not None and error.server:
            release(run.session, batch[position + 1 :])
            report.stopped = error.reason
            return


def _deliver_one(run: _Run, email: OutboxEmail) -> tuple[Delivery, DeliveryError | None]:
    if email.attempts >= run.max_attempts:  # only after interrupted tries: do not start another
        reason = "gave up; the last attempt was interrupted before the outcome was saved"
        return _finish(run.session, email, _mark_failed(run.session, reason)), None
    try:
        if email.kind == webhooks.KIND:  # an outgoing webhook: an HTTPS POST, not an email
            file_name = _post_webhook(email)
        else:
            file_name = run.transport.send(email, build_message(email, run.sender, run.reply_to))
    except DeliveryError as error:
        return _finish(
            run.session, email, _mark_failed_try(run.session, error, run.clock(), run.max_attempts)
        ), error
    return _finish(run.session, email, _mark_sent(run.clock(), file_name)), None


def _post_webhook(row: OutboxEmail) -> str:
    try:
        return webhooks.deliver(row, current_app.config)
    except webhooks.WebhookFailed as failed:
        # Never `server`: an integration's endpoint being down must not hold up the emails.
        raise DeliveryError(failed.reason, permanent=failed.permanent) from failed


# -- command line -----------------------------------------------------------------------------


class IsoDateTime(click.ParamType[datetime, Any]):
    """An ISO 8601 date and time; without an offset it is taken as UTC."""

    name = "datetime"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            parsed = value
        else:
            try:
                parsed = datetime.fromisoformat(str(value))
            except ValueError:
                self.fail(f"{value!r} is not an ISO date and time, e.g. 2026-05-01T09:00:00Z", param, ctx)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


ISO_DATETIME = IsoDateTime()


@click.group("outbox")
def outbox_group() -> None:
    """The email outbox: emails the portal queued, delivered by `outbox send`."""


@outbox_group.command("send")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Deliver at most this many emails in this run.",
)
@click.option(
    "--now",
    type=ISO_DATETIME,
    default=None,
    help="Pretend it is this time (ISO 8601, UTC without an offset); for testing.",
)
@with_appcontext
def send_command(limit: int, now: datetime | None) -> None:
    """Deliver pending emails by SMTP (or as .eml files with MAIL_BACKEND=file).

    Failed sends are retried later with backoff; after OUTBOX_MAX_ATTEMPTS, or at once when
    the server refuses the recipient for good, the email is marked failed and the account's
    service record says so. Safe to run from cron, and as several processes at once.
    """
    with unit_of_work() as session:  # decisions waiting long enough become one email per account
        decisions.send_due_decision_emails(session, now)
    try:
        report = deliver_pending(get_db(), limit=limit, now=now)
    except ConfigError as error:
        raise click.ClickException(str(error)) from error
    for delivery in report.deliveries:
        _echo_delivery(delivery)
    if report.stopped:
        click.echo(f"Stopped early: {report.stopped}. The rest stay queued.", err=True)
    summary = (
        f"Delivered {report.count(SENT)}, to retry {report.count('retry')}, failed {report.count(FAILED)}"
    )
    if report.count("lost"):
        summary += f", lost {report.count('lost')}"
    click.echo(summary + ".")


def _echo_delivery(delivery: Delivery) -> None:
    line = f"{delivery.result:<6} #{delivery.email_id} {delivery.kind} to {delivery.to}"
    if delivery.next_attempt_at is not None:
        line += f", next try {delivery.next_attempt_at:%Y-%m-%d %H:%M} UTC"
    if delivery.detail:
        line += f": {delivery.detail}"
    click.echo(line, err=delivery.result in (FAILED, "lost"))


COMMANDS: list[click.Command] = [outbox_group]
