"""one customer contact per account

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

Handoffs used to reuse a customer row found by name and email, so an edit of one account
rewrote another's email and phone (and so who its link went to). Each account now owns its
contact: every account after the first on a shared row gets a copy of that row, and
accounts.customer_id becomes unique. Downgrade keeps the copies (merging them back could not
tell which of two edited copies was right); it only drops the uniqueness.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

customers = sa.table(
    "customers",
    sa.column("id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("email", sa.String),
    sa.column("phone", sa.String),
    # Untyped: the stored value is copied as it is, whatever its format.
    sa.column("created_at"),
)
accounts = sa.table("accounts", sa.column("id", sa.Integer), sa.column("customer_id", sa.Integer))


def split_shared_customers(connection: sa.Connection) -> int:
    """Give every account but the first of each shared customer row a copy of it; returns how
    many copies were made."""
    shared = sa.select(accounts.c.customer_id).group_by(accounts.c.customer_id).having(sa.func.count() > 1)
    rows = connection.execute(
        sa.select(
            accounts.c.id,
            customers.c.id,
            customers.c.name,
            customers.c.email,
            customers.c.phone,
            customers.c.created_at,
        )
        .join(customers, customers.c.id == accounts.c.customer_id)
        .where(accounts.c.customer_id.in_(shared))
        .order_by(accounts.c.customer_id, accounts.c.id)
    ).all()
    copies = 0
    kept: set[int] = set()
    for account_id, customer_id, name, email, phone, created_at in rows:
        if customer_id not in kept:
            kept.add(customer_id)  # the oldest account keeps the original row
            continue
        new_id = connection.execute(
            customers.insert()
            .values(name=name, email=email, phone=phone, created_at=created_at)
            .returning(customers.c.id)
        ).scalar_one()
        connection.execute(accounts.update().where(accounts.c.id == account_id).values(customer_id=new_id))
        copies += 1
    return copies


def upgrade() -> None:
    split_shared_customers(op.get_bind())
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_accounts_customer_id"))
        batch_op.create_index(batch_op.f("ix_accounts_customer_id"), ["customer_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_accounts_customer_id"))
        batch_op.create_index(batch_op.f("ix_accounts_customer_id"), ["customer_id"], unique=False)
