"""Outbox delivery against a real SMTP server (aiosmtpd) and the file backend: every email once,
also with two senders; failures retried with backoff; permanent failures on the record."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal import links, record
from portal.db import utcnow
from portal.models import Account, CompanySettings, OutboxEmail, RecordEntry, StaffUser
from portal.onboarding import send_welcome
from portal.outbox import BACKOFF, DeliveryReport, claim, deliver_pending, release
from tests.conftest import count_rows, run_at_once
from tests.smtp_server import SmtpServer, smtp_server  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"http://localhost/welcome/t/([\w.-]+)")


@pytest.fixture
def smtp(app: Flask, smtp_server: SmtpServer) -> SmtpServer:
    """The app's outbox pointed at the test SMTP server (settings are read at each send)."""
    app.config.update(MAIL_BACKEND="smtp", SMTP_HOST=smtp_server.host, SMTP_PORT=smtp_server.port)
    return smtp_server


def _queue(db: Session, count: int, account: Account | None = None) -> list[OutboxEmail]:
    emails = [
        OutboxEmail(
            account_id=account.id if account else None,
            kind="test",
            to_address=f"customer{n}@example.com",
            subject=f"Test {n}",
            text_body=f"Text {n}",
            html_body=f"<p>HTML {n}</p>",
        )
        for n in range(count)
    ]
    db.add_all(emails)
    db.commit()
    return emails


def _send(db: Session, **kwargs: Any) -> DeliveryReport:
    db.commit()  # the outbox runs its own transactions
    return deliver_pending(db, **kwargs)


