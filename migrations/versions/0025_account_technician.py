"""each account has its technician

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-02

`accounts.technician_id`: the technician the office assigned (portal/technicians.py), or none
yet. Indexed with first_visit, like the salesperson, for a technician's own visits by day.

Plain ADD COLUMN, not a batch copy: a copy of `accounts` would drop the search and count
triggers of 0009. SQLite cannot ALTER a constraint on, so there the reference goes inline
with the new column (and, being a column constraint, DROP COLUMN still takes it away).
"""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

FK = "fk_accounts_technician_id_staff_users"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.add_column(
            "accounts",
            sa.Column("technician_id", sa.Integer(), sa.ForeignKey("staff_users.id", name=FK), nullable=True),
            inline_references=True,
        )
    else:
        op.add_column("accounts", sa.Column("technician_id", sa.Integer(), nullable=True))
        op.create_foreign_key(op.f(FK), "accounts", "staff_users", ["technician_id"], ["id"])
    op.create_index("ix_accounts_technician_first_visit", "accounts", ["technician_id", "first_visit"])


def downgrade() -> None:
    op.drop_index("ix_accounts_technician_first_visit", table_name="accounts")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f(FK), "accounts", type_="foreignkey")
    op.drop_column("accounts", "technician_id")
