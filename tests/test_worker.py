"""`flask --app wsgi worker`: delivers the outbox on a schedule, runs the daily tasks, survives a
failing task, and stops cleanly on SIGTERM (exit 0, nothing sent twice, nothing left claimed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from datetime import time as clock_time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from portal.models import Account, Invoice, OutboxEmail
from portal.worker import DailyAt, Every, Outcome, Task, Worker, build_tasks, charge_autopay
from tests.smtp_server import SmtpServer, smtp_server  # noqa: F401  (the fixture)
from tests.test_payments_support import button_form, fresh, make_invoice, sign_up

ROOT = Path(__file__).resolve().parents[1]


def _queue(db, count: int, start: int = 0) -> list[OutboxEmail]:
    emails = [
        OutboxEmail(
            kind="test",
            to_address=f"customer{n}@example.com",
            subject=f"Test {n}",
            text_body=f"Text {n}",
            html_body=f"<p>HTML {n}</p>",
        )
        for n in range(start, start + count)
    ]
    db.add_all(emails)
    db.commit()
    return emails


def _start_worker(settings, tmp_path: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    environment = {
        **os.environ,
        "DATABASE_URL": settings["DATABASE_URL"],
        "PORTAL_ENV": "development",
        "MAIL_BACKEND": "file",
        "MAIL_OUTBOX_DIR": settings["MAIL_OUTBOX_DIR"],
        "PORTAL_INSTANCE_PATH": str(tmp_path / "worker-instance"),
        **env,
    }
    command = [
        sys.executable,
        "-m",
        "flask",
        "--app",
        "wsgi",
        "worker",
        "--outbox-every",
        "0.2",
        "--reminders-at",
        "off",
        "--autopay-at",
        "off",
        *args,
    ]
    return subprocess.Popen(
        command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(condition, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _eml_ids(directory: Path) -> Counter[int]:
    return Counter(int(path.name.split("-")[0]) for path in directory.glob("*.eml"))


def _stop(process: subprocess.Popen[str], signum: int = signal.SIGTERM) -> tuple[int, str, str]:
    process.send_signal(signum)
    try:
        out, err = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"the worker did not stop within 10 s:\n{out}\n{err}")
    return process.returncode, out, err


def test_the_worker_delivers_the_outbox_keeps_going_and_stops_cleanly_on_sigterm(app, db, settings, tmp_path):
    first = _queue(db, 12)
    outbox_dir = Path(settings["MAIL_OUTBOX_DIR"])
    process = _start_worker(settings, tmp_path)
    try:
        _wait_for(lambda: len(_eml_ids(outbox_dir)) >= 12)
        later = _queue(db, 3, start=12)  # queued while it runs: the next turn takes them
        _wait_for(lambda: len(_eml_ids(outbox_dir)) >= 15)
        time.sleep(0.5)  # a few more turns with nothing to do
    finally:
        code, out, err = _stop(process)

    assert code == 0, (out, err)
    assert "Worker started: outbox every 0.2 s" in out
    assert "SIGTERM received: stopping" in out and out.rstrip().endswith("Worker stopped.")
    ids = _eml_ids(outbox_dir)
    assert set(ids) == {email.id for email in first + later}
    assert set(ids.values()) == {1}  # nothing sent twice
    db.expire_all()
    assert {row.status for row in db.scalars(select(OutboxEmail))} == {"sent"}
    assert "Traceback" not in err


def test_sigterm_in_the_middle_of_a_burst_finishes_the_batch_and_leaves_nothing_claimed(
    app, db, settings, tmp_path, smtp_server
):
    _queue(db, 40)
    smtp_server.handler.delay = 0.1  # a slow server: SIGTERM lands while emails are going out
    process = _start_worker(
        settings, tmp_path, MAIL_BACKEND="smtp", SMTP_HOST=smtp_server.host, SMTP_PORT=str(smtp_server.port)
    )
    try:
        _wait_for(lambda: len(smtp_server.messages) >= 3)
    finally:
        code, out, err = _stop(process)

    assert code == 0, (out, err)
    assert "finishing outbox first" in out
    db.expire_all()
    rows = db.scalars(select(OutboxEmail)).all()
    statuses = Counter(row.status for row in rows)
    assert set(statuses) <= {"sent", "pending"} and statuses["sent"] < 40  # stopped early
    received = Counter(message["Message-ID"] for message in smtp_server.messages)
    assert set(received.values()) == {1}  # each at most once
    assert set(received) == {row.message_id for row in rows if row.status == "sent"}

    # What was left is delivered by the next worker, still once each.
    again = _start_worker(
        settings, tmp_path, MAIL_BACKEND="smtp", SMTP_HOST=smtp_server.host, SMTP_PORT=str(smtp_server.port)
    )
    try:
        _wait_for(lambda: len(smtp_server.messages) >= 40)
    finally:
        assert _stop(again, signal.SIGINT)[0] == 0
    assert set(Counter(m["Message-ID"] for m in smtp_server.messages).values()) == {1}
    assert len(smtp_server.messages) == 40


@pytest.mark.parametrize(
    "args, message",
    [
        (["--reminders-at", "25:00"], "is not a time of day"),
        (["--timezone", "Mars/Olympus_Mons"], "is not a time zone name"),
        (["--outbox-every", "0"], "0 is not in the range"),
    ],
)
def test_bad_options_are_refused(runner, args, message):
    result = runner.invoke(args=["worker", *args])
    assert result.exit_code == 2 and message in result.output


# -- the schedule and the loop, in this process ------------------------------------------------


def test_daily_times_are_the_next_occurrence_in_the_chosen_zone():
    phoenix = DailyAt(clock_time(9, 0), ZoneInfo("America/Phoenix"))  # UTC-7, no DST
    morning = datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc)  # 08:00 in Phoenix
    assert phoenix.next_after(morning) == datetime(2026, 3, 2, 16, 0, tzinfo=timezone.utc)
    assert phoenix.next_after(morning + timedelta(hours=1)) == datetime(
        2026, 3, 3, 16, 0, tzinfo=timezone.utc
    )  # 09:00 exactly: tomorrow's
    berlin = DailyAt(clock_time(9, 0), ZoneInfo("Europe/Berlin"))  # DST starts 2026-03-29
    assert berlin.next_after(datetime(2026, 3, 28, 9, 0, tzinfo=timezone.utc)) == datetime(
        2026, 3, 29, 7, 0, tzinfo=timezone.utc
    )
    assert Every(2.5).next_after(morning) == morning + timedelta(seconds=2.5)


def test_build_tasks_starts_the_outbox_at_once_and_the_daily_tasks_at_their_time():
    now = datetime(2026, 3, 2, 8, 30, tzinfo=timezone.utc)
    tasks = build_tasks(now, 10, clock_time(9, 0), None, ZoneInfo("UTC"))
    assert [(t.name, t.due) for t in tasks] == [
        ("outbox", now),
        ("overdue work", now),
        ("reminders", datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)),
    ]
    assert [t.name for t in build_tasks(now, 10, None, None, ZoneInfo("UTC"), overdue_every=None)] == [
        "outbox"
    ]


def test_a_failing_task_is_logged_retried_and_does_not_stop_the_worker(app, caplog):
    calls: list[str] = []
    worker = Worker(app, [], retry_after=0.05, echo=calls.append)

    def flaky(stop: threading.Event) -> Outcome:
        calls.append("try")
        if calls.count("try") < 3:
            raise OperationalError("SELECT 1", {}, Exception("database is away"))
        stop.set()
        return Outcome("worked")

    worker.tasks = [Task("flaky", flaky, Every(3600), worker.clock())]
    thread = threading.Thread(target=worker.run)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert calls.count("try") == 3 and calls[-1].endswith("flaky: worked")
    assert "worker: flaky failed (1 in a row); trying again in 0.05 s" in caplog.text
    assert "worker: flaky failed (2 in a row); trying again in 0.1 s" in caplog.text
    assert worker.tasks[0].due > worker.clock() + timedelta(minutes=59)  # back on its schedule
    assert worker.tasks[0].failures == 0


def test_more_work_waiting_runs_the_task_again_at_once(app):
    runs: list[int] = []
    worker = Worker(app, [], echo=lambda _line: None)

    def burst(stop: threading.Event) -> Outcome:
        runs.append(1)
        if len(runs) == 3:
            stop.set()
        return Outcome("", more=True)

    worker.tasks = [Task("outbox", burst, Every(3600), worker.clock())]
    thread = threading.Thread(target=worker.run)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive() and len(runs) == 3


def test_the_autopay_task_charges_open_invoices_like_the_command(app, client, db, make_account, capsys):
    account = make_account()
    sign_up(client, db, account, billing="Card autopay")
    setup = client.post(
        "/pay/card/setup", data=button_form(client.get("/pay/card").get_data(as_text=True), "/pay/card/setup")
    )
    demo = setup.headers["Location"]  # demo mode: the card is saved through a signed demo event
    client.post(
        f"{demo}/succeed", data=button_form(client.get(demo).get_data(as_text=True), f"{demo}/succeed")
    )
    invoice, _ = make_invoice(db, fresh(db, Account, account.id))
    with app.app_context():
        assert charge_autopay(threading.Event()).summary == "done"
    assert f"{invoice.number}: submitted" in capsys.readouterr().out
    assert fresh(db, Invoice, invoice.id).status == "paid"
    with app.app_context():  # the next day: nothing left to charge
        charge_autopay(threading.Event())
    assert "0 charged" in capsys.readouterr().out
