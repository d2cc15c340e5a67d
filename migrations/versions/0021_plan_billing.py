"""plan billing: the plan's cadence, billing settings, plan invoices' periods, promo credits

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02

`flask bill` makes the plan invoices due on a date. Each account's plan says what its price
buys (`billing_cadence`: monthly, the default for every existing account, quarterly or per
visit); the company says when it bills (in advance on a day of the month, or in arrears at
month end) and how the first period is charged. A unique index on (account_id,
period_start) makes any number of runs, also at once, create one invoice per period; existing
invoices have no period and never collide. Promo credits are the office-confirmed promotions
from the sale.

Plain ADD COLUMN / CREATE INDEX / CREATE TABLE, no batch copy: on SQLite a copy would drop the
triggers on accounts and invoices (see 0009).
"""

import sqlalchemy as sa
from alembic import op

import portal.db

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "accounts",
        sa.Column("billing_cadence", sa.String(length=12), server_default="monthly", nullable=False),
    )
    op.add_column(
        "company_settings",
        sa.Column("billing_timing", sa.String(length=10), server_default="advance", nullable=False),
    )
    op.add_column(
        "company_settings", sa.Column("billing_day", sa.Integer(), server_default="1", nullable=False)
    )
    op.add_column(
        "company_settings",
        sa.Column("first_period", sa.String(length=10), server_default="prorated", nullable=False),
    )
    op.add_column("invoices", sa.Column("period_start", sa.Date(), nullable=True))
    op.add_column("invoices", sa.Column("period_end", sa.Date(), nullable=True))
    op.create_index("uq_invoices_account_period", "invoices", ["account_id", "period_start"], unique=True)
    op.create_table(
        "promo_credits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=True),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("source_text", sa.Text(), nullable=False),
        sa.Column("confirmed_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.ForeignKeyConstraint(["confirmed_by_id"], ["staff_users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "month", "code", name="uq_promo_credits_account_month_code"),
    )
    op.create_index("ix_promo_credits_account_id", "promo_credits", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_promo_credits_account_id", table_name="promo_credits")
    op.drop_table("promo_credits")
    op.drop_index("uq_invoices_account_period", table_name="invoices")
    # SQLite 3.35+ drops a column in place (no table copy, so the triggers stay).
    op.drop_column("invoices", "period_end")
    op.drop_column("invoices", "period_start")
    op.drop_column("company_settings", "first_period")
    op.drop_column("company_settings", "billing_day")
    op.drop_column("company_settings", "billing_timing")
    op.drop_column("accounts", "billing_cadence")