def _parts(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def _failed_entries(db: Session, account: Account) -> list[RecordEntry]:
    return [e for e in record.entries_for(db, account.id) if e.event == "email_failed"]


def test_welcome_email_reaches_smtp_with_both_parts_branding_and_a_working_link(
    smtp, app, db, make_account, runner
):
    db.add(
        CompanySettings(
            name="Blue Lagoon Pool Care", phone="+1 602 555 0100", email="hello@bluelagoon.example"
        )
    )
    db.commit()
    account = make_account()
    send_welcome(db, account, "system")
    db.commit()

    result = runner.invoke(args=["outbox", "send"])
    assert result.exit_code == 0, result.output
    assert "Delivered 1, to retry 0, failed 0." in result.output

    [message] = smtp.messages
    row = db.scalars(select(OutboxEmail)).one()
    assert (row.status, row.attempts, row.locked_until) == ("sent", 0, None)
    assert row.sent_at is not None
    assert message["Message-ID"] == row.message_id and row.message_id.startswith("<")
    assert message["To"] == account.customer.email
    # The company's name on the portal's own sending address; replies reach the company.
    assert message["From"] == "Blue Lagoon Pool Care <no-reply@localhost>"
    assert message["Reply-To"] == "hello@bluelagoon.example"
    assert message["Subject"] == "Blue Lagoon Pool Care: please confirm your pool service"
    assert message["Date"]
    text, html = _parts(message)
    for part in (text, html):
        assert "Blue Lagoon Pool Care" in part and "+1 602 555 0100" in part
        assert account.customer.name in part
    token = LINK.search(text).group(1)
    assert f"http://localhost/welcome/t/{token}" in html
    check = links.check_token(db, token)
    assert check.status is links.LinkStatus.OK and check.account.id == account.id


def test_file_backend_writes_one_eml_per_email_and_nothing_twice(app, db, make_account, runner):
    first, second = make_account(), make_account(customer_email="lee@example.com")
    for account in (first, second):
        send_welcome(db, account, "system")
    db.commit()
    outbox_dir = Path(app.config["MAIL_OUTBOX_DIR"])

    assert runner.invoke(args=["outbox", "send"]).exit_code == 0
    files = sorted(outbox_dir.iterdir())
    rows = db.scalars(select(OutboxEmail).order_by(OutboxEmail.id)).all()
    assert [f.name.split("-")[0] for f in files] == [f"{row.id:08d}" for row in rows]
    assert all(f.suffix == ".eml" for f in files)  # no temporary files left behind
    for path, row in zip(files, rows, strict=True):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert message["Message-ID"] == row.message_id and message["To"] == row.to_address
        text, html = _parts(message)
        assert LINK.search(text).group(0) in html
    assert {row.status for row in rows} == {"sent"}

    again = runner.invoke(args=["outbox", "send"])
    assert again.exit_code == 0 and "Delivered 0," in again.output
    assert sorted(outbox_dir.iterdir()) == files


def test_a_refusing_server_is_retried_with_backoff_then_delivered_once(smtp, app, db, make_account, runner):
    account = make_account()
    send_welcome(db, account, "system")
    smtp.refuse_next(1, 451, "Greylisted, try again later")
    start = utcnow()

    report = _send(db, now=start)
    row = db.scalars(select(OutboxEmail)).one()
    assert report.count("retry") == 1 and smtp.messages == []
    assert (row.status, row.attempts, row.locked_until) == ("pending", 1, None)
    assert row.next_attempt_at == start + BACKOFF[0] == start + timedelta(minutes=1)
    assert "451" in row.last_error and "Greylisted" in row.last_error

    assert _send(db, now=start + timedelta(seconds=59)).deliveries == []  # not due yet
    assert smtp.messages == []

    later = (start + timedelta(minutes=1)).isoformat()
    result = runner.invoke(args=["outbox", "send", "--now", later])
    assert result.exit_code == 0 and "Delivered 1," in result.output
    assert runner.invoke(args=["outbox", "send", "--now", later]).output.startswith("Delivered 0")
    [message] = smtp.messages
    db.refresh(row)
    assert message["Message-ID"] == row.message_id
    assert (row.status, row.attempts) == ("sent", 1)
    assert _failed_entries(db, account) == []


def test_a_permanent_refusal_fails_at_once_and_shows_on_the_record(smtp, app, db, make_account, runner):
    account = make_account()
    send_welcome(db, account, "system")
    db.commit()
    smtp.refuse_next(1, 550, "No such user here")

    result = runner.invoke(args=["outbox", "send"])
    assert result.exit_code == 0 and "failed 1." in result.output
    row = db.scalars(select(OutboxEmail)).one()
    assert (row.status, row.attempts) == ("failed", 1)
    assert "550" in row.last_error
    [entry] = _failed_entries(db, account)
    assert entry.actor == "system"
    assert entry.details == {"email_id": row.id, "kind": "welcome", "attempts": 1}
    assert "550 No such user here" in entry.note and account.customer.email in entry.note
    assert record.verify_chain(db, account.id) is None

    assert _send(db, now=utcnow() + timedelta(days=1)).deliveries == []  # never retried
    assert smtp.messages == []


def test_after_max_attempts_the_email_fails_and_the_record_says_so(smtp, app, db, make_account):
    app.config["OUTBOX_MAX_ATTEMPTS"] = 3
    account = make_account()
    [row] = _queue(db, 1, account)
    smtp.refuse_next(10, 421, "Service not available")
    now = utcnow()

    for attempt, wait in enumerate(BACKOFF[:2], start=1):
        assert _send(db, now=now).count("retry") == 1
        assert (row.status, row.attempts, row.next_attempt_at) == ("pending", attempt, now + wait)
        now += wait
    assert _send(db, now=now).count("failed") == 1
    assert (row.status, row.attempts) == ("failed", 3)
    [entry] = _failed_entries(db, account)
    assert entry.details["attempts"] == 3 and "421" in entry.note
    assert _send(db, now=now + timedelta(days=2)).deliveries == []
    assert smtp.messages == []


def test_an_unreachable_server_is_retried_and_the_rest_of_the_batch_waits(app, db):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    app.config.update(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=closed_port)
    first, *rest = _queue(db, 3)
    due = {email.id: email.next_attempt_at for email in rest}
    now = utcnow()

    report = _send(db, now=now)
    assert report.stopped.startswith("server unreachable")
    assert [d.result for d in report.deliveries] == ["retry"]
    assert (first.status, first.attempts, first.next_attempt_at) == ("pending", 1, now + BACKOFF[0])
    for email in rest:  # handed back untried: no attempt counted, no backoff
        assert (email.status, email.attempts, email.locked_until) == ("pending", 0, None)
        assert email.next_attempt_at == due[email.id]


def _run_workers(app: Flask, count: int, **kwargs: Any) -> list[DeliveryReport]:
    """`count` workers delivering at once, each with its own app context and connection."""

    def work() -> DeliveryReport:
        session = app.extensions["portal.sessionmaker"]()
        try:
            return deliver_pending(session, **kwargs)
        finally:
            session.close()

    return run_at_once(app, count, work)


def _assert_each_delivered_once(db: Session, smtp: SmtpServer, count: int) -> None:
    db.expire_all()
    rows = db.scalars(select(OutboxEmail)).all()
    seen = Counter(message["Message-ID"] for message in smtp.messages)
    assert len(smtp.messages) == count
    assert set(seen.values()) == {1}
    assert set(seen) == {row.message_id for row in rows}
    assert {row.status for row in rows} == {"sent"}


def test_two_senders_at_once_deliver_each_email_exactly_once(smtp, app, db):
    _queue(db, 20)
    smtp.handler.delay = 0.02  # each send takes a while, so the two workers overlap

    reports = _run_workers(app, 2, batch_size=3)
    _assert_each_delivered_once(db, smtp, 20)
    assert min(r.count("sent") for r in reports) > 0  # both did part of the work
    assert sum(r.count("sent") for r in reports) == 20


def test_two_outbox_send_processes_at_once_deliver_each_email_exactly_once(smtp, app, db, settings, tmp_path):
    _queue(db, 20)
    smtp.handler.delay = 0.05
    env = {
        **os.environ,
        "DATABASE_URL": settings["DATABASE_URL"],
        "MAIL_BACKEND": "smtp",
        "SMTP_HOST": smtp.host,
        "SMTP_PORT": str(smtp.port),
        "PORTAL_ENV": "development",
        "PORTAL_INSTANCE_PATH": str(tmp_path / "cli-instance"),
    }
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "outbox", "send"]
    workers = [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=120) for worker in workers]

    assert [worker.returncode for worker in workers] == [0, 0], outputs
    delivered = [int(re.search(r"Delivered (\d+),", out).group(1)) for out, _err in outputs]
    assert sum(delivered) == 20, delivered
    _assert_each_delivered_once(db, smtp, 20)


