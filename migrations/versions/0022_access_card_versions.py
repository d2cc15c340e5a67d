"""access card versions

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02

The customer's access card (portal/access_card.py): one row per version, each valid from its
effective date, each with the record entry that reports it. A new table only: no batch copy of
an existing one (that would drop SQLite's triggers).
"""

import sqlalchemy as sa
from alembic import op

import portal.db

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_card_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("effective_date", sa.Date(), nullable=False),
        sa.Column("card", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=40), nullable=False),
        sa.Column("record_entry_id", sa.Integer(), nullable=False),
        sa.Column("created_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_access_card_versions_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["record_entry_id"],
            ["record_entries.id"],
            name=op.f("fk_access_card_versions_record_entry_id_record_entries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_card_versions")),
        sa.UniqueConstraint("account_id", "version", name="uq_access_card_versions_account_version"),
    )


def downgrade() -> None:
    op.drop_table("access_card_versions")
