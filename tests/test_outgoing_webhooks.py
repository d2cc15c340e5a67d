"""Outgoing webhooks: set by an admin in Settings (secret shown once), queued in the outbox with
the change they report, delivered by `outbox send` to a real local HTTP server, signed
(t=...,v1=HMAC-SHA256), retried after a 500, never sent without a URL, never to internal
addresses in production."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from portal import differences, record, webhooks
from portal.db import get_db, utcnow
from portal.models import CompanySettings, OutboxEmail
from portal.outbox import deliver_pending
from portal.payments import invoices as invoice_service
from tests.conftest import form_fields, sign_as_shown


class Receiver:
    """A local HTTP server (real sockets) that records each request and answers from a script."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/pool"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def set_webhook(app, db, url: str) -> str:  # type: ignore[no-untyped-def]
    company = db.scalars(select(CompanySettings)).first() or CompanySettings(name="Blue Lagoon")
    secret = webhooks.set_url(db, company, url, app.config)
    db.commit()
    return secret


def deliver(app, db, now=None):  # type: ignore[no-untyped-def]
    db.commit()
    with app.app_context():
        return deliver_pending(get_db(), now=now)


def webhook_rows(db) -> list[OutboxEmail]:  # type: ignore[no-untyped-def]
    db.expire_all()
    return list(db.scalars(select(OutboxEmail).where(OutboxEmail.kind == "webhook").order_by(OutboxEmail.id)))


def pay(db, account):  # type: ignore[no-untyped-def]
    invoice, _ = invoice_service.create_invoice(
        db,
        account,
        [invoice_service.Line("Weekly service", 16500)],
        date.today() + timedelta(days=7),
        "staff:1",
    )
    db.commit()
    invoice_service.mark_paid(
        db,
        [invoice],
        invoice_service.StripeFacts("evt_paid", "checkout.session.completed"),
        payment_intent="pi_1",
        amount=16500,
        currency="usd",
    )
    db.commit()
    return invoice


def test_a_paid_invoice_is_posted_signed_to_the_url(app, db, make_account, receiver):
    secret = set_webhook(app, db, receiver.url)
    account = make_account()
    invoice = pay(db, account)

    report = deliver(app, db)

    assert [d.result for d in report.deliveries if d.kind == "webhook"] == ["sent"]
    [request] = receiver.requests
    assert request["path"] == "/hooks/pool"
    assert request["headers"]["Content-Type"] == "application/json"
    body = request["body"]
    assert webhooks.verify(secret, request["headers"]["Portal-Signature"], body)
    assert not webhooks.verify("whsec_other", request["headers"]["Portal-Signature"], body)
    assert not webhooks.verify(
        secret, request["headers"]["Portal-Signature"], body.replace(b"16500", b"16501")
    )
    event = json.loads(body)
    assert event["type"] == "invoice.paid" and request["headers"]["Portal-Event-Id"] == event["id"]
    assert event["data"]["invoice_id"] == invoice.id and event["data"]["account_id"] == account.id
    assert (event["data"]["total_cents"], event["data"]["currency"]) == (16500, "USD")
    assert [row.status for row in webhook_rows(db)] == ["sent"]


def test_a_500_is_retried_with_backoff_and_then_delivered_once(app, db, make_account, receiver):
    secret = set_webhook(app, db, receiver.url)
    pay(db, make_account())
    receiver.answers = [500]

    first = deliver(app, db)

    assert [d.result for d in first.deliveries if d.kind == "webhook"] == ["retry"]
    [row] = webhook_rows(db)
    assert (row.status, row.attempts) == ("pending", 1) and "500" in row.last_error
    assert row.next_attempt_at > utcnow()
    assert deliver(app, db).deliveries == []  # not due yet: nothing is posted again
    assert len(receiver.requests) == 1

    later = deliver(app, db, now=utcnow() + timedelta(minutes=2))

    assert [(d.kind, d.result) for d in later.deliveries] == [("webhook", "sent")]
    assert len(receiver.requests) == 2
    one, two = receiver.requests
    assert one["body"] == two["body"]  # the same event, with the same id
    assert all(
        webhooks.verify(secret, r["headers"]["Portal-Signature"], r["body"]) for r in receiver.requests
    )
    assert [row.status for row in webhook_rows(db)] == ["sent"]


def test_nothing_is_queued_or_sent_without_a_url(app, db, make_account, receiver):
    pay(db, make_account())
    deliver(app, db)
    assert webhook_rows(db) == [] and receiver.requests == []