def test_an_expired_lease_is_claimed_again_and_sent_with_the_same_message_id(smtp, app, db):
    [row] = _queue(db, 1)
    lease = timedelta(seconds=app.config["OUTBOX_LEASE_SECONDS"])
    start = utcnow()
    dead_worker = app.extensions["portal.sessionmaker"]()
    [claimed] = claim(dead_worker, now=start, limit=10, lease=lease, sender="x@example.com")
    dead_worker.close()  # it dies before sending anything

    assert _send(db, now=start + lease - timedelta(seconds=1)).deliveries == []  # lease held
    report = _send(db, now=start + lease)
    assert report.count("sent") == 1
    [message] = smtp.messages
    db.refresh(row)
    assert message["Message-ID"] == claimed.message_id == row.message_id
    assert (row.status, row.attempts) == ("sent", 1)  # the interrupted try counts


def test_a_stalled_worker_cannot_touch_an_email_another_worker_took_over(app, db):
    [row] = _queue(db, 1)
    lease, start = timedelta(minutes=10), utcnow()
    stalled, current = (app.extensions["portal.sessionmaker"]() for _ in range(2))
    [old_claim] = claim(stalled, now=start, limit=1, lease=lease, sender="x@example.com")
    [new_claim] = claim(current, now=start + lease, limit=1, lease=lease, sender="x@example.com")

    release(stalled, [old_claim])  # wakes up late: its lease no longer matches the row
    db.commit()  # a fresh read below (SQLite keeps a snapshot per transaction)
    db.refresh(row)
    assert (row.status, row.locked_until) == ("sending", start + 2 * lease)
    release(current, [new_claim])
    db.commit()
    db.refresh(row)
    assert (row.status, row.locked_until) == ("pending", None)
    stalled.close()
    current.close()


