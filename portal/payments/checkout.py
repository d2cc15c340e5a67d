"""Starting Stripe Checkout: setup mode to save a card, payment mode to pay an invoice.

The one-time form id is the Stripe idempotency key, and it is claimed in the same transaction
that stores the session, so a double click makes one Checkout Session and both clicks land on it.
A Stripe failure rolls everything back (the caller records a `stripe_error` entry afterwards);
the one step kept on its own is creating the account's Stripe customer, which is complete in
itself and reused by every later attempt.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from flask import current_app, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import once, record
from portal.db import unit_of_work
from portal.models import Account, Invoice
from portal.money import format_money
from portal.payments.billing import OPEN, PAID, REFUND_PENDING, REFUNDED, VOID
from portal.payments.cards import lock_account
from portal.payments.gateway import Gateway
from portal.payments.invoices import lock_invoice

CHECKOUT_MINUTES = 60  # Stripe allows 30 min to 24 h; autopay leaves the invoice alone till then
MAX_RESULT_URL = 500  # FormSubmission.result_url
MAX_BALANCE_INVOICES = 40  # their ids must fit one Stripe metadata value (500 characters)


class NotPayable(Exception):
    """Paid already, or a payment is under way: said to the customer, nothing done."""


@dataclass(frozen=True)
class Started:
    url: str
    repeated: bool = False  # the same form posted again: the first result


def card_setup_metadata(account: Account) -> dict[str, str]:
    return {"account_id": str(account.id), "purpose": "card_setup"}


def invoice_metadata(account: Account, invoice: Invoice) -> dict[str, str]:
    return {"invoice_id": str(invoice.id), "account_id": str(account.id), "invoice_number": invoice.number}


def return_paths(invoice_id: int | None = None) -> tuple[str, str]:
    """Where Checkout sends the customer back to: (success, cancel); a card setup without an
    invoice."""
    if invoice_id is None:
        return url_for("payments.card_done"), url_for("payments.card")
    return (
        url_for("payments.invoice_done", invoice_id=invoice_id),
        url_for("payments.invoice", invoice_id=invoice_id),
    )


def balance_paths() -> tuple[str, str]:
    """Where Checkout for the balance sends the customer back to: (success, cancel)."""
    return url_for("payments.balance_done"), url_for("payments.invoices")


def _absolute(path: str) -> str:
    return str(current_app.config["PUBLIC_BASE_URL"]).rstrip("/") + path


def _repeat(session: Session, form_id: str) -> Started:
    return Started(once.earlier_result(session, form_id) or url_for("payments.invoices"), repeated=True)


def ensure_customer(session: Session, account: Account, form_id: str, gateway: Gateway) -> Account:
    """The account's Stripe customer, created once and its id stored in a unit of work of its
    own: kept even when what follows fails."""
    with unit_of_work(session):
        locked = lock_account(session, account.id)
        assert locked is not None
        if locked.stripe_customer_id:
            return locked
        customer_id = gateway.create_customer(
            {
                "email": locked.customer.email,
                "name": locked.customer.name,
                "metadata": {"account_id": str(locked.id)},
            },
            f"{form_id}-customer",
        )
        locked.stripe_customer_id = customer_id
        record.append(
            session,
            locked,
            event="stripe_customer_created",
            actor="system",
            details={"customer": customer_id},
        )
    return locked


def start_card_setup(session: Session, account: Account, form_id: str, gateway: Gateway) -> Started:
    if once.earlier_result(session, form_id):
        return _repeat(session, form_id)
    ensure_customer(session, account, form_id, gateway)
    with unit_of_work(session):
        return _start_card_setup(session, account.id, form_id, gateway)


def _start_card_setup(session: Session, account_id: int, form_id: str, gateway: Gateway) -> Started:
    account = lock_account(session, account_id)
    assert account is not None
    claim = once.claim(session, form_id, "card_setup")
    if claim is None:
        return _repeat(session, form_id)
    metadata = card_setup_metadata(account)
    success, cancel = return_paths()
    started = gateway.create_checkout_session(
        {
            "mode": "setup",
            "customer": account.stripe_customer_id,
            "payment_method_types": ["card"],
            "client_reference_id": f"account-{account.id}",
            "metadata": metadata,
            "setup_intent_data": {
                "metadata": metadata,
                "description": f"Autopay card for account {account.id}",
            },
            "success_url": _absolute(success),
            "cancel_url": _absolute(cancel),
        },
        form_id,
    )
    back = started.url if len(started.url) <= MAX_RESULT_URL else url_for("payments.card")
    once.keep_result(session, claim, back)
    record.append(
        session,
        account,
        event="card_setup_started",
        actor="customer",
        details={"checkout_session": started.id},
    )
    return Started(started.url)


def start_invoice_payment(
    session: Session, account: Account, invoice_id: int, form_id: str, gateway: Gateway
) -> Started:
    """Raises NotPayable, or PaymentProviderError, after rolling back."""
    if once.earlier_result(session, form_id):
        return _repeat(session, form_id)
    with unit_of_work(session):
        return _start_invoice_payment(session, account, invoice_id, form_id, gateway)


def _start_invoice_payment(
    session: Session, account: Account, invoice_id: int, form_id: str, gateway: Gateway
) -> Started:
    invoice = lock_invoice(session, invoice_id)
    assert invoice is not None and invoice.account_id == account.id
    if invoice.status == PAID:
        raise NotPayable("This invoice is paid already. Thank you!")
    if invoice.status in (VOID, REFUND_PENDING, REFUNDED):
        raise NotPayable("This invoice was cancelled or refunded: there is nothing to pay.")
    if invoice.status != OPEN:
        raise NotPayable("A payment for this invoice is being processed. We will email you when it clears.")
    claim = once.claim(session, form_id, "pay_invoice")
    if claim is None:
        return _repeat(session, form_id)
    line_items = [_line_item(invoice.currency, line.amount_cents, line.description) for line in invoice.lines]
    return _pay(
        session,
        account,
        [invoice],
        claim,
        gateway,
        line_items=line_items,
        reference=f"invoice-{invoice.id}",
        metadata=invoice_metadata(account, invoice),
        description=f"Invoice {invoice.number}",
        paths=return_paths(invoice.id),
        fallback=url_for("payments.invoice", invoice_id=invoice.id),
        details={"invoice_id": invoice.id, "number": invoice.number},
    )


def _line_item(currency: str, amount_cents: int, name: str) -> dict[str, Any]:
    return {
        "quantity": 1,
        "price_data": {
            "currency": currency.lower(),
            "unit_amount": amount_cents,
            "product_data": {"name": name[:250]},
        },
    }


def _pay(
    session: Session,
    account: Account,
    invoices: list[Invoice],
    claim: str,
    gateway: Gateway,
    *,
    line_items: list[dict[str, Any]],
    reference: str,
    metadata: dict[str, str],
    description: str,
    paths: tuple[str, str],
    fallback: str,
    details: dict[str, Any],
    amount: str | None = None,
) -> Started:
    """One Checkout Session in payment mode for `invoices` (one, or the whole balance): each
    invoice remembers it (autopay leaves them alone till it expires), the claimed form keeps its
    address for a repeat, and the record says the payment started."""
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": line_items,
        "client_reference_id": reference,
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata, "description": description[:1000]},
        "success_url": _absolute(paths[0]),
        "cancel_url": _absolute(paths[1]),
        "expires_at": _expires_at(),
    }
    if account.stripe_customer_id:
        params["customer"] = account.stripe_customer_id
    else:
        params["customer_email"] = account.customer.email
    started = gateway.create_checkout_session(params, claim)
    for invoice in invoices:
        invoice.stripe_checkout_session_id = started.id
        invoice.checkout_expires_at = started.expires_at
    once.keep_result(session, claim, started.url if len(started.url) <= MAX_RESULT_URL else fallback)
    record.append(
        session,
        account,
        event="payment_started",
        actor="customer",
        confirmed_value=amount,
        details={**details, "checkout_session": started.id},
    )
    return Started(started.url)


def balance_metadata(account: Account, invoices: list[Invoice]) -> dict[str, str]:
    """The account and every invoice the payment covers (events.py pays all of them or none)."""
    return {
        "account_id": str(account.id),
        "invoice_ids": ",".join(str(invoice.id) for invoice in invoices),
        "purpose": "balance",
    }


def start_balance_payment(session: Session, account: Account, form_id: str, gateway: Gateway) -> Started:
    """One Checkout for every open invoice of the account, one line each. Raises NotPayable
    (nothing open) or PaymentProviderError, after rolling back."""
    if once.earlier_result(session, form_id):
        return _repeat(session, form_id)
    with unit_of_work(session):
        return _start_balance_payment(session, account, form_id, gateway)


def _start_balance_payment(session: Session, account: Account, form_id: str, gateway: Gateway) -> Started:
    ids = session.scalars(
        select(Invoice.id)
        .where(Invoice.account_id == account.id, Invoice.status == OPEN)
        .order_by(Invoice.id)
        .limit(MAX_BALANCE_INVOICES)
    ).all()
    locked = [lock_invoice(session, invoice_id) for invoice_id in ids]
    invoices = [invoice for invoice in locked if invoice is not None and invoice.status == OPEN]
    if not invoices:
        raise NotPayable("There is nothing to pay right now. Thank you!")
    if len({invoice.currency for invoice in invoices}) > 1:
        raise NotPayable("Your invoices are in different currencies; please pay them one by one.")
    claim = once.claim(session, form_id, "pay_balance")
    if claim is None:
        return _repeat(session, form_id)
    total = sum(invoice.total_cents for invoice in invoices)
    numbers = [invoice.number for invoice in invoices]
    return _pay(
        session,
        account,
        invoices,
        claim,
        gateway,
        line_items=[_line_item(i.currency, i.total_cents, f"Invoice {i.number}") for i in invoices],
        reference=f"balance-{account.id}",
        metadata=balance_metadata(account, invoices),
        description=f"Balance: {', '.join(numbers)}",
        paths=balance_paths(),
        fallback=url_for("payments.invoices"),
        details={
            "invoice_ids": [invoice.id for invoice in invoices],
            "numbers": numbers,
            "total_cents": total,
        },
        amount=format_money(total, invoices[0].currency),
    )


def _expires_at() -> int:
    return int(time.time()) + CHECKOUT_MINUTES * 60
