"""follow-ups: what the office must act on beside differences and change requests

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02

An overdue promise, a technician's flag, a failed payment, a first visit that did not match:
each becomes a follow_ups row the office inbox lists until someone closes it with a note.
At most one open follow-up per (account, kind, key): a partial unique index, so raising the
same one twice, or from two workers at once, finds the open one.
"""

import sqlalchemy as sa
from alembic import op

import portal.db

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "follow_ups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("summary", sa.String(length=300), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("raised_by", sa.String(length=40), nullable=False),
        sa.Column("created_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closing_note", sa.Text(), nullable=False),
        sa.Column("told_customer", sa.Boolean(), nullable=False),
        sa.Column("closed_by_id", sa.Integer(), nullable=True),
        sa.Column("closed_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_follow_ups_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["closed_by_id"], ["staff_users.id"], name=op.f("fk_follow_ups_closed_by_id_staff_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_follow_ups")),
    )
    op.create_index(
        "uq_follow_ups_open_key",
        "follow_ups",
        ["account_id", "kind", "key"],
        unique=True,
        sqlite_where=sa.text("status = 'open'"),
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_index("ix_follow_ups_account_status", "follow_ups", ["account_id", "status"])
    op.create_index("ix_follow_ups_status_account", "follow_ups", ["status", "account_id"])


def downgrade() -> None:
    op.drop_index("ix_follow_ups_status_account", table_name="follow_ups")
    op.drop_index("ix_follow_ups_account_status", table_name="follow_ups")
    op.drop_index("uq_follow_ups_open_key", table_name="follow_ups")
    op.drop_table("follow_ups")
