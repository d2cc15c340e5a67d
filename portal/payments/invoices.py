"""Invoices: created by staff, emailed with a signed pay link, paid through Stripe.

An invoice only ever moves forward: open -> processing (a delayed payment method, or an off-session
charge Stripe accepted) -> paid. Paid is set by a verified Stripe event and nothing else; a later
or repeated event never un-pays it or sends a second receipt. The functions that apply events lock
the invoice row first, so two events about one invoice are applied one after the other.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired
from sqlalchemy import bindparam, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from portal import links, record, webhooks
from portal.company import company_today, get_company
from portal.db import reserve_ids, table_of, utcnow
from portal.mail import queue_email
from portal.models import Account, Invoice, InvoiceLine, OutboxEmail
from portal.money import format_money
from portal.payments import billing
from portal.payments.billing import OPEN, PAID, PROCESSING, STATUS_WORDS, UNPAID, card_text
from portal.payments.gateway import PaymentProviderError, payments_mode

log = logging.getLogger(__name__)

STRIPE = "stripe"


# --- Creating ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    description: str
    amount_cents: int


def plan_line(account: Account, today: date) -> Line:
    """The month's plan charge, as the new-invoice form offers it first."""
    return Line(f"{account.plan}, {today:%B %Y}", account.price_cents)


def autopay_card(session: Session, account: Account) -> str | None:
    """The saved card a new invoice's email says will be charged, when autopay will charge it."""
    panel = billing.panel(session, account, payments_mode())
    return panel.card if panel.autopay else None


def create_invoice(
    session: Session,
    account: Account,
    lines: list[Line],
    due_date: date,
    actor: str,
    autopay_card: str | None = None,
    *,
    external: ExternalRef | None = None,
) -> tuple[Invoice, str]:
    """Write the invoice and its lines, queue its email with a fresh pay link, record it.
    Returns the invoice and the link; the caller commits (one transaction). `external` is
    another system's id for it (the API, the CSV import); its uniqueness per account is the
    database's, so the insert raises IntegrityError for an id taken meanwhile."""
    [created] = create_invoices(
        session, [NewInvoice(account, lines, due_date, autopay_card, external)], actor
    )
    return created.invoice, created.url


@dataclass(frozen=True)
class NewInvoice:
    account: Account
    lines: Sequence[Line]
    due_date: date
    autopay_card: str | None = None
    external: ExternalRef | None = None
    # A plan invoice's service period (first and last day): one invoice per account and
    # period start, whoever asks for it and however often.
    period: tuple[date, date] | None = None


@dataclass(frozen=True)
class Created:
    invoice: Invoice
    url: str


