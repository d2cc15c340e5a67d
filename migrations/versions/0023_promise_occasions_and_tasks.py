"""promises with a when and an owner, and their follow-through tasks

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02

A deliverable promise (portal/occasions.py) gets its occasion (on the first visit, by a date,
or every N weeks/months from a start), the date that goes with it, and its owner; each
occurrence is a row in `promise_tasks`. Promises made before this stay untracked ("none"):
nobody promised them a date, and inventing one would put years-old promises in the inbox.

Plain ALTER TABLE ADD/DROP COLUMN on promise_items (SQLite has both), not a batch copy.
"""

import sqlalchemy as sa
from alembic import op

import portal.db

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "promise_items", sa.Column("occasion", sa.String(length=20), server_default="none", nullable=False)
    )
    op.add_column("promise_items", sa.Column("occasion_on", sa.Date(), nullable=True))
    op.add_column("promise_items", sa.Column("every", sa.Integer(), server_default="0", nullable=False))
    op.add_column(
        "promise_items", sa.Column("every_unit", sa.String(length=10), server_default="", nullable=False)
    )
    op.add_column(
        "promise_items", sa.Column("owner", sa.String(length=20), server_default="technician", nullable=False)
    )
    op.create_table(
        "promise_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("occurrence", sa.Integer(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("owner", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("done_on", sa.Date(), nullable=True),
        sa.Column("by_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("missed_on", sa.Date(), nullable=True),
        sa.Column("overdue_raised_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_promise_tasks_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["by_id"], ["staff_users.id"], name=op.f("fk_promise_tasks_by_id_staff_users")
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["promise_items.id"], name=op.f("fk_promise_tasks_item_id_promise_items")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promise_tasks")),
        sa.UniqueConstraint("item_id", "occurrence", name="uq_promise_tasks_item_occurrence"),
    )
    op.create_index("ix_promise_tasks_account_id", "promise_tasks", ["account_id"])
    op.create_index("ix_promise_tasks_status_due", "promise_tasks", ["status", "due_on"])


def downgrade() -> None:
    op.drop_index("ix_promise_tasks_status_due", table_name="promise_tasks")
    op.drop_index("ix_promise_tasks_account_id", table_name="promise_tasks")
    op.drop_table("promise_tasks")
    for column in ("owner", "every_unit", "every", "occasion_on", "occasion"):
        op.drop_column("promise_items", column)
