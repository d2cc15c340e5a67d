"""What an account pays with, read for pages, emails and the autopay run.

The billing choice is not a column: like every promise, it is the billing item's current state in
the service record (the customer's answer, or a later staff resolution). The card on file is what
the last verified Stripe event said (`Account.card_*`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal import record
from portal.company import company_today
from portal.models import Account, Invoice

CARD, INVOICE = "card", "invoice"
OPEN, PROCESSING, PAID = "open", "processing", "paid"
VOID, REFUND_PENDING, REFUNDED = "void", "refund_pending", "refunded"
UNPAID = (OPEN, PROCESSING)


def is_card_choice(value: str) -> bool:
    lowered = value.lower()
    return "card" in lowered or "autopay" in lowered


def billing_choice(session: Session, account: Account) -> str | None:
    """'card' (autopay), 'invoice', or None when nothing about billing was promised."""
    for state in record.item_states(session, account):
        if state.item.kind == "billing":
            return CARD if is_card_choice(state.current_value) else INVOICE
    return None


def card_text(account: Account) -> str | None:
    """'Visa ending 4242, expires 12/28' once a verified event told us, else None."""
    if not account.stripe_payment_method_id or not account.card_last4:
        return None
    brand = (account.card_brand or "card").replace("_", " ")
    brand = {"amex": "American Express", "mastercard": "Mastercard", "visa": "Visa"}.get(brand, brand.title())
    expires = ""
    if account.card_exp and "/" in account.card_exp:
        month, year = account.card_exp.split("/", 1)
        expires = f", expires {month}/{year[-2:]}"
    return f"{brand} ending {account.card_last4}{expires}"


def shown_status(invoice: Invoice, today: date | None = None) -> str:
    """paid, processing, overdue or open: overdue is an open invoice past its due date."""
    if invoice.status == OPEN and invoice.due_date < (today or company_today()):
        return "overdue"
    return invoice.status


STATUS_WORDS = {
    "open": "Due",
    "overdue": "Overdue",
    "processing": "Payment processing",
    "paid": "Paid",
    "void": "Void",
    "refund_pending": "Refund pending",
    "refunded": "Refunded",
}


def invoices_of(session: Session, account_id: int) -> list[Invoice]:
    return list(
        session.scalars(
            select(Invoice)
            .where(Invoice.account_id == account_id)
            .order_by(Invoice.due_date.desc(), Invoice.id.desc())
        )
    )


@dataclass(frozen=True)
class PaymentsPanel:
    """What the customer pages say about paying: billing choice, card, invoices to pay."""

    billing: str | None
    card: str | None
    unpaid_invoices: int
    mode: str  # gateway.payments_mode(): stripe, demo or off

    @property
    def demo(self) -> bool:
        return self.mode == "demo"

    @property
    def off(self) -> bool:
        """Production without Stripe keys: nothing can be paid or saved online."""
        return self.mode == "off"

    @property
    def autopay(self) -> bool:
        # Off: `charge-autopay` refuses to run, so no page or email may promise a charge.
        return self.billing == CARD and self.card is not None and not self.off

    @property
    def offer_card_setup(self) -> bool:
        return self.billing == CARD and self.card is None and not self.off


def panel(session: Session, account: Account, mode: str) -> PaymentsPanel:
    unpaid = (
        session.scalar(
            select(func.count())
            .select_from(Invoice)
            .where(Invoice.account_id == account.id, Invoice.status.in_(UNPAID))
        )
        or 0
    )
    return PaymentsPanel(billing_choice(session, account), card_text(account), unpaid, mode)
