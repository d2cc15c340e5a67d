"""settings: uploaded logo, email sending name and Reply-To; the outbox keeps its file name

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

The logo is uploaded now (a file under the instance folder, named in `logo_file`); a logo
saved as a path inside static/ keeps showing until an upload or "remove" replaces it. Emails
carry the company's sending name and Reply-To. In file mode each sent email records the .eml
it became, so staff can find it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("company_settings") as batch:
        batch.add_column(sa.Column("logo_file", sa.String(length=100), server_default="", nullable=False))
        batch.add_column(sa.Column("sender_name", sa.String(length=120), server_default="", nullable=False))
        batch.add_column(sa.Column("reply_to", sa.String(length=254), server_default="", nullable=False))
    op.add_column(
        "outbox_emails", sa.Column("file_name", sa.String(length=255), server_default="", nullable=False)
    )


def downgrade() -> None:
    with op.batch_alter_table("outbox_emails") as batch:
        batch.drop_column("file_name")
    with op.batch_alter_table("company_settings") as batch:
        batch.drop_column("reply_to")
        batch.drop_column("sender_name")
        batch.drop_column("logo_file")
