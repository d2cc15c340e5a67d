"""handback: acknowledgment, questions to sales, the customer's goal, first-visit feedback, cancellation

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02

Issue 18, part B. Accounts gain the customer's goal, when service acknowledged the handoff
and when (and why) the office cancelled it; an index serves the dashboard's unacknowledged
accounts by first visit. Two tables: questions the office sends back to the salesperson, and
the one first-visit feedback email per account with its answer. Existing accounts start
unacknowledged and without feedback (no data moves).

Plain ALTER TABLE ADD/DROP COLUMN and CREATE/DROP INDEX on `accounts`, no batch copy: a batch
copy would drop the search and count triggers of 0009 with the old table.
"""

import sqlalchemy as sa
from alembic import op

import portal.db

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("customer_goal", sa.Text(), server_default="", nullable=False))
    op.add_column(
        "accounts", sa.Column("acknowledged_at", portal.db.UTCDateTime(timezone=True), nullable=True)
    )
    op.add_column("accounts", sa.Column("cancelled_at", portal.db.UTCDateTime(timezone=True), nullable=True))
    op.add_column("accounts", sa.Column("cancel_reason", sa.Text(), server_default="", nullable=False))
    op.create_index("ix_accounts_unacknowledged", "accounts", ["acknowledged_at", "first_visit", "id"])

    op.create_table(
        "handoff_questions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("asked_by_id", sa.Integer(), nullable=True),
        sa.Column("asked_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("answered_by_id", sa.Integer(), nullable=True),
        sa.Column("answered_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_handoff_questions_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["asked_by_id"], ["staff_users.id"], name=op.f("fk_handoff_questions_asked_by_id_staff_users")
        ),
        sa.ForeignKeyConstraint(
            ["answered_by_id"],
            ["staff_users.id"],
            name=op.f("fk_handoff_questions_answered_by_id_staff_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handoff_questions")),
    )
    op.create_index(op.f("ix_handoff_questions_account_id"), "handoff_questions", ["account_id"])
    op.create_index(
        "ix_handoff_questions_answered_account", "handoff_questions", ["answered_at", "account_id"]
    )

    op.create_table(
        "first_visit_feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("nonce_hash", sa.String(length=64), nullable=False),
        sa.Column("sent_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("technician_id", sa.Integer(), nullable=True),
        sa.Column("answer", sa.String(length=20), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("answered_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_first_visit_feedback_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["technician_id"],
            ["staff_users.id"],
            name=op.f("fk_first_visit_feedback_technician_id_staff_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_first_visit_feedback")),
        sa.UniqueConstraint("account_id", name=op.f("uq_first_visit_feedback_account_id")),
    )


def downgrade() -> None:
    op.drop_table("first_visit_feedback")
    op.drop_index("ix_handoff_questions_answered_account", table_name="handoff_questions")
    op.drop_index(op.f("ix_handoff_questions_account_id"), table_name="handoff_questions")
    op.drop_table("handoff_questions")
    op.drop_index("ix_accounts_unacknowledged", table_name="accounts")
    op.drop_column("accounts", "cancel_reason")
    op.drop_column("accounts", "cancelled_at")
    op.drop_column("accounts", "acknowledged_at")
    op.drop_column("accounts", "customer_goal")