def create_invoices(session: Session, wanted: Sequence[NewInvoice], actor: str) -> list[Created]:
    """What creating an invoice does, for one invoice (`create_invoice`) or a billing day's
    batch (`plan_billing`): the invoice with its number and lines, its email with a fresh pay
    link (the outbox), and an `invoice_created` record entry; each kind of row written in one
    statement for the whole batch. An invoice of $0.00 (a promotion credits it in full) is
    settled as it is made: paid, with nothing paid and no Stripe call, and an `invoice_settled`
    entry, so autopay, reminders and the balance never see it as owed. A plan invoice whose
    period the account has already been invoiced for is skipped (INSERT ... ON CONFLICT DO
    NOTHING on the unique index, so two runs at once make one); the result lists only the
    invoices created. The caller commits."""
    if not wanted:
        return []
    record.lock_chains(session, [new.account.id for new in wanted])
    currency = (get_company().currency or "USD").upper()
    now = utcnow()
    nonces = [secrets.token_urlsafe(24) for _ in wanted]
    rows: list[dict[str, Any]] = [
        {
            "id": invoice_id,
            "account_id": new.account.id,
            "number": f"INV-{invoice_id:06d}",
            "status": PAID if _settled(new) else OPEN,
            "paid_at": now if _settled(new) else None,
            "currency": currency,
            "total_cents": sum(line.amount_cents for line in new.lines),
            "due_date": new.due_date,
            "pay_nonce_hash": links.hash_nonce(nonce),
            "created_at": now,
            "autopay_attempts": 0,
            "external_id": new.external.external_id if new.external else None,
            "external_digest": new.external.digest if new.external else None,
            "period_start": new.period[0] if new.period else None,
            "period_end": new.period[1] if new.period else None,
        }
        for invoice_id, new, nonce in zip(
            reserve_ids(session, Invoice, len(wanted)), wanted, nonces, strict=True
        )
    ]
    # An executemany (its statement compiled once, cached), then which of the ids went in: a
    # multi-row VALUES with RETURNING is compiled afresh for every batch size.
    session.connection().execute(_insert_invoices(session), rows)
    inserted = set(session.connection().scalars(_INSERTED, {"ids": [row["id"] for row in rows]}))
    made = [
        (row, new, nonce)
        for row, new, nonce in zip(rows, wanted, nonces, strict=True)
        if row["id"] in inserted
    ]
    line_ids = iter(reserve_ids(session, InvoiceLine, sum(len(new.lines) for _, new, _ in made)))
    line_rows = [
        [
            {
                "id": next(line_ids),
                "invoice_id": row["id"],
                "description": line.description,
                "amount_cents": line.amount_cents,
                "position": position,
            }
            for position, line in enumerate(new.lines)
        ]
        for row, new, _ in made
    ]
    if any(line_rows):
        session.connection().execute(
            insert(table_of(InvoiceLine)), [line for lines in line_rows for line in lines]
        )
    created, emails = [], []
    # Ids taken first: with RETURNING, the ORM would insert the emails one at a time on SQLite.
    email_ids = reserve_ids(session, OutboxEmail, len(made))
    for (row, new, nonce), lines, email_id in zip(made, line_rows, email_ids, strict=True):
        invoice = _persistent(session, Invoice(**row))
        set_committed_value(invoice, "lines", [_persistent(session, InvoiceLine(**line)) for line in lines])
        url = pay_url(invoice, nonce)
        email = _queue_invoice_email(session, new.account, invoice, url, new.autopay_card)
        email.id = email_id
        emails.append(email)
        created.append(Created(invoice, url))
    session.flush()  # the emails, as one executemany
    record.append_many(
        session,
        [
            (
                new.account.id,
                [
                    record.Change(
                        event="invoice_created",
                        actor=actor,
                        confirmed_value=f"{row['number']}: {format_money(row['total_cents'], currency)}",
                        details={
                            "invoice_id": row["id"],
                            "number": row["number"],
                            "total_cents": row["total_cents"],
                            "currency": currency,
                            "due_date": new.due_date.isoformat(),
                            "lines": len(new.lines),
                            "email_id": email.id,
                            **({"external_id": new.external.external_id} if new.external else {}),
                            **(
                                {
                                    "period_start": new.period[0].isoformat(),
                                    "period_end": new.period[1].isoformat(),
                                }
                                if new.period
                                else {}
                            ),
                        },
                    ),
                    *([_settled_entry(row, currency, actor)] if row["status"] == PAID else []),
                ],
            )
            for (row, new, _), email in zip(made, emails, strict=True)
        ],
    )
    return created


def _settled(new: NewInvoice) -> bool:
    return sum(line.amount_cents for line in new.lines) == 0


def _settled_entry(row: dict[str, Any], currency: str, actor: str) -> record.Change:
    return record.Change(
        event="invoice_settled",
        actor=actor,
        confirmed_value=f"{row['number']}: {format_money(0, currency)}, nothing to pay",
        note="Credited in full when it was made: nothing to pay, no payment asked for.",
        details={"invoice_id": row["id"], "number": row["number"], "total_cents": 0, "currency": currency},
    )


def _insert_invoices(session: Session) -> Any:
    dialect_insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    table = table_of(Invoice)
    return dialect_insert(table).on_conflict_do_nothing(
        index_elements=[table.c.account_id, table.c.period_start]
    )


_INSERTED = select(Invoice.id).where(Invoice.id.in_(bindparam("ids", expanding=True)))


_Row = TypeVar("_Row", Invoice, InvoiceLine)


def _persistent(session: Session, row: _Row) -> _Row:
    """A row just inserted past the ORM, as a loaded object of the session (no SELECT)."""
    make_transient_to_detached(row)
    session.add(row)
    return row


def _queue_invoice_email(
    session: Session, account: Account, invoice: Invoice, url: str, autopay_card: str | None
) -> OutboxEmail:
    return queue_email(
        session,
        template="invoice",
        to=account.customer.email,
        account=account,
        subject=(
            f"{get_company().name}: invoice {invoice.number} "
            f"for {format_money(invoice.total_cents, invoice.currency)}"
        ),
        context={
            "account": account,
            "invoice": invoice,
            "lines": invoice.lines,
            "url": url,
            "autopay_card": autopay_card,
            "expires_days": pay_link_max_age().days,
        },
    )


