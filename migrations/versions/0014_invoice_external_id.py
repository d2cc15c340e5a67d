"""invoices from other systems: external_id, unique per account; outgoing webhooks

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02

Invoices created through the API or the CSV import carry the other system's id for them
(`external_id`) and a digest of what was asked for (`external_digest`). A unique index on
(account_id, external_id) makes a repeated or concurrent request create one invoice: the
database refuses the second row, whatever the timing. Staff-made invoices keep both null (nulls
never collide). Existing invoices are unchanged.

Outgoing webhooks: the company's webhook URL and signing secret (empty: off).

Plain ADD COLUMN and CREATE UNIQUE INDEX, no batch copy of the table: on SQLite a copy would
drop the search triggers on invoices (see 0009).
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("invoices", sa.Column("external_id", sa.String(length=100), nullable=True))
    op.add_column("invoices", sa.Column("external_digest", sa.String(length=64), nullable=True))
    op.create_index("uq_invoices_account_external_id", "invoices", ["account_id", "external_id"], unique=True)
    for name, length in (("webhook_url", 254), ("webhook_secret", 100)):
        op.add_column(
            "company_settings", sa.Column(name, sa.String(length=length), server_default="", nullable=False)
        )


def downgrade() -> None:
    op.drop_column("company_settings", "webhook_secret")
    op.drop_column("company_settings", "webhook_url")
    op.drop_index("uq_invoices_account_external_id", table_name="invoices")
    # SQLite 3.35+ drops a column in place (no table copy, so the triggers stay).
    op.drop_column("invoices", "external_digest")
    op.drop_column("invoices", "external_id")
