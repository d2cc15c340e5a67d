"""change requests and decision notices

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

Decisions close the loop (issue 16): a signed customer's "ask for a change" becomes a
change_requests row the office inbox lists and decides (open, accepted, declined, with the
staff note and who decided when); each decision a customer has not been emailed about waits
in decision_notices until the worker sends an account's waiting decisions as one email.
No data moves (change requests made before this revision stay record entries only).
"""

import sqlalchemy as sa
from alembic import op

import portal.db

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "change_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("requested_value", sa.Text(), nullable=False),
        sa.Column("effective_date", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("staff_note", sa.Text(), nullable=False),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_change_requests_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["staff_users.id"], name=op.f("fk_change_requests_decided_by_id_staff_users")
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["promise_items.id"], name=op.f("fk_change_requests_item_id_promise_items")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_requests")),
    )
    with op.batch_alter_table("change_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_change_requests_account_id"), ["account_id"], unique=False)
        batch_op.create_index("ix_change_requests_status_account", ["status", "account_id"], unique=False)

    op.create_table(
        "decision_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("created_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("emailed_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_decision_notices_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["record_entries.id"], name=op.f("fk_decision_notices_entry_id_record_entries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decision_notices")),
    )
    with op.batch_alter_table("decision_notices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_decision_notices_account_id"), ["account_id"], unique=False)
        batch_op.create_index(
            "ix_decision_notices_emailed_created", ["emailed_at", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("decision_notices", schema=None) as batch_op:
        batch_op.drop_index("ix_decision_notices_emailed_created")
        batch_op.drop_index(batch_op.f("ix_decision_notices_account_id"))

    op.drop_table("decision_notices")
    with op.batch_alter_table("change_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_change_requests_status_account")
        batch_op.drop_index(batch_op.f("ix_change_requests_account_id"))

    op.drop_table("change_requests")