# --- Invoices from other systems: their id for it (portal/external_invoices.py) -----------


@dataclass(frozen=True)
class ExternalRef:
    external_id: str
    digest: str  # of what was asked for (validation.InvoiceData.digest)


# --- Pay links -----------------------------------------------------------------------------
# The "pay" serializer of portal.links; the payload is {"a": account, "i": invoice, "n": nonce}
# and only the nonce's hash is stored (Invoice.pay_nonce_hash). Issuing a new link replaces it.


def pay_link_max_age() -> timedelta:
    return timedelta(
        days=current_app.config.get("PAY_LINK_MAX_AGE_DAYS") or current_app.config["LINK_MAX_AGE_DAYS"]
    )


def issue_pay_link(invoice: Invoice) -> str:
    nonce = secrets.token_urlsafe(24)
    invoice.pay_nonce_hash = links.hash_nonce(nonce)
    return pay_url(invoice, nonce)


def pay_url(invoice: Invoice, nonce: str) -> str:
    """The link for a nonce whose hash the invoice holds."""
    token = links.serializer("pay").dumps({"a": invoice.account_id, "i": invoice.id, "n": nonce})
    return f"{current_app.config['PUBLIC_BASE_URL'].rstrip('/')}/pay/t/{token}"


def card_link(pay_url: str) -> str:
    """The pay link that lands on the card page instead of the invoice (same token, same
    session: a pay link's session reaches the payment pages, the card page among them)."""
    return f"{pay_url}?next=card"


@dataclass(frozen=True)
class PayLinkCheck:
    ok: bool
    invoice: Invoice | None = None
    account: Account | None = None
    nonce_hash: str = ""


def check_pay_token(session: Session, token: str) -> PayLinkCheck:
    """The invoice and account, or not ok (expired, tampered, other purpose, replaced, deleted)."""
    try:
        payload = links.serializer("pay").loads(token, max_age=int(pay_link_max_age().total_seconds()))
    except (SignatureExpired, BadSignature):
        return PayLinkCheck(False)
    if (
        not isinstance(payload, dict)
        or not all(isinstance(payload.get(k), int) for k in ("a", "i"))
        or not isinstance(payload.get("n"), str)
    ):
        return PayLinkCheck(False)
    invoice = session.get(Invoice, payload["i"])
    nonce_hash = links.hash_nonce(payload["n"])
    if (
        invoice is None
        or invoice.account_id != payload["a"]
        or invoice.pay_nonce_hash is None
        or not secrets.compare_digest(invoice.pay_nonce_hash, nonce_hash)
    ):
        return PayLinkCheck(False)
    account = session.get(Account, invoice.account_id)
    if account is None or account.deleted_at is not None:
        return PayLinkCheck(False)
    return PayLinkCheck(True, invoice, account, nonce_hash)


def customer_invoice(session: Session, account: Account, invoice_id: int) -> Invoice | None:
    """The invoice only if it is this account's: another customer's id looks like no invoice."""
    return session.scalars(
        select(Invoice).where(Invoice.id == invoice_id, Invoice.account_id == account.id)
    ).first()


def lock_invoice(session: Session, invoice_id: int) -> Invoice | None:
    """Re-read the invoice under a row lock (PostgreSQL; SQLite holds its write lock already)."""
    return session.get(Invoice, invoice_id, with_for_update=True, populate_existing=True)


# --- Applying what Stripe told us ----------------------------------------------------------


@dataclass(frozen=True)
class StripeFacts:
    """Where a fact came from, for the record entry."""

    event_id: str
    event_type: str


def _account(session: Session, invoice: Invoice) -> Account:
    account = session.get(Account, invoice.account_id)
    assert account is not None
    return account


def _details(invoice: Invoice, facts: StripeFacts, **extra: Any) -> dict[str, Any]:
    return {
        "invoice_id": invoice.id,
        "number": invoice.number,
        "stripe_event": facts.event_id,
        "event_type": facts.event_type,
        **{k: v for k, v in extra.items() if v is not None},
    }


def _known(amount: object, currency: object) -> bool:
    return (
        isinstance(amount, int)
        and not isinstance(amount, bool)
        and isinstance(currency, str)
        and bool(currency)
    )


def _covers(invoices: Sequence[Invoice], amount: object, currency: object) -> bool:
    """Whether Stripe's figures show every one of the invoices paid in full. A missing amount or
    currency is not "the full amount": such an event never pays an invoice (it is acknowledged,
    so Stripe does not retry it, and staff see a payment_mismatch entry)."""
    return (
        _known(amount, currency)
        and isinstance(amount, int)
        and amount >= sum(invoice.total_cents for invoice in invoices)
        and all(str(currency).lower() == invoice.currency.lower() for invoice in invoices)
    )


