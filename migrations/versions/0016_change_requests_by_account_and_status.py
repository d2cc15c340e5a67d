"""change requests by account and status

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02

The inbox (portal/inbox.py) walks accounts in first-visit order (ix_accounts_first_visit_id)
and, per account, probes its open differences (ix_promise_items_account_outcome) and its open
change requests: (account_id, status) answers that probe from the index, where the
account_id index alone read every request the account ever made. The (status, account_id)
index stays: the inbox's capped count is driven from it.

Plain CREATE/DROP INDEX, no batch copy of the table (that would drop SQLite's triggers).
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_change_requests_account_status", "change_requests", ["account_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_change_requests_account_status", table_name="change_requests")
