"""Tampering with the service record behind the application's back is found: a cut tail, an
emptied record, a rewritten entry whose chain was recomputed without the record key, and, with
a seal kept outside the database, a history cut back together with its head."""

from __future__ import annotations

import contextvars
import json
import threading
from datetime import datetime, timedelta, timezone
from datetime import time as clock_time
from email import message_from_bytes, policy
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from portal import create_app, record
from portal.config import ConfigError
from portal.models import Account, RecordEntry
from portal.worker import build_tasks, seal_record
from tests.conftest import BACKEND
from tests.record_tampering import sha256_chain


def _lift_append_only(db: Session) -> None:
    if BACKEND == "postgres":
        db.execute(text("ALTER TABLE record_entries DISABLE TRIGGER record_entries_append_only"))
    else:
        db.execute(text("DROP TRIGGER record_entries_no_update"))
        db.execute(text("DROP TRIGGER record_entries_no_delete"))


def _restore_append_only(db: Session) -> None:
    if BACKEND == "postgres":
        db.execute(text("ALTER TABLE record_entries ENABLE TRIGGER record_entries_append_only"))
    else:
        for action in ("UPDATE", "DELETE"):
            db.execute(
                text(
                    f"CREATE TRIGGER record_entries_no_{action.lower()} BEFORE {action} ON record_entries "
                    "BEGIN SELECT RAISE(ABORT, 'service record entries are append-only'); END"
                )
            )


def _tamper(db: Session, sql: str, **params: object) -> None:
    _lift_append_only(db)
    db.execute(text(sql), params)
    _restore_append_only(db)
    db.commit()


@pytest.fixture
def paid_account(db, make_account):
    """An account whose record ends with a payment, beside an untouched one."""
    make_account()
    account = make_account()
    record.append(db, account, event="invoice_created", actor="staff:1", details={"invoice": 7})
    record.append(
        db, account, event="invoice_paid", actor="stripe", details={"invoice": 7, "amount_cents": 16500}
    )
    db.commit()
    return account


def _verify(runner, *args: str):
    return runner.invoke(args=["verify-record", *args])


def test_a_cut_tail_is_found(db, runner, paid_account):
    assert _verify(runner).exit_code == 0
    last_two = record.entries_for(db, paid_account.id)[-2:]
    assert last_two[-1].event == "invoice_paid"
    _tamper(db, "DELETE FROM record_entries WHERE id IN (:a, :b)", a=last_two[0].id, b=last_two[1].id)

    result = _verify(runner)
    assert result.exit_code == 1
    assert f"Account {paid_account.id}:" in result.output
    assert "missing" in result.output
    assert result.output.count("Account ") == 1  # the other account is not named


def test_an_emptied_record_is_found(db, runner, paid_account):
    # Items point at their entries: those links go first, as an attacker would do.
    _lift_append_only(db)
    db.execute(
        text("UPDATE promise_items SET latest_entry_id = NULL WHERE account_id = :a"), {"a": paid_account.id}
    )
    db.execute(text("DELETE FROM record_entries WHERE account_id = :a"), {"a": paid_account.id})
    _restore_append_only(db)
    db.commit()
    assert db.scalar(select(RecordEntry.id).where(RecordEntry.account_id == paid_account.id)) is None

    result = _verify(runner)
    assert result.exit_code == 1
    assert f"Account {paid_account.id}: broken at entry 0" in result.output


def test_a_rewritten_entry_with_a_recomputed_chain_is_found(db, runner, paid_account):
    first = record.entries_for(db, paid_account.id)[0]
    _lift_append_only(db)
    db.execute(text("UPDATE record_entries SET promised_value = 'Monday' WHERE id = :id"), {"id": first.id})
    db.expire_all()
    # Recompute every later hash with the public hash function, and the head with them.
    last = sha256_chain(db.connection(), paid_account.id)
    db.execute(text("UPDATE accounts SET record_head = :h WHERE id = :a"), {"h": last, "a": paid_account.id})
    _restore_append_only(db)
    db.commit()

    result = _verify(runner, str(paid_account.id))
    assert result.exit_code == 1
    assert f"Account {paid_account.id}: broken at entry 1: contents do not match" in result.output


def test_a_rotated_record_key_still_verifies_older_entries_and_an_unknown_key_does_not(
    app, db, runner, paid_account, settings
):
    old_entries = len(record.entries_for(db, paid_account.id))
    rotated = create_app(
        {**settings, "RECORD_KEY": "the-new-record-key", "RECORD_KEY_FALLBACKS": [settings["RECORD_KEY"]]}
    )
    with rotated.app_context():
        session = rotated.extensions["portal.sessionmaker"]()
        account = session.get(Account, paid_account.id)
        record.append(session, account, event="note", actor="staff:1", note="after the rotation")
        session.commit()
        entries = record.entries_for(session, paid_account.id)
        assert len({entry.key_id for entry in entries}) == 2
        assert record.verify_chain(session, paid_account.id) is None
        session.close()
    rotated.extensions["portal.engine"].dispose()

    forgotten = create_app({**settings, "RECORD_KEY": "the-new-record-key"})
    # A context of its own, as from a shell: the test's app context would serve the command otherwise.
    result = contextvars.Context().run(
        forgotten.test_cli_runner().invoke, args=["verify-record", str(paid_account.id)]
    )
    forgotten.extensions["portal.engine"].dispose()
    assert result.exit_code == 1, result.output
    assert "broken at entry 1: signed with an unknown record key" in result.output
    assert old_entries > 1