def mark_paid(
    session: Session,
    invoices: Sequence[Invoice],
    facts: StripeFacts,
    *,
    payment_intent: str | None,
    amount: int | None,
    currency: str | None,
) -> str:
    """Paid once: the first event that says so records it and queues the receipt. One payment
    may cover several invoices (the customer paid their balance): all of them are paid, or,
    when Stripe's amount falls short of their sum, none."""
    assert invoices, "a payment names at least one invoice"
    account = _account(session, invoices[0])
    if all(invoice.status == PAID for invoice in invoices):
        outcomes = {_paid_again(session, account, i, facts, payment_intent, amount) for i in invoices}
        return "duplicate payment recorded" if "duplicate payment recorded" in outcomes else "already paid"
    if not _covers(invoices, amount, currency):
        numbers = ", ".join(invoice.number for invoice in invoices)
        due = sum(invoice.total_cents for invoice in invoices)
        reported = f"{amount} {currency}" if _known(amount, currency) else "no amount or currency"
        log.warning(
            "event %s for invoice(s) %s: Stripe reported %s; left unpaid", facts.event_id, numbers, reported
        )
        record.append(
            session,
            account,
            event="payment_mismatch",
            actor=STRIPE,
            note=f"Stripe reported {reported} for {numbers} ({due} {invoices[0].currency} due); left unpaid.",
            details={
                **_details(
                    invoices[0], facts, payment_intent=payment_intent, amount=amount, currency=currency
                ),
                **({"invoice_ids": [i.id for i in invoices]} if len(invoices) > 1 else {}),
            },
        )
        return "amount mismatch recorded"
    unpaid = [invoice for invoice in invoices if invoice.status in UNPAID]
    # One payment, one receipt: a balance payment's names every invoice it paid and the total.
    receipt = _balance_receipt(session, account, unpaid) if len(invoices) > 1 and unpaid else None
    for invoice in invoices:
        if invoice.status in UNPAID:
            _pay(session, account, invoice, facts, payment_intent, amount, receipt)
        else:
            _paid_again(session, account, invoice, facts, payment_intent, amount)
    return "paid"


def _balance_receipt(session: Session, account: Account, paid: Sequence[Invoice]) -> OutboxEmail:
    currency = paid[0].currency
    total = sum(invoice.total_cents for invoice in paid)
    numbers = ", ".join(invoice.number for invoice in paid)
    return queue_email(
        session,
        template="receipt",
        to=account.customer.email,
        account=account,
        subject=f"{get_company().name}: receipt for invoices {numbers}",
        context={
            "account": account,
            "covered": paid,
            "total_cents": total,
            "currency": currency,
            "paid_on": utcnow(),
        },
    )


def _paid_again(
    session: Session,
    account: Account,
    invoice: Invoice,
    facts: StripeFacts,
    payment_intent: str | None,
    amount: int | None,
) -> str:
    """A payment for an invoice no longer due (paid, void or refunded): a repeat of the same
    payment changes nothing; another payment is recorded for staff to refund."""
    if (
        not payment_intent
        or not invoice.stripe_payment_intent_id
        or payment_intent == invoice.stripe_payment_intent_id
    ):
        return "already paid"
    log.warning(
        "invoice %s (%s) paid again (%s, then %s)",
        invoice.number,
        invoice.status,
        invoice.stripe_payment_intent_id,
        payment_intent,
    )
    state = (
        "was paid"
        if invoice.status == PAID
        else f"is {STATUS_WORDS.get(invoice.status, invoice.status).lower()}"
    )
    record.append(
        session,
        account,
        event="duplicate_payment",
        actor=STRIPE,
        note=f"{invoice.number} {state} and was paid again; refund one payment in Stripe.",
        details=_details(invoice, facts, payment_intent=payment_intent, amount=amount),
    )
    return "duplicate payment recorded"


