"""staff audit, invites and last sign-in

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

Staff are now run from the browser: an append-only staff_audit table (who did what to which
staff account, when, in which request), and on staff_users when the password was chosen (None
while an invite is open) and the last sign-in. Existing users chose their password when they
were created, so password_set_at starts as created_at.
"""

import sqlalchemy as sa
from alembic import op

import portal.db

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("password_set_at", portal.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_sign_in_at", portal.db.UTCDateTime(timezone=True), nullable=True))
    staff = sa.table("staff_users", sa.column("password_set_at"), sa.column("created_at"))
    op.execute(staff.update().values(password_set_at=staff.c.created_at))

    op.create_table(
        "staff_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", portal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["staff_users.id"], name=op.f("fk_staff_audit_actor_id_staff_users")
        ),
        sa.ForeignKeyConstraint(
            ["target_id"], ["staff_users.id"], name=op.f("fk_staff_audit_target_id_staff_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_audit")),
    )
    with op.batch_alter_table("staff_audit", schema=None) as batch_op:
        batch_op.create_index("ix_staff_audit_target", ["target_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("staff_audit", schema=None) as batch_op:
        batch_op.drop_index("ix_staff_audit_target")
    op.drop_table("staff_audit")
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.drop_column("last_sign_in_at")
        batch_op.drop_column("password_set_at")