def test_production_refuses_to_start_without_a_record_key(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "x" * 64)
    monkeypatch.delenv("RECORD_KEY", raising=False)
    with pytest.raises(ConfigError, match="RECORD_KEY"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/prod.sqlite3"})
    monkeypatch.setenv("RECORD_KEY", "r" * 64)
    started = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/prod.sqlite3"})
    assert started.config["RECORD_KEY"] == "r" * 64 != started.config["SECRET_KEY"]


def test_a_seal_names_every_account_cut_since_even_with_its_head_reset(
    db, runner, paid_account, make_account, tmp_path
):
    untouched = make_account()
    seal_file = tmp_path / "seal.json"
    result = runner.invoke(args=["record-seal", "--output", str(seal_file)])
    assert result.exit_code == 0, result.output
    seal = json.loads(seal_file.read_text())
    assert seal["sealed_at"] and seal["signature"]
    assert {row[0] for row in seal["accounts"]} >= {paid_account.id, untouched.id}
    assert _verify(runner, "--seal", str(seal_file)).exit_code == 0

    # Cut the payment off and move the head back with it: the record alone looks whole.
    entries = record.entries_for(db, paid_account.id)
    _lift_append_only(db)
    db.execute(text("DELETE FROM record_entries WHERE id = :id"), {"id": entries[-1].id})
    db.execute(
        text("UPDATE accounts SET record_seq = :s, record_head = :h WHERE id = :a"),
        {"s": entries[-2].seq, "h": entries[-2].hash, "a": paid_account.id},
    )
    _restore_append_only(db)
    db.commit()
    assert _verify(runner).exit_code == 0

    result = _verify(runner, "--seal", str(seal_file))
    assert result.exit_code == 1
    assert f"Account {paid_account.id}: changed since the seal of {seal['sealed_at']}" in result.output
    assert f"Account {untouched.id}:" not in result.output


def test_entries_added_after_a_seal_are_not_a_change(db, runner, paid_account, tmp_path):
    seal_file = tmp_path / "seal.json"
    runner.invoke(args=["record-seal", "-o", str(seal_file)])
    record.append(db, db.get(Account, paid_account.id), event="note", actor="staff:1")
    db.commit()
    assert _verify(runner, "--seal", str(seal_file)).exit_code == 0


def test_a_forged_seal_is_refused(db, runner, paid_account, tmp_path):
    seal_file = tmp_path / "seal.json"
    runner.invoke(args=["record-seal", "-o", str(seal_file)])
    seal = json.loads(seal_file.read_text())
    seal["accounts"] = [row for row in seal["accounts"] if row[0] != paid_account.id]
    seal_file.write_text(json.dumps(seal))
    result = _verify(runner, "--seal", str(seal_file))
    assert result.exit_code == 1
    assert "does not verify" in result.output
    seal_file.write_text("not json")
    assert "not a record seal" in _verify(runner, "--seal", str(seal_file)).output


def test_the_weekly_seal_reaches_every_active_admin_as_a_file_that_verifies(
    app, db, runner, paid_account, make_staff, tmp_path
):
    admins = [make_staff("admin"), make_staff("admin")]
    gone = make_staff("admin")
    gone.active = False
    make_staff("office")
    db.commit()
    monday = datetime(2026, 12, 7, 6, 0, tzinfo=timezone.utc)
    tasks = {
        task.name: task
        for task in build_tasks(
            monday - timedelta(hours=1), 10, None, None, ZoneInfo("UTC"), clock_time(6, 0)
        )
    }
    assert tasks["record seal"].due == monday
    assert tasks["record seal"].schedule.next_after(monday) == monday + timedelta(days=7)

    with app.app_context():
        assert seal_record(threading.Event()).summary == "record seal emailed to 2 admin(s)"
    assert runner.invoke(args=["outbox", "send"]).exit_code == 0
    messages = [
        message_from_bytes(path.read_bytes(), policy=policy.default)
        for path in sorted(Path(app.config["MAIL_OUTBOX_DIR"]).iterdir())
    ]
    assert sorted(message["To"] for message in messages) == sorted(admin.email for admin in admins)
    attachment = next(messages[0].iter_attachments())
    assert attachment.get_filename().startswith("record-seal-")
    seal_file = tmp_path / attachment.get_filename()
    seal_file.write_bytes(attachment.get_content())
    assert paid_account.customer.email.encode() not in seal_file.read_bytes()
    result = _verify(runner, "--seal", str(seal_file))
    assert result.exit_code == 0, result.output
    assert "intact and as sealed" in result.output
