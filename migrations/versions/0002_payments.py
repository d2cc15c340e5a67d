"""payments

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Generated with autogenerate against 0001, then read through. Three invoice columns for Stripe
payments: how many off-session autopay attempts were made (part of each attempt's idempotency
key), when the last one failed (autopay then waits for the customer or a new card), and until
when a Checkout Session the customer opened can still complete (autopay does not charge the
invoice meanwhile). Existing invoices get 0 attempts and nulls.
"""

import sqlalchemy as sa
from alembic import op

import portal.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("autopay_attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("autopay_failed_at", portal.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("checkout_expires_at", portal.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_column("checkout_expires_at")
        batch_op.drop_column("autopay_failed_at")
        batch_op.drop_column("autopay_attempts")