def test_an_email_interrupted_on_every_attempt_ends_failed_without_another_try(smtp, app, db, make_account):
    app.config["OUTBOX_MAX_ATTEMPTS"] = 2
    account = make_account()
    [row] = _queue(db, 1, account)
    lease = timedelta(minutes=10)
    now = utcnow()
    for _ in range(2):  # two workers in a row die holding it
        dead_worker = app.extensions["portal.sessionmaker"]()
        assert len(claim(dead_worker, now=now, limit=1, lease=lease, sender="x@example.com")) == 1
        dead_worker.close()
        now += lease

    assert _send(db, now=now).count("failed") == 1
    db.refresh(row)
    assert (row.status, row.attempts) == ("failed", 2)
    assert "interrupted" in _failed_entries(db, account)[0].note
    assert smtp.messages == []


def test_a_worker_past_half_its_lease_hands_the_rest_back_untried(smtp, app, db):
    app.config["OUTBOX_LEASE_SECONDS"] = 0  # every lease is spent at once
    emails = _queue(db, 2)

    report = _send(db)
    assert report.deliveries == [] and "handed 2 back" in report.stopped
    assert [(e.status, e.attempts, e.locked_until) for e in emails] == [("pending", 0, None)] * 2
    assert smtp.messages == []


def test_the_state_change_and_its_email_are_one_transaction(db, make_account, make_staff, runner):
    staff = make_staff("office")
    account = make_account()
    before = (count_rows(db, OutboxEmail), count_rows(db, RecordEntry))

    send_welcome(db, account, "system")
    db.flush()
    assert count_rows(db, OutboxEmail) == before[0] + 1  # queued inside the transaction
    # A later write in the same transaction fails (duplicate staff email): all of it goes.
    db.add(StaffUser(email=staff.email, password_hash="x", role="office", session_token="dup"))
    with pytest.raises(IntegrityError):
        db.commit()
    db.rollback()

    assert (count_rows(db, OutboxEmail), count_rows(db, RecordEntry)) == before
    db.refresh(account)
    assert (account.status, account.link_sent_at) == ("draft", None)
    assert runner.invoke(args=["outbox", "send"]).output.startswith("Delivered 0")


def test_customer_text_is_escaped_in_the_html_part_and_plain_in_the_text_part(smtp, app, db, make_account):
    account = make_account(customer_name="<script>alert(1)</script> Reyes")
    send_welcome(db, account, "system")

    assert _send(db).count("sent") == 1
    text, html = _parts(smtp.messages[0])
    assert "<script>alert(1)</script> Reyes" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Reyes" in html
    assert "<script" not in html


@pytest.mark.parametrize(
    "args, message",
    [
        (["outbox", "send", "--now", "next tuesday"], "is not an ISO date"),
        (["outbox", "send", "--limit", "0"], "0 is not in the range"),
    ],
)
def test_bad_options_are_refused_and_change_nothing(app, db, runner, args, message):
    emails = _queue(db, 1)
    result = runner.invoke(args=args)
    assert result.exit_code == 2 and message in result.output
    db.refresh(emails[0])
    assert (emails[0].status, emails[0].attempts, emails[0].message_id) == ("pending", 0, "")


def test_an_unknown_mail_backend_is_refused_before_anything_is_claimed(app, db, runner):
    app.config["MAIL_BACKEND"] = "carrier-pigeon"
    [email] = _queue(db, 1)
    result = runner.invoke(args=["outbox", "send"])
    assert result.exit_code == 1 and "MAIL_BACKEND must be 'file' or 'smtp'" in result.output
    db.refresh(email)
    assert (email.status, email.locked_until, email.message_id) == ("pending", None, "")


def test_message_dates_and_ids_stay_the_same_on_every_retry(smtp, app, db):
    [row] = _queue(db, 1)
    smtp.refuse_next(1, 452, "Mailbox busy")
    now = utcnow()
    _send(db, now=now)
    first_id = row.message_id
    _send(db, now=now + BACKOFF[0])
    [message] = smtp.messages
    assert message["Message-ID"] == first_id
    assert message["Date"].datetime == row.created_at.replace(microsecond=0)
