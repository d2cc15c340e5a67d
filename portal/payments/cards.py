"""The card on file: saved only when a verified Stripe event says the SetupIntent succeeded.

Both `checkout.session.completed` (setup mode) and `setup_intent.succeeded` report the same
card; whichever comes first saves it and the other changes nothing. A late event about an older
card never replaces a newer one: each saved card's entry keeps the Stripe timestamp it came from.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from portal import links, record
from portal.company import company_today, get_company
from portal.db import unit_of_work
from portal.mail import queue_email
from portal.models import Account, Invoice, OutboxEmail, RecordEntry
from portal.payments.billing import OPEN, card_text

log = logging.getLogger(__name__)


def lock_account(session: Session, account_id: int) -> Account | None:
    """Re-read the account under a row lock (only the accounts row: its eager joins are outer)."""
    session.execute(select(Account.id).where(Account.id == account_id).with_for_update())
    return session.get(Account, account_id, populate_existing=True)


def object_id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def account_for(session: Session, metadata: Any, customer: Any) -> Account | None:
    """The account an event is about: our metadata, cross-checked with the Stripe customer."""
    metadata = metadata if isinstance(metadata, dict) else {}
    customer_id = object_id(customer)
    account_id = as_int(metadata.get("account_id"))
    if account_id is None and customer_id:
        account_id = session.scalar(select(Account.id).where(Account.stripe_customer_id == customer_id))
    account = lock_account(session, account_id) if account_id is not None else None
    if account is None or account.deleted_at is not None:
        return None
    if customer_id and account.stripe_customer_id and customer_id != account.stripe_customer_id:
        log.warning(
            "event for account %s names customer %s, not %s; ignored",
            account.id,
            customer_id,
            account.stripe_customer_id,
        )
        return None
    return account


def _latest_card_entry(session: Session, account: Account) -> RecordEntry | None:
    return session.scalars(
        select(RecordEntry)
        .where(RecordEntry.account_id == account.id, RecordEntry.event == "card_saved")
        .order_by(RecordEntry.seq.desc())
        .limit(1)
    ).first()


def save_card(
    session: Session,
    account: Account,
    method: dict[str, Any],
    *,
    event_id: str,
    setup_intent: str | None,
    checkout_session: str | None,
    source_created: int,
) -> str:
    """Store the card Stripe confirmed; record it once (actor stripe)."""
    method_id = object_id(method)
    card = method.get("card") or {}
    if not method_id or not card.get("last4"):
        log.warning("setup for account %s carried no card; ignored", account.id)
        return "no card"
    latest = _latest_card_entry(session, account)
    if latest is not None:
        if latest.details.get("payment_method") == method_id:
            return "card already saved"
        if int(latest.details.get("source_created") or 0) > source_created:
            return "older card; newer one kept"
    if (customer := method.get("customer")) and account.stripe_customer_id is None:
        account.stripe_customer_id = object_id(customer)
    account.stripe_payment_method_id = method_id
    account.card_brand = str(card.get("brand") or "card")[:20]
    account.card_last4 = str(card["last4"])[:4]
    month, year = as_int(card.get("exp_month")), as_int(card.get("exp_year"))
    account.card_exp = f"{month:02d}/{year}" if month and year else None
    # A new card gives autopay another go, at once and with a fresh retry schedule, at invoices
    # it could not charge.
    session.execute(
        update(Invoice)
        .where(
            Invoice.account_id == account.id, Invoice.status == OPEN, Invoice.autopay_failed_at.is_not(None)
        )
        .values(autopay_failed_at=None, autopay_failures=0, autopay_retry_at=None)
    )
    record.append(
        session,
        account,
        event="card_saved",
        actor="stripe",
        confirmed_value=card_text(account),
        details={
            "payment_method": method_id,
            "setup_intent": setup_intent,
            "checkout_session": checkout_session,
            "stripe_event": event_id,
            "source_created": source_created,
        },
    )
    return "card saved"


def setup_failed(session: Session, account: Account, intent: dict[str, Any], *, event_id: str) -> str:
    error = intent.get("last_setup_error") or {}
    message = str(error.get("message") or "The card could not be saved.")[:300]
    record.append(
        session,
        account,
        event="card_setup_failed",
        actor="stripe",
        note=message,
        details={
            "setup_intent": object_id(intent),
            "code": error.get("code"),
            "decline_code": error.get("decline_code"),
            "stripe_event": event_id,
        },
    )
    return "setup failed"


# --- Cards about to expire -------------------------------------------------------------------


def next_month(today: date) -> str:
    """The card_exp text ("MM/YYYY") of the month after `today`'s."""
    year, month = (today.year + 1, 1) if today.month == 12 else (today.year, today.month + 1)
    return f"{month:02d}/{year}"


def warn_expiring_cards(session: Session, today: date | None = None) -> list[OutboxEmail]:
    """Email each customer whose saved card expires next month, once per card: the account
    remembers which card it warned about, so every later run (daily, by the worker) skips it
    and a newly saved card is warned about in its own time. Each account in its own unit of
    work."""
    expiring = next_month(today or company_today())
    ids = session.scalars(
        select(Account.id).where(
            Account.card_exp == expiring,
            Account.stripe_payment_method_id.is_not(None),
            Account.deleted_at.is_(None),
            or_(
                Account.card_expiry_notice_for.is_(None),
                Account.card_expiry_notice_for != Account.stripe_payment_method_id,
            ),
        )
    ).all()
    sent = []
    for account_id in ids:
        with unit_of_work(session):
            account = lock_account(session, account_id)
            card = card_text(account) if account is not None else None
            if (
                account is None
                or card is None
                or account.card_exp != expiring
                or account.card_expiry_notice_for == account.stripe_payment_method_id
            ):
                continue  # changed since the list was read
            account.card_expiry_notice_for = account.stripe_payment_method_id
            email = queue_email(
                session,
                template="card_expiring",
                to=account.customer.email,
                account=account,
                subject=f"{get_company().name}: your card on file expires soon",
                context={"account": account, "card": card, "url": links.public_url("payments.card")},
            )
            session.flush()
            record.append(
                session,
                account,
                event="card_expiry_notice",
                actor="system",
                confirmed_value=card,
                details={"payment_method": account.stripe_payment_method_id, "email_id": email.id},
            )
            sent.append(email)
    return sent
