"""failed-payment retries, card expiry notices, void and refund

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02

Autopay retries a declined charge on a schedule: `autopay_failures` counts the failed tries
since the first one (`autopay_failed_at`), and `autopay_retry_at` is when the next try is due
(null: no more tries; the office has it). The schedule is the company setting
`autopay_retry_days` ("3,5,7": days after the first failure).

Void and refund: when each happened, the refund Stripe made (`stripe_refund_id`, webhook-
confirmed), and the reason staff gave (also in the record entry).

Accounts: which saved card the customer was told is expiring (once per card).

Plain ADD COLUMN, no batch copy of a table: on SQLite a copy would drop the search triggers
on invoices and accounts (see 0009).
"""

import sqlalchemy as sa
from alembic import op

import portal.db

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("invoices", sa.Column("autopay_failures", sa.Integer(), server_default="0", nullable=False))
    op.add_column(
        "invoices", sa.Column("autopay_retry_at", portal.db.UTCDateTime(timezone=True), nullable=True)
    )
    op.add_column("invoices", sa.Column("voided_at", portal.db.UTCDateTime(timezone=True), nullable=True))
    op.add_column(
        "invoices", sa.Column("refund_requested_at", portal.db.UTCDateTime(timezone=True), nullable=True)
    )
    op.add_column("invoices", sa.Column("refunded_at", portal.db.UTCDateTime(timezone=True), nullable=True))
    op.add_column("invoices", sa.Column("stripe_refund_id", sa.String(length=255), nullable=True))
    op.add_column("invoices", sa.Column("adjustment_reason", sa.Text(), server_default="", nullable=False))
    op.create_index("ix_invoices_stripe_refund_id", "invoices", ["stripe_refund_id"])
    op.add_column("accounts", sa.Column("card_expiry_notice_for", sa.String(length=255), nullable=True))
    op.add_column(
        "company_settings",
        sa.Column("autopay_retry_days", sa.String(length=40), server_default="3,5,7", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("company_settings", "autopay_retry_days")
    op.drop_column("accounts", "card_expiry_notice_for")
    op.drop_index("ix_invoices_stripe_refund_id", table_name="invoices")
    # SQLite 3.35+ drops a column in place (no table copy, so the triggers stay).
    for name in (
        "adjustment_reason",
        "stripe_refund_id",
        "refunded_at",
        "refund_requested_at",
        "voided_at",
        "autopay_retry_at",
        "autopay_failures",
    ):
        op.drop_column("invoices", name)
