"""photos

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02

Photos for the technician (issue 20, part B): one row per photo, naming its stored full-size
image and thumbnail (portal/storage.py keeps the bytes, never the database). A removed photo
keeps its row (record entries name it) with who removed it, when and why. A new table only: no
batch copy of an existing table (that would drop SQLite's triggers).
"""

import sqlalchemy as sa
from alembic import op

import portal.db

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "photos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("storage_key", sa.String(length=200), nullable=False),
        sa.Column("thumb_key", sa.String(length=200), nullable=False),
        sa.Column("content_type", sa.String(length=40), nullable=False),
        sa.Column("caption", sa.String(length=200), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("added_by", sa.String(length=20), nullable=False),
        sa.Column("added_by_staff_id", sa.Integer(), nullable=True),
        sa.Column("created_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("removed_at", portal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("removed_by_id", sa.Integer(), nullable=True),
        sa.Column("removed_reason", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_photos_account_id_accounts")),
        sa.ForeignKeyConstraint(
            ["added_by_staff_id"], ["staff_users.id"], name=op.f("fk_photos_added_by_staff_id_staff_users")
        ),
        sa.ForeignKeyConstraint(
            ["removed_by_id"], ["staff_users.id"], name=op.f("fk_photos_removed_by_id_staff_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_photos")),
    )
    with op.batch_alter_table("photos", schema=None) as batch_op:
        batch_op.create_index("ix_photos_account_removed", ["account_id", "removed_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("photos", schema=None) as batch_op:
        batch_op.drop_index("ix_photos_account_removed")

    op.drop_table("photos")
