"""The first-visit brief: what the customer confirmed, in the order a technician needs it."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from portal import access, confirmations, record
from portal.handoffs import display_value
from portal.models import DIFFERENT, Account, StaffUser

SECTIONS = (("visit_day", "Visit day"), ("start_date", "First visit"), ("gate_access", "Gate access"),
            ("safety", "Safety"), ("equipment", "Equipment promises"), ("custom", "Other promises"),
            ("billing", "Billing"), ("price", "Plan and price"))


@dataclass(frozen=True)
class BriefLine:
    label: str
    value: str
    unresolved: bool
    promised: str
    note: str


@dataclass
class Brief:
    account: Account
    sections: list[tuple[str, list[BriefLine]]]
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def unresolved(self) -> list[BriefLine]:
        return [line for _, lines in self.sections for line in lines if line.unresolved]


def brief_for(session: Session, account: Account) -> Brief:
    lines: dict[str, list[BriefLine]] = {kind: [] for kind, _ in SECTIONS}
    for state in record.item_states(session, account):
        latest = state.latest
        lines[state.item.kind].append(BriefLine(
            label=state.item.label,
            value=display_value(state.current_value, state.item.kind),
            unresolved=state.outcome in DIFFERENT,
            promised=display_value(state.item.promised_value, state.item.kind),
            note=latest.note if latest is not None and latest.actor != "system" and
            not latest.note.startswith("promised by") else "",
        ))
    sections = [(title, lines[kind]) for kind, title in SECTIONS if lines[kind]]
    return Brief(account, sections, confirmations.latest_step_details(session, account))


def visits_on(session: Session, day: date, user: StaffUser) -> list[Account]:
    """Accounts whose first visit is on `day` that `user` may see, for the day list."""
    return list(session.scalars(
        access.visible_accounts(user).where(Account.first_visit == day).order_by(Account.service_address)))
