"""The customer's balance and statement: every invoice, payment, void and refund of an account
as dated lines with a running balance (what the customer owes after each line).

Read from the invoices themselves (created, paid, voided, refunded and when), so the statement,
the balance and the "pay the balance" button agree by construction. A refund is two lines: the
money back to the card (+) and the invoice credited (-), so the balance stays what is owed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.models import Account, Invoice
from portal.payments.billing import OPEN, PROCESSING, REFUND_PENDING, REFUNDED, VOID


@dataclass(frozen=True)
class Line:
    at: datetime
    kind: str  # invoice, payment, void, refund, credit, refund_pending
    text: str
    invoice: Invoice
    amount_cents: int  # + what the customer owes more, - less; 0 for a note
    balance_cents: int = 0


@dataclass(frozen=True)
class Statement:
    lines: list[Line]
    currency: str
    balance_cents: int  # owed now: open and processing invoices
    payable: list[Invoice]  # open invoices: what "pay the balance" pays

    @property
    def payable_cents(self) -> int:
        return sum(invoice.total_cents for invoice in self.payable)


# Same-moment lines in the order they happen.
_ORDER = {"invoice": 0, "payment": 1, "refund_pending": 2, "refund": 3, "credit": 4, "void": 5}


def _lines(invoice: Invoice) -> list[Line]:
    total, number = invoice.total_cents, invoice.number
    found = [Line(invoice.created_at, "invoice", f"Invoice {number}", invoice, total)]
    if invoice.paid_at is not None and total == 0:
        # Settled when it was made (a promotion credits it in full): nothing was paid.
        found.append(
            Line(invoice.paid_at, "payment", f"{number}: nothing to pay, credited in full", invoice, 0)
        )
    elif invoice.paid_at is not None:
        found.append(Line(invoice.paid_at, "payment", f"Payment for {number}, thank you", invoice, -total))
    if invoice.status == REFUND_PENDING and invoice.refund_requested_at is not None:
        found.append(
            Line(invoice.refund_requested_at, "refund_pending", f"Refund pending for {number}", invoice, 0)
        )
    if invoice.status == REFUNDED and invoice.refunded_at is not None:
        found.append(Line(invoice.refunded_at, "refund", f"Refund to your card for {number}", invoice, total))
        found.append(Line(invoice.refunded_at, "credit", f"{number} credited", invoice, -total))
    if invoice.status == VOID and invoice.voided_at is not None:
        found.append(Line(invoice.voided_at, "void", f"{number} voided", invoice, -total))
    return found


def statement(session: Session, account: Account) -> Statement:
    invoices = list(
        session.scalars(select(Invoice).where(Invoice.account_id == account.id).order_by(Invoice.id))
    )
    raw = sorted(
        (line for invoice in invoices for line in _lines(invoice)),
        key=lambda line: (line.at, line.invoice.id, _ORDER[line.kind]),
    )
    running = 0
    lines = []
    for line in raw:
        running += line.amount_cents
        lines.append(Line(line.at, line.kind, line.text, line.invoice, line.amount_cents, running))
    owed = [invoice for invoice in invoices if invoice.status in (OPEN, PROCESSING)]
    currency = invoices[0].currency if invoices else "USD"
    return Statement(
        lines=lines,
        currency=currency,
        balance_cents=sum(invoice.total_cents for invoice in owed),
        payable=[invoice for invoice in owed if invoice.status == OPEN],
    )
