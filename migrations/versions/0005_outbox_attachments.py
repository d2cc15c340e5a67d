"""outbox emails carry attachments

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

The weekly record seal goes to the admins as a file; each attachment is stored with its
email (filename, content type, base64 data), so a retried delivery sends the same bytes.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox_emails", sa.Column("attachments", sa.JSON(), server_default="[]", nullable=False))


def downgrade() -> None:
    op.drop_column("outbox_emails", "attachments")
