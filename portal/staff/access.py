"""Which accounts a staff user may see: sales their own, office and admin all."""
from __future__ import annotations

from flask import abort
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from portal.models import Account, Role, StaffUser

SELLING_ROLES = ("sales", "office", "admin")


def visible_accounts(user: StaffUser) -> Select[Account]:
    query = select(Account).where(Account.deleted_at.is_(None))
    if user.role == Role.SALES.value:
        query = query.where(Account.salesperson_id == user.id)
    return query


def account_or_404(session: Session, account_id: int, user: StaffUser) -> Account:
    """404 rather than 403 for someone else's account: no hint that it exists."""
    account = session.scalars(visible_accounts(user).where(Account.id == account_id)).first()
    if account is None:
        abort(404)
    return account


_SALESPEOPLE = (select(StaffUser).where(StaffUser.active.is_(True), StaffUser.role.in_(SELLING_ROLES))
                .order_by(StaffUser.name, StaffUser.email))


def salespeople(session: Session) -> list[StaffUser]:
    return list(session.scalars(_SALESPEOPLE))