def _pay(
    session: Session,
    account: Account,
    invoice: Invoice,
    facts: StripeFacts,
    payment_intent: str | None,
    amount: int | None,
    receipt: OutboxEmail | None = None,
) -> None:
    """Pay one invoice: its own receipt, or `receipt`, the one of the payment that covers it
    and others."""
    invoice.status = PAID
    invoice.paid_at = utcnow()
    invoice.autopay_failed_at = None
    invoice.autopay_retry_at = None
    if payment_intent:
        invoice.stripe_payment_intent_id = payment_intent
    amount_text = format_money(invoice.total_cents, invoice.currency)
    email = receipt or queue_email(
        session,
        template="receipt",
        to=account.customer.email,
        account=account,
        subject=f"{get_company().name}: receipt for invoice {invoice.number}",
        context={"account": account, "invoice": invoice, "lines": invoice.lines},
    )
    session.flush()
    record.append(
        session,
        account,
        event="invoice_paid",
        actor=STRIPE,
        confirmed_value=f"{invoice.number}: {amount_text}",
        details=_details(invoice, facts, payment_intent=payment_intent, amount=amount, email_id=email.id),
    )
    webhooks.queue_event(
        session,
        "invoice.paid",
        {
            "account_id": account.id,
            "invoice_id": invoice.id,
            "number": invoice.number,
            "external_id": invoice.external_id,
            "total_cents": invoice.total_cents,
            "currency": invoice.currency,
            "paid_at": invoice.paid_at.isoformat(),
        },
    )


def mark_processing(
    session: Session, invoice: Invoice, facts: StripeFacts, *, payment_intent: str | None
) -> str:
    """A delayed payment method was accepted; Stripe tells later whether the money arrived."""
    if invoice.status != OPEN:
        return f"already {invoice.status}"
    invoice.status = PROCESSING
    if payment_intent:
        invoice.stripe_payment_intent_id = payment_intent
    record.append(
        session,
        _account(session, invoice),
        event="payment_processing",
        actor=STRIPE,
        note=f"Payment for {invoice.number} submitted; waiting for it to clear.",
        details=_details(invoice, facts, payment_intent=payment_intent),
    )
    return "processing"


def payment_failed(
    session: Session,
    invoice: Invoice,
    facts: StripeFacts,
    *,
    payment_intent: str | None,
    reason: str,
    code: str | None,
) -> str:
    """A payment did not go through. A payment we were waiting on goes back to open and the
    customer gets an email with a pay link; a decline inside Checkout (the customer is there to
    see it) is only recorded. Never un-pays a paid invoice."""
    if invoice.status == PAID:
        return "already paid"
    account = _account(session, invoice)
    waiting = invoice.status == PROCESSING and (
        payment_intent is None or invoice.stripe_payment_intent_id in (None, payment_intent)
    )
    if (
        not waiting
        and invoice.autopay_failed_at is not None
        and invoice.stripe_payment_intent_id == payment_intent
    ):
        return "already handled"  # the autopay run recorded and emailed this decline itself
    email_id = None
    if waiting:
        invoice.status = OPEN
        email_id = send_payment_failed(session, account, invoice, reason=reason, code=code).id
    record.append(
        session,
        account,
        event="payment_failed",
        actor=STRIPE,
        note=reason,
        details=_details(invoice, facts, payment_intent=payment_intent, code=code, email_id=email_id),
    )
    return "failed"


def send_payment_failed(
    session: Session,
    account: Account,
    invoice: Invoice,
    *,
    reason: str,
    code: str | None,
    retry_at: datetime | None = None,
    final: bool = False,
) -> OutboxEmail:
    """The email that asks the customer to pay themselves, with a fresh pay link and the same
    link's way to the card page (to save another card); when autopay will try again, the day."""
    url = issue_pay_link(invoice)
    email = queue_email(
        session,
        template="payment_failed",
        to=account.customer.email,
        account=account,
        subject=f"{get_company().name}: payment for invoice {invoice.number} did not go through",
        context={
            "account": account,
            "invoice": invoice,
            "url": url,
            "card_url": card_link(url),
            "retry_on": company_today(retry_at) if retry_at else None,
            "final": final,
            "reason": reason,
            "needs_authentication": code == "authentication_required",
            "card": card_text(account),
            "expires_days": pay_link_max_age().days,
        },
    )
    session.flush()
    return email


def record_stripe_error(
    session: Session, account: Account, error: PaymentProviderError, *, invoice: Invoice | None = None
) -> None:
    """After the failed work was rolled back: one entry for staff (actor system), in the
    caller's unit of work."""
    details = dict(error.details)
    if invoice is not None:
        details.update(invoice_id=invoice.id, number=invoice.number)
    log.warning("Stripe error for account %s: %s", account.id, details)
    record.append(
        session,
        account,
        event="stripe_error",
        actor="system",
        note=f"{details.get('operation', 'Stripe call')} failed: {details.get('message', '')}",
        details=details,
    )
