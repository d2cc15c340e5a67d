"""Invoices from other systems (the JSON API and `import-invoices`): the service both call.

An invoice is made by `payments.invoices.create_invoice`, exactly as staff make one (a number,
a record entry, an email with a pay link); what this adds is the other system's id for it,
`external_id`, unique per account in the database (migration 0014). The same id with the same
request finds the invoice made the first time; with a different request it is refused.
Here rather than in the api blueprint, so the blueprints keep to their own packages (STYLE 18).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.models import Account, Invoice
from portal.payments import billing
from portal.payments.invoices import ExternalRef, Line, autopay_card, create_invoice
from portal.validation import InvoiceData


class ExternalIdConflict(ValueError):
    """The external id names an invoice made from a different request; nothing was changed."""

    def __init__(self, invoice: Invoice) -> None:
        super().__init__(
            f"Invoice {invoice.number} was created with external_id {invoice.external_id!r} "
            "from different lines, currency or due date; nothing was changed."
        )
        self.invoice = invoice


def by_external_id(session: Session, account: Account, external_id: str) -> Invoice | None:
    return session.scalars(
        select(Invoice).where(Invoice.account_id == account.id, Invoice.external_id == external_id)
    ).first()


def create_external_invoice(
    session: Session, account: Account, data: InvoiceData, actor: str
) -> tuple[Invoice, bool]:
    """The invoice for another system's request, and whether it was created now: the same
    external id again returns the invoice made the first time (nothing new, no second email);
    with a different request it raises `ExternalIdConflict`. Created through `create_invoice`,
    exactly like a staff-made invoice (record entry, email with a pay link)."""
    existing = by_external_id(session, account, data.external_id)
    if existing is not None:
        if existing.external_digest != data.digest:
            raise ExternalIdConflict(existing)
        return existing, False
    invoice, _ = create_invoice(
        session,
        account,
        [Line(description, cents) for description, cents in data.lines],
        data.due_date,
        actor,
        autopay_card(session, account),
        external=ExternalRef(data.external_id, data.digest),
    )
    return invoice, True


def account_invoices(session: Session, account: Account) -> list[Invoice]:
    """Every invoice of the account, staff-made ones included, newest due date first."""
    return billing.invoices_of(session, account.id)


def invoice_json(invoice: Invoice) -> dict[str, Any]:
    """An invoice as the API shows it: status (open, overdue, processing, paid) and pay state."""
    return {
        "id": invoice.id,
        "number": invoice.number,
        "external_id": invoice.external_id,
        "status": billing.shown_status(invoice),
        "paid": invoice.status == billing.PAID,
        "paid_at": invoice.paid_at.isoformat() if invoice.paid_at else None,
        "currency": invoice.currency,
        "total_cents": invoice.total_cents,
        "due_date": invoice.due_date.isoformat(),
        "created_at": invoice.created_at.isoformat(),
        "lines": [
            {"description": line.description, "amount_cents": line.amount_cents} for line in invoice.lines
        ],
    }
