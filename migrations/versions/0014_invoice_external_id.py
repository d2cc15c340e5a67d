"""invoices from other systems: external_id, unique per account

Revision ID: 0014
Revises: 0010
Create Date: 2026-12-02

Invoices created through the API or the CSV import carry the other system's id for them
(`external_id`) and a digest of what was asked for (`external_digest`). A unique constraint on
(account_id, external_id) makes a repeated or concurrent request create one invoice: the
database refuses the second row, whatever the timing. Staff-made invoices keep both null (nulls
never collide). Existing invoices are unchanged.
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("external_id", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("external_digest", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint("uq_invoices_account_external_id", ["account_id", "external_id"])


def downgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_constraint("uq_invoices_account_external_id", type_="unique")
        batch_op.drop_column("external_digest")
        batch_op.drop_column("external_id")
