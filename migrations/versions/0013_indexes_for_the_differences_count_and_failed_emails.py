"""indexes for the differences count and the failed emails

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02

Measured with bench/staff_scale.py at 100,000 accounts (SQLite):
- The differences queue's capped count reads up to 1,001 open items: through
  (current_outcome, account_id) each one also read its row for withdrawn_at and kind (a kind
  filter read ~8,000 rows to find 1,001 gate-access items, 5 ms). (current_outcome,
  withdrawn_at, account_id, kind) answers it from the index alone, with or without a kind
  (1 ms), and serves every query the old index served (they led with current_outcome only).
  Not (..., kind, account_id): with kind usable as an equality there, SQLite read all 7,000
  open gate-access items and sorted them for one page (40 ms) instead of walking the accounts
  in first-visit order and probing this index per account, as it does now.
- The dashboard's latest failed emails walked the whole outbox backwards by id until it had
  ten failed ones: every email ever sent when few have failed. (status, id) reads just those.

Plain CREATE/DROP INDEX, no batch copy of the tables (that would drop SQLite's triggers).
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_emails_status_id", "outbox_emails", ["status", "id"])
    op.create_index(
        "ix_promise_items_open", "promise_items", ["current_outcome", "withdrawn_at", "account_id", "kind"]
    )
    op.drop_index("ix_promise_items_outcome_account", table_name="promise_items")


def downgrade() -> None:
    op.create_index("ix_promise_items_outcome_account", "promise_items", ["current_outcome", "account_id"])
    op.drop_index("ix_promise_items_open", table_name="promise_items")
    op.drop_index("ix_outbox_emails_status_id", table_name="outbox_emails")
