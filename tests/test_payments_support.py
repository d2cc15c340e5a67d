"""Shared fixtures and helpers for the payment tests (no tests of its own).

The portal talks to `tests.stripe_server.StripeServer` through the real `stripe` library
(`STRIPE_API_BASE`), and webhook events are signed exactly as Stripe signs them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from sqlalchemy import select

from portal.models import Account, Invoice, OutboxEmail, RecordEntry, StripeEvent
from portal.onboarding import send_welcome
from portal.payments import invoices as invoice_service
from tests.conftest import count_rows, form_fields
from tests.stripe_server import StripeServer, make_event, sign_payload
from tests.test_welcome import answer_all, token_of

WEBHOOK_SECRET = "whsec_test"
API_KEY = "sk_test_portal"


@pytest.fixture
def stripe_server() -> Iterator[StripeServer]:
    with StripeServer() as server:
        yield server
    assert server.errors == []


@pytest.fixture
def live_settings(settings: dict[str, Any], stripe_server: StripeServer) -> dict[str, Any]:
    """Settings pointing the app at the local Stripe (ask for this before `app`/`client`)."""
    settings.update(
        STRIPE_SECRET_KEY=API_KEY,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        STRIPE_API_BASE=stripe_server.url,
        STRIPE_TIMEOUT=1,
        STRIPE_MAX_NETWORK_RETRIES=0,
    )
    return settings


def post_event(
    client: Any,
    event: dict[str, Any],
    secret: str = WEBHOOK_SECRET,
    timestamp: int | None = None,
    payload: str | None = None,
) -> Any:
    body = payload if payload is not None else json.dumps(event)
    return client.post(
        "/stripe/webhook",
        data=body,
        content_type="application/json",
        headers={"Stripe-Signature": sign_payload(body, secret, timestamp)},
    )


def deliver(client: Any, event_type: str, obj: dict[str, Any], **kwargs: Any) -> Any:
    response = post_event(client, make_event(event_type, obj), **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def make_invoice(
    db: Any, account: Account, lines: list[tuple[str, int]] | None = None, due: date | None = None
) -> tuple[Invoice, str]:
    """An invoice created through the service (as the staff form does); returns it and its link."""
    invoice, url = invoice_service.create_invoice(
        db,
        account,
        [invoice_service.Line(d, c) for d, c in (lines or [("Weekly service, March", 16500)])],
        due or date.today(),
        "staff:1",
    )
    db.commit()
    return invoice, url


def pay_path(url: str) -> str:
    return "/pay/t/" + url.rsplit("/pay/t/", 1)[1]


def open_welcome(client: Any, db: Any, account: Account) -> None:
    sent = send_welcome(db, account, "system")
    db.commit()
    assert client.get("/welcome/t/" + token_of(sent.url)).status_code == 302


def sign_up(client: Any, db: Any, account: Account, billing: str = "Card autopay") -> None:
    """Open the welcome link and finish every step, choosing `billing`, then sign."""
    open_welcome(client, db, account)
    location = client.get("/welcome/").headers["Location"]
    for _ in range(10):
        if "/step/" not in location:
            break
        html = client.get(location).get_data(as_text=True)
        data = answer_all(html)
        for name in set(re.findall(r'name="(i\d+_choice)"', html)):
            data[name] = billing
        response = client.post(location, data=data)
        assert response.status_code == 302, response.get_data(as_text=True)
        location = response.headers["Location"]
    assert location.endswith("/welcome/thanks")


def button_form(page: str, action: str) -> dict[str, str]:
    """The hidden fields of the form posting to `action` on the page."""
    start = page.index(f'action="{action}"')
    return form_fields(page[start : page.index("</form>", start)])


def refresh(db: Any) -> None:
    """End the test's read transaction (SQLite keeps a snapshot until then) and reload."""
    db.commit()
    db.expire_all()


def snapshot(db: Any) -> dict[str, int]:
    """Row counts that a refused request must leave alone."""
    refresh(db)
    return {
        model.__name__: count_rows(db, model) for model in (Invoice, OutboxEmail, RecordEntry, StripeEvent)
    }


def entries(db: Any, account_id: int, event: str) -> list[RecordEntry]:
    refresh(db)
    return list(
        db.scalars(
            select(RecordEntry)
            .where(RecordEntry.account_id == account_id, RecordEntry.event == event)
            .order_by(RecordEntry.seq)
        )
    )


def emails(db: Any, kind: str) -> list[OutboxEmail]:
    refresh(db)
    return list(db.scalars(select(OutboxEmail).where(OutboxEmail.kind == kind).order_by(OutboxEmail.id)))


def fresh(db: Any, model: type, ident: int) -> Any:
    refresh(db)
    return db.get(model, ident)
