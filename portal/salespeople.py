"""Who may be named as the salesperson on a handoff: chosen on the staff form, or named by
email when it arrives by API or CSV. One rule for every door: an active staff user with a
selling role, or no salesperson at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.handoffs import HandoffData
from portal.models import Role, StaffUser
from portal.validation import HandoffInvalid, parse_handoff

SELLING_ROLES = (Role.SALES.value, Role.OFFICE.value, Role.ADMIN.value)
FIELD = "salesperson_email"
UNKNOWN = "No active sales, office or admin user has this email address."

Lookup = Callable[[str], StaffUser | None]


@dataclass(frozen=True)
class IncomingHandoff:
    data: HandoffData
    salesperson: StaffUser | None


def _selling_staff() -> Any:
    return select(StaffUser).where(StaffUser.active.is_(True), StaffUser.role.in_(SELLING_ROLES))


def salespeople(session: Session) -> list[StaffUser]:
    """Everyone who may be named as the salesperson, by name: the choices on staff forms."""
    return list(session.scalars(_selling_staff().order_by(StaffUser.name, StaffUser.email)))


def find_salesperson(session: Session, email: str) -> StaffUser | None:
    """One query; for a single handoff (the API)."""
    statement = _selling_staff().where(func.lower(StaffUser.email) == email.strip().lower())
    return session.scalars(statement).first()


def active_salespeople(session: Session) -> dict[str, StaffUser]:
    """Every possible salesperson by lower-case email, loaded once for a whole file."""
    return {user.email.strip().lower(): user for user in session.scalars(_selling_staff())}


def parse_incoming(payload: Any, lookup: Lookup, today: date | None = None) -> IncomingHandoff:
    """`parse_handoff` plus the salesperson; raises `HandoffInvalid` with every error at once."""
    errors: dict[str, str] = {}
    data: HandoffData | None = None
    try:
        data = parse_handoff(payload, today)
    except HandoffInvalid as invalid:
        errors.update(invalid.errors)
    salesperson = None
    if isinstance(payload, Mapping):
        salesperson, problem = _salesperson(payload.get(FIELD), lookup)
        if problem:
            errors[FIELD] = problem
    if errors or data is None:
        raise HandoffInvalid(errors)
    return IncomingHandoff(data, salesperson)


def _salesperson(value: Any, lookup: Lookup) -> tuple[StaffUser | None, str | None]:
    if value is None:
        return None, None
    if not isinstance(value, str):
        return None, "The salesperson's email must be text."
    email = value.strip()
    if not email:
        return None, None
    if len(email) > 254:
        return None, UNKNOWN
    user = lookup(email.lower())
    return (user, None) if user is not None else (None, UNKNOWN)
