"""visits per week on the plan

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02

The plan says how many service days a week it has (weekly = 1): the office picks that many of
the customer's preferred days when it decides a visit-day difference. Existing accounts get
the number of days their visit-day promise names (a handoff promising "Monday, Thursday" was
sold as twice a week), or 1 without one.

Plain ALTER TABLE ADD/DROP COLUMN (SQLite has both), not batch mode: a batch copy of
`accounts` would drop the search and count triggers of 0009 with the old table.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _days(value: str) -> int:
    """How many weekdays a stored visit-day promise names ("Monday, Thursday" -> 2)."""
    return len({part.strip().lower() for part in value.split(",") if part.strip().lower() in WEEKDAYS})


def upgrade() -> None:
    op.add_column("accounts", sa.Column("visits_per_week", sa.Integer(), server_default="1", nullable=False))
    items = sa.table(
        "promise_items",
        sa.column("account_id", sa.Integer),
        sa.column("kind", sa.String),
        sa.column("promised_value", sa.Text),
        sa.column("withdrawn_at", sa.DateTime),
    )
    accounts = sa.table("accounts", sa.column("id", sa.Integer), sa.column("visits_per_week", sa.Integer))
    connection = op.get_bind()
    found = connection.execute(
        sa.select(items.c.account_id, items.c.promised_value).where(
            items.c.kind == "visit_day", items.c.withdrawn_at.is_(None)
        )
    )
    per_account: dict[int, int] = {}
    for account_id, value in found:
        per_account[account_id] = max(per_account.get(account_id, 0), _days(value or ""))
    for account_id, days in per_account.items():
        if days > 1:
            connection.execute(
                accounts.update().where(accounts.c.id == account_id).values(visits_per_week=days)
            )


def downgrade() -> None:
    op.drop_column("accounts", "visits_per_week")
