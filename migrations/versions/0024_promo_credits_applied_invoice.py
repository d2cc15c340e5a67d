"""promo credits remember the invoice that took them off

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02

`bill` now credits a promotion confirmed after its month was billed on the account's next plan
invoice, once: `applied_invoice_id` says which invoice took a credit off. Credits already on
an invoice get it from the invoice's line ("Promotion CODE: Month YYYY ..."), so none is given
again; the others are still to come, or were confirmed too late and now go on the next invoice.

A batch copy of promo_credits only (SQLite cannot add a foreign key otherwise); it has no
triggers to lose.
"""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("promo_credits") as batch:
        batch.add_column(sa.Column("applied_invoice_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_promo_credits_applied_invoice_id_invoices", "invoices", ["applied_invoice_id"], ["id"]
        )
    bind = op.get_bind()
    promo = sa.table(
        "promo_credits",
        sa.column("id", sa.Integer()),
        sa.column("account_id", sa.Integer()),
        sa.column("month", sa.Date()),
        sa.column("code", sa.String()),
        sa.column("applied_invoice_id", sa.Integer()),
    )
    invoices = sa.table("invoices", sa.column("id", sa.Integer()), sa.column("account_id", sa.Integer()))
    lines = sa.table(
        "invoice_lines",
        sa.column("invoice_id", sa.Integer()),
        sa.column("description", sa.Text()),
        sa.column("amount_cents", sa.Integer()),
    )
    for credit_id, account_id, month, code in bind.execute(
        sa.select(promo.c.id, promo.c.account_id, promo.c.month, promo.c.code)
    ).all():
        prefix = f"Promotion {code}: {month:%B %Y} "
        invoice_id = bind.execute(
            sa.select(invoices.c.id)
            .join(lines, lines.c.invoice_id == invoices.c.id)
            .where(
                invoices.c.account_id == account_id,
                lines.c.amount_cents < 0,
                sa.func.substr(lines.c.description, 1, len(prefix)) == prefix,
            )
            .order_by(invoices.c.id)
            .limit(1)
        ).scalar()
        if invoice_id is not None:
            bind.execute(promo.update().where(promo.c.id == credit_id).values(applied_invoice_id=invoice_id))


def downgrade() -> None:
    with op.batch_alter_table("promo_credits") as batch:
        batch.drop_constraint("fk_promo_credits_applied_invoice_id_invoices", type_="foreignkey")
        batch.drop_column("applied_invoice_id")