def test_a_signed_account_and_a_decided_difference_are_posted(app, db, make_account, make_staff, receiver):
    secret = set_webhook(app, db, receiver.url)
    account = make_account()
    item = next(i for i in account.items if i.kind == "visit_day")
    record.append(
        db,
        account,
        event="answered",
        actor="customer",
        item=item,
        promised_value=item.promised_value,
        confirmed_value="Saturday",
        outcome="changed",
    )
    db.commit()
    sign_as_shown(db, account, "Dana Reyes")
    db.commit()
    differences.accept_customer_version(
        db, item.id, make_staff("office", name="Olive Office"), days=["Saturday"]
    )
    db.commit()

    deliver(app, db)

    events = [json.loads(r["body"]) for r in receiver.requests]
    assert [e["type"] for e in events] == ["account.signed", "difference.decided"]
    assert all(
        webhooks.verify(secret, r["headers"]["Portal-Signature"], r["body"]) for r in receiver.requests
    )
    assert events[0]["data"]["account_id"] == account.id and events[0]["data"]["differences"] == 1
    decided = events[1]["data"]
    assert (decided["item_id"], decided["resolution"], decided["agreed_value"]) == (
        item.id,
        "accepted",
        "Saturday",
    )
    assert decided["decided_by"] == "Olive Office"


def test_gate_codes_never_travel_in_a_webhook(app, db, make_account, make_staff, receiver):
    set_webhook(app, db, receiver.url)
    account = make_account()
    item = next(i for i in account.items if i.kind == "gate_access")
    record.append(
        db,
        account,
        event="answered",
        actor="customer",
        item=item,
        promised_value=item.promised_value,
        confirmed_value="Side gate, code 9981",
        outcome="changed",
    )
    db.commit()
    differences.accept_customer_version(db, item.id, make_staff("office"))
    db.commit()
    deliver(app, db)
    [request] = receiver.requests
    assert b"9981" not in request["body"] and b"4412" not in request["body"]


# ---------------------------------------------------------------- settings


def test_an_admin_sets_the_url_and_sees_the_secret_once(app, client, db, make_staff, staff, receiver):
    staff.login(make_staff("admin"))
    page = client.get("/staff/settings").get_data(as_text=True)
    assert "Webhooks" in page
    hidden = form_fields(page.split('action="/staff/settings/webhook#webhooks"', 1)[1].join(["<form ", ""]))

    saved = client.post("/staff/settings/webhook", data={**hidden, "url": receiver.url})

    assert saved.status_code == 200
    shown = saved.get_data(as_text=True)
    company = db.scalars(select(CompanySettings)).one()
    assert company.webhook_url == receiver.url and company.webhook_secret.startswith("whsec_")
    assert company.webhook_secret in shown and "will not be shown again" in shown
    assert company.webhook_secret not in client.get("/staff/settings").get_data(as_text=True)
    assert company.webhook_secret not in str(saved.headers)  # not in a cookie or flash

    off = client.post("/staff/settings/webhook", data={**hidden, "url": ""})
    assert off.status_code == 302
    db.expire_all()
    assert (company.webhook_url, company.webhook_secret) == ("", "")


@pytest.mark.parametrize("role", ["office", "sales", "technician"])
def test_only_admins_set_the_webhook(client, db, make_staff, staff, role):
    staff.login(make_staff(role))
    assert client.post("/staff/settings/webhook", data={"url": "https://example.com/x"}).status_code in (
        302,
        403,
    )
    company = db.scalars(select(CompanySettings)).first()
    assert company is None or company.webhook_url == ""


@pytest.fixture
def production_rules(settings: dict[str, Any]) -> None:
    settings["WEBHOOK_ALLOW_HTTP"] = False
    settings["WEBHOOK_ALLOW_PRIVATE"] = False


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://crm.example.com/hook", "https://"),
        ("https://127.0.0.1/hook", "private or internal"),
        ("https://10.1.2.3/hook", "private or internal"),
        ("https://169.254.169.254/latest/meta-data", "private or internal"),
        ("https://[::1]/hook", "private or internal"),
        ("https://localhost/hook", "private or internal"),
        ("https://user:pw@crm.example.com/hook", "passwords"),
        ("https://crm.example.com/ho ok", "spaces"),
        ("ftp://crm.example.com/hook", "https://"),
    ],
)
def test_in_production_internal_and_plain_http_urls_are_refused_and_nothing_saved(
    production_rules, client, db, make_staff, staff, url, message
):
    staff.login(make_staff("admin"))
    page = client.get("/staff/settings").get_data(as_text=True)
    hidden = form_fields(page.split('action="/staff/settings/webhook#webhooks"', 1)[1].join(["<form ", ""]))
    response = client.post("/staff/settings/webhook", data={**hidden, "url": url})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    company = db.scalars(select(CompanySettings)).first()
    assert company is None or company.webhook_url == ""


def test_delivery_checks_the_address_again(app, db, make_account, receiver):
    """Saved while allowed (or DNS changed since): the worker still refuses, and says why."""
    set_webhook(app, db, receiver.url)
    pay(db, make_account())
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False

    report = deliver(app, db)

    assert [d.result for d in report.deliveries if d.kind == "webhook"] == ["failed"]
    assert receiver.requests == []
    [row] = webhook_rows(db)
    assert row.status == "failed" and "private or internal" in row.last_error
