"""Faults a deployment meets, from the customer's side: the database going away (between requests
and in the middle of one), the mail server down, Stripe unreachable, a body over the limit.

Each leaves the customer a friendly page (never a traceback), loses nothing already acknowledged,
and writes nothing half-way. (Stripe answering 402/500 or hanging is in test_payments.py; SMTP
refusals and retries of single emails are in test_outbox.py.)
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.orm import sessionmaker

from portal.db import make_engine, utcnow
from portal.models import Account, FormSubmission, Invoice, OutboxEmail, RecordEntry
from tests.conftest import BACKEND, count_rows, form_fields
from tests.smtp_server import SmtpServer, smtp_server  # noqa: F401  (the fixture)
from tests.test_payments_support import (  # noqa: F401  (fixtures)
    button_form,
    live_settings,
    make_invoice,
    pay_path,
    stripe_server,
)
from tests.test_welcome import answer_all, invited, open_link  # noqa: F401  (a fixture)

FRIENDLY_503 = ("We are briefly unavailable", "Nothing you saved was lost")
INTERNALS = ("Traceback", "OperationalError", "sqlalchemy", "psycopg", "sqlite3", "SELECT ", "INSERT ")


def closed_port() -> int:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def database_away(app: Flask, tmp_path: Path) -> Iterator[None]:
    """Point the app at a database that cannot be reached (as after a failover or a crash)."""
    url = (
        f"postgresql://postgres@127.0.0.1:{closed_port()}/gone"
        if BACKEND == "postgres"
        else f"sqlite:///{tmp_path}/no-such-dir/gone.sqlite3"
    )
    saved = app.extensions["portal.engine"], app.extensions["portal.sessionmaker"]
    dead = make_engine(url)
    app.extensions["portal.engine"] = dead
    app.extensions["portal.sessionmaker"] = sessionmaker(dead, expire_on_commit=False)
    try:
        yield
    finally:
        app.extensions["portal.engine"], app.extensions["portal.sessionmaker"] = saved
        dead.dispose()


@contextmanager
def connection_lost_at(app: Flask, statement_start: str) -> Iterator[list[str]]:
    """The request's database connection dies just before the first statement starting with
    `statement_start` (PostgreSQL: the server really terminates the backend; SQLite, which has
    no server to lose, reports an I/O error the way the driver would)."""
    engine = app.extensions["portal.engine"]
    fired: list[str] = []
    admin = create_engine(engine.url) if BACKEND == "postgres" else None

    def before(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if fired or not statement.lstrip().upper().startswith(statement_start.upper()):
            return
        fired.append(statement)
        if admin is not None:
            pid = conn.connection.dbapi_connection.info.backend_pid
            with admin.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
        else:
            import sqlite3

            raise sqlite3.OperationalError("disk I/O error")

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield fired
    finally:
        event.remove(engine, "before_cursor_execute", before)
        if admin is not None:
            admin.dispose()


def assert_friendly_503(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503
    page = response.get_data(as_text=True)
    assert all(words in page for words in FRIENDLY_503), page
    assert "<main" in page and 'href="/"' in page  # the layout, and a way back
    assert not [word for word in INTERNALS if word in page]
    assert response.headers["Content-Security-Policy"] and response.headers["X-Request-Id"]


def answered(db, account: Account) -> list[RecordEntry]:  # type: ignore[no-untyped-def]
    db.commit()
    return list(
        db.scalars(
            select(RecordEntry).where(RecordEntry.account_id == account.id, RecordEntry.event == "answered")
        )
    )


# -- the database ---------------------------------------------------------------------------


def test_database_away_gives_the_customer_a_friendly_503_and_loses_no_acknowledged_answer(
    app, client, db, invited, tmp_path
):
    account, path = invited
    open_link(client, path)
    schedule = client.get("/welcome/step/schedule").get_data(as_text=True)
    saved = client.post("/welcome/step/schedule", data=answer_all(schedule))
    assert saved.status_code == 302  # acknowledged: the customer moves on
    before = [(e.id, e.item_id, e.outcome) for e in answered(db, account)]
    assert before
    access = client.get("/welcome/step/access").get_data(as_text=True)
    access_answers = answer_all(access)

    with database_away(app, tmp_path):
        assert_friendly_503(client.get("/welcome/step/access"))
        assert_friendly_503(client.post("/welcome/step/access", data=access_answers))
        assert_friendly_503(client.get("/welcome/"))
        assert_friendly_503(client.get("/welcome/step/welcome"))

    # Back: the earlier answer is there, the session still works, and the refused post can be
    # sent again (it was never claimed) and counts once.
    assert [(e.id, e.item_id, e.outcome) for e in answered(db, account)][: len(before)] == before
    assert client.get("/welcome/step/access").status_code == 200
    assert client.post("/welcome/step/access", data=access_answers).status_code == 302
    assert client.post("/welcome/step/access", data=access_answers).status_code == 302
    access_items = [item.id for item in account.items if item.kind in ("gate_access", "safety")]
    after = answered(db, account)
    assert sorted(e.item_id for e in after if e.item_id in access_items) == sorted(access_items)


def test_connection_lost_in_the_middle_of_an_answer_writes_nothing_and_the_retry_counts_once(
    app, client, db, invited
):
    account, path = invited
    open_link(client, path)
    form = answer_all(client.get("/welcome/step/schedule").get_data(as_text=True))
    db.commit()
    before = {m.__name__: count_rows(db, m) for m in (RecordEntry, FormSubmission, OutboxEmail)}
    status = db.get(Account, account.id).status
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production

    with connection_lost_at(app, "INSERT INTO record_entries") as fired:
        response = client.post("/welcome/step/schedule", data=form)
    assert fired, "the fault was never triggered"
    assert_friendly_503(response)

    db.commit()
    db.expire_all()
    # Nothing half-written: not the answer, not the one-time form id claimed before it.
    assert {m.__name__: count_rows(db, m) for m in (RecordEntry, FormSubmission, OutboxEmail)} == before
    assert db.get(Account, account.id).status == status
    # The customer presses the button again: it takes effect, once.
    assert client.post("/welcome/step/schedule", data=form).status_code == 302
    assert client.post("/welcome/step/schedule", data=form).status_code == 302  # a double click
    visit_items = [item.id for item in account.items if item.kind in ("visit_day", "start_date")]
    assert sorted(e.item_id for e in answered(db, account)) == sorted(visit_items)
    assert count_rows(db, FormSubmission) == before["FormSubmission"] + 1


def test_healthz_and_staff_pages_answer_503_too_while_the_database_is_away(
    app, client, db, make_staff, staff, tmp_path
):
    staff.login(make_staff("office"))
    with database_away(app, tmp_path):
        assert_friendly_503(client.get("/staff/differences"))
        health = client.get("/healthz")
        assert health.status_code == 503 and health.get_json()["status"] == "unavailable"
        api = client.get("/api/v1/accounts/1/record", headers={"Authorization": "Bearer x"})
        assert api.status_code in (401, 503) and api.is_json


# -- the mail server ------------------------------------------------------------------------


def test_smtp_down_the_customer_is_served_the_email_waits_and_goes_out_once_when_it_is_back(
    app, client, db, invited, runner, smtp_server
):
    account, _path = invited
    db.execute(OutboxEmail.__table__.delete())  # only the email this test asks for
    db.commit()
    app.config.update(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=closed_port())

    page = client.get("/welcome/session-ended").get_data(as_text=True)
    fields = form_fields(page[page.index('action="/welcome/new-link"') :])
    response = client.post("/welcome/new-link", data={**fields, "email": account.customer.email})
    assert response.status_code == 200  # the same answer as always: mail is the worker's job
    [email] = db.scalars(select(OutboxEmail)).all()
    assert email.status == "pending"

    start = utcnow()
    result = runner.invoke(args=["outbox", "send", "--now", start.isoformat()])
    assert result.exit_code == 0 and "to retry 1" in result.output
    assert "server unreachable" in result.output
    db.refresh(email)
    assert (email.status, email.attempts) == ("pending", 1)
    assert email.next_attempt_at > start  # backoff: not hammered

    app.config.update(SMTP_HOST=smtp_server.host, SMTP_PORT=smtp_server.port)  # it is back
    later = (start + timedelta(hours=1)).isoformat()
    assert "Delivered 1," in runner.invoke(args=["outbox", "send", "--now", later]).output
    assert "Delivered 0," in runner.invoke(args=["outbox", "send", "--now", later]).output
    [message] = smtp_server.messages
    db.refresh(email)
    assert email.status == "sent" and message["Message-ID"] == email.message_id
    link = re.search(
        r"http://localhost(/welcome/t/[\w.-]+)", message.get_body(("plain",)).get_content()
    ).group(1)
    assert client.get(link).status_code == 302  # the emailed link works


# -- Stripe -------------------------------------------------------------------------------------


def test_stripe_unreachable_gives_a_clear_message_a_way_back_and_charges_nothing(
    live_settings, stripe_server, app, client, db, make_account
):
    account = make_account()
    invoice, url = make_invoice(db, account)
    assert client.get(pay_path(url)).status_code in (302, 303)
    page = client.get(f"/pay/invoices/{invoice.id}").get_data(as_text=True)
    form = button_form(page, f"/pay/invoices/{invoice.id}/checkout")
    app.config["STRIPE_API_BASE"] = f"http://127.0.0.1:{closed_port()}"  # Stripe is down

    response = client.post(f"/pay/invoices/{invoice.id}/checkout", data=form)
    assert response.status_code in (502, 503, 504)
    body = response.get_data(as_text=True)
    assert "could not reach" in body and "nothing was charged" in body.lower()
    assert not [word for word in INTERNALS if word in body]
    db.commit()
    assert db.get(Invoice, invoice.id).status == "open"
    retry = button_form(body, f"/pay/invoices/{invoice.id}/checkout")  # a way back: try again

    app.config["STRIPE_API_BASE"] = stripe_server.url  # Stripe is back
    assert client.post(f"/pay/invoices/{invoice.id}/checkout", data=retry).status_code == 303
    assert len(stripe_server.requests_to("POST", "/v1/checkout/sessions")) == 1


# -- request size ----------------------------------------------------------------------------


@pytest.mark.csrf
def test_a_customer_step_body_over_the_limit_gets_413_and_changes_nothing(app, client, db, invited):
    account, path = invited
    open_link(client, path)
    html = client.get("/welcome/step/access").get_data(as_text=True)
    form = answer_all(html)
    app.config["MAX_CONTENT_LENGTH"] = 4096
    db.commit()
    before = (count_rows(db, RecordEntry), count_rows(db, FormSubmission))
    note = [name for name in re.findall(r'name="([^"]+_comment|technician_note)"', html)][0]

    response = client.post("/welcome/step/access", data={**form, note: "x" * 5000})
    assert response.status_code == 413
    page = response.get_data(as_text=True)
    assert "Too much at once" in page and "<main" in page and "Traceback" not in page
    db.commit()
    assert (count_rows(db, RecordEntry), count_rows(db, FormSubmission)) == before
    assert client.post("/welcome/step/access", data=form).status_code == 302  # within the limit
