"""Reminders: who gets one and when, the cap, the rotated link, and the record entry."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import links, record
from portal.db import get_db
from portal.models import Account, OutboxEmail
from portal.onboarding import send_welcome
from portal.outbox import ISO_DATETIME
from portal.reminders import ReminderSent, send_due_reminders
from tests.conftest import run_at_once

LINK = re.compile(r"http://localhost/welcome/t/([\w.-]+)")
DAY = timedelta(days=1)


def _remind(runner, at: datetime) -> str:  # type: ignore[no-untyped-def]
    result = runner.invoke(args=["send-reminders", "--now", at.isoformat()])
    assert result.exit_code == 0, result.output
    return result.output


def _welcomed(db: Session, make_account, **changes) -> Account:  # type: ignore[no-untyped-def]
    account = make_account(**changes)
    send_welcome(db, account, "system")
    db.commit()
    return account


def _emails(db: Session, account: Account, kind: str) -> list[OutboxEmail]:
    return list(
        db.scalars(
            select(OutboxEmail)
            .where(OutboxEmail.account_id == account.id, OutboxEmail.kind == kind)
            .order_by(OutboxEmail.id)
        )
    )


def _reminder_entries(db: Session, account: Account) -> list[dict]:
    return [e.details for e in record.entries_for(db, account.id) if e.event == "reminder_sent"]


def _token(email: OutboxEmail) -> str:
    return LINK.search(email.text_body).group(1)


def test_not_opened_after_n_days_gets_one_reminder_with_a_new_link(app, db, make_account, runner):
    account = _welcomed(db, make_account)
    old_token = _token(_emails(db, account, "welcome")[0])
    due = account.link_sent_at + timedelta(days=app.config["REMINDER_NOT_OPENED_DAYS"])

    assert "Queued 0 reminder(s)." in _remind(runner, due - timedelta(seconds=1))
    output = _remind(runner, due)
    assert f"reminder 1 (not_opened) for account {account.id}" in output
    assert "Queued 0 reminder(s)." in _remind(runner, due)  # counted from this reminder now

    db.refresh(account)
    assert (account.reminders_sent, account.last_reminder_at) == (1, due)
    assert _reminder_entries(db, account) == [
        {"number": 1, "reason": "not_opened", "email_id": _emails(db, account, "reminder")[0].id}
    ]
    [reminder] = _emails(db, account, "reminder")
    assert reminder.to_address == account.customer.email
    assert "a reminder to confirm" in reminder.subject
    assert links.check_token(db, old_token).status is links.LinkStatus.INVALID
    assert links.check_token(db, _token(reminder)).status is links.LinkStatus.OK
    assert record.verify_chain(db, account.id) is None


def test_a_reminder_is_delivered_with_both_parts_saying_the_old_link_is_gone(app, db, make_account, runner):
    account = _welcomed(db, make_account)
    _remind(runner, account.link_sent_at + 3 * DAY)
    assert runner.invoke(args=["outbox", "send"]).exit_code == 0

    [reminder] = _emails(db, account, "reminder")
    [path] = Path(app.config["MAIL_OUTBOX_DIR"]).glob(f"{reminder.id:08d}-*.eml")
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for part in (text, html):
        assert "earlier link no longer works" in part
        assert LINK.search(text).group(0) in part
        assert account.customer.name in part


def test_not_finished_after_m_days_counted_from_the_latest_nudge(app, db, make_account, runner):
    account = _welcomed(db, make_account)
    sent = account.link_sent_at
    account.status, account.link_opened_at = "in_progress", sent + DAY
    db.commit()
    wait = timedelta(days=app.config["REMINDER_NOT_FINISHED_DAYS"])

    assert "Queued 0" in _remind(runner, sent + wait)  # opened a day later: not yet
    assert f"reminder 1 (not_finished) for account {account.id}" in _remind(runner, sent + DAY + wait)
    [reminder] = _emails(db, account, "reminder")
    assert "finish confirming" in reminder.subject
    assert "have not finished yet" in reminder.text_body
    assert _reminder_entries(db, account)[0]["reason"] == "not_finished"


def test_reminders_stop_at_the_cap(app, db, make_account, runner):
    cap = app.config["REMINDER_MAX"]
    account = _welcomed(db, make_account)
    now = account.link_sent_at
    for _ in range(cap + 2):  # time moves past the wait every run
        now += timedelta(days=app.config["REMINDER_NOT_OPENED_DAYS"])
        _remind(runner, now)

    db.refresh(account)
    assert account.reminders_sent == cap
    assert [d["number"] for d in _reminder_entries(db, account)] == list(range(1, cap + 1))
    assert len(_emails(db, account, "reminder")) == cap


def test_signed_deleted_draft_and_just_sent_accounts_get_none(app, db, make_account, runner):
    just_sent = _welcomed(db, make_account)
    signed = _welcomed(db, make_account)
    deleted = _welcomed(db, make_account)
    draft = make_account()
    signed.status, signed.signed_at = "signed", signed.link_sent_at
    deleted.deleted_at = deleted.link_sent_at
    db.commit()
    quiet = [signed, deleted, draft]
    before = {a.id: (a.link_nonce_hash, len(record.entries_for(db, a.id))) for a in quiet}

    assert "Queued 0" in _remind(runner, just_sent.link_sent_at + DAY)
    assert f"for account {just_sent.id} " in _remind(runner, just_sent.link_sent_at + 30 * DAY)

    for account in quiet:
        db.refresh(account)
        assert (account.reminders_sent, account.last_reminder_at) == (0, None)
        assert (account.link_nonce_hash, len(record.entries_for(db, account.id))) == before[account.id]
        assert _emails(db, account, "reminder") == []


def test_two_runs_at_once_remind_each_account_once(app, db, make_account):
    accounts = [_welcomed(db, make_account) for _ in range(3)]
    at = max(a.link_sent_at for a in accounts) + 3 * DAY
    results = _run_at_once(app, 2, at)

    assert sorted(r.account_id for run in results for r in run) == [a.id for a in accounts]
    for account in accounts:
        db.refresh(account)
        assert account.reminders_sent == 1
        assert len(_emails(db, account, "reminder")) == 1


def _run_at_once(app: Flask, count: int, at: datetime) -> list[list[ReminderSent]]:
    # get_db(), a session of this app context's own: rendering an email reads the company
    # through it, and a second session in one thread would wait on its own SQLite lock.
    return run_at_once(app, count, lambda: send_due_reminders(get_db(), now=at))


def test_a_bad_now_is_refused_and_changes_nothing(app, db, make_account, runner):
    account = _welcomed(db, make_account)
    nonce = account.link_nonce_hash
    result = runner.invoke(args=["send-reminders", "--now", "in three days"])
    assert result.exit_code == 2 and "is not an ISO date" in result.output
    db.refresh(account)
    assert (account.reminders_sent, account.link_nonce_hash) == (0, nonce)
    assert _emails(db, account, "reminder") == []


@pytest.mark.parametrize(
    "value", ["2030-01-01T09:00:00", "2030-01-01T09:00:00+00:00", "2030-01-01T02:00:00-07:00"]
)
def test_now_is_an_aware_time_and_utc_without_an_offset(value):
    parsed = ISO_DATETIME.convert(value, None, None)
    assert parsed.tzinfo is not None
    assert parsed == datetime(2030, 1, 1, 9, tzinfo=timezone.utc)
