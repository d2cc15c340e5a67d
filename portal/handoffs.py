"""Handoffs: an account, its promise items and one record entry per promise, in one transaction."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import record
from portal.models import Account, AccountStatus, Customer, PromiseItem, PromiseKind, StaffUser
from portal.money import format_money

KIND_LABELS = {
    PromiseKind.VISIT_DAY.value: "Visit day",
    PromiseKind.START_DATE.value: "First visit",
    PromiseKind.GATE_ACCESS.value: "Gate access",
    PromiseKind.SAFETY.value: "Safety",
    PromiseKind.EQUIPMENT.value: "Equipment",
    PromiseKind.PRICE.value: "Price",
    PromiseKind.BILLING.value: "Billing",
    PromiseKind.CUSTOM.value: "Other promise",
}
KIND_ORDER = list(KIND_LABELS)


@dataclass
class Promise:
    kind: str
    value: str
    label: str = ""


@dataclass
class HandoffData:
    customer_name: str
    customer_email: str
    customer_phone: str
    service_address: str
    plan: str
    price_cents: int
    first_visit: date | None
    promises: list[Promise] = field(default_factory=list)
    why_chose_us: str = ""
    concerns: str = ""
    contact_preference: str = ""


def display_value(value: str | None, kind: str) -> str:
    """How a promised or confirmed value reads to people (dates are stored as ISO dates)."""
    if value and kind == PromiseKind.START_DATE.value:
        try:
            return date.fromisoformat(value).strftime("%A, %B %-d, %Y")
        except ValueError:
            return value
    return value or ""


def staff_actor(user: StaffUser | None) -> str:
    return f"staff:{user.id}" if user is not None else "system"


def price_promise(plan: str, price_cents: int, currency: str | None = None) -> str:
    return f"{plan}, {format_money(price_cents, currency)} per month"


def with_derived_promises(data: HandoffData, currency: str | None = None) -> list[Promise]:
    """The promises as entered plus the price and first visit, which the customer confirms too."""
    promises = list(data.promises)
    kinds = {p.kind for p in promises}
    if PromiseKind.PRICE.value not in kinds:
        promises.append(Promise(PromiseKind.PRICE.value, price_promise(data.plan, data.price_cents, currency)))
    if PromiseKind.START_DATE.value not in kinds and data.first_visit is not None:
        promises.append(Promise(PromiseKind.START_DATE.value, data.first_visit.isoformat()))
    return sorted(promises, key=lambda p: KIND_ORDER.index(p.kind))


def find_or_create_customer(session: Session, data: HandoffData) -> Customer:
    email = data.customer_email.strip().lower()
    customer = session.scalars(
        select(Customer).where(Customer.email == email, Customer.name == data.customer_name)
    ).first()
    if customer is None:
        customer = Customer(name=data.customer_name, email=email, phone=data.customer_phone)
        session.add(customer)
    elif data.customer_phone:
        customer.phone = data.customer_phone
    return customer


def create_handoff(
    session: Session, data: HandoffData, salesperson: StaffUser | None, currency: str | None = None
) -> Account:
    """Write the account, its items and their 'promised' entries. The caller commits."""
    account = Account(
        customer=find_or_create_customer(session, data),
        service_address=data.service_address,
        plan=data.plan,
        price_cents=data.price_cents,
        first_visit=data.first_visit,
        salesperson=salesperson,
        status=AccountStatus.DRAFT.value,
        why_chose_us=data.why_chose_us,
        concerns=data.concerns,
        contact_preference=data.contact_preference,
    )
    session.add(account)
    session.flush()
    for position, promise in enumerate(with_derived_promises(data, currency)):
        item = PromiseItem(
            account_id=account.id,
            kind=promise.kind,
            label=promise.label or KIND_LABELS[promise.kind],
            promised_value=promise.value,
            promised_by_id=salesperson.id if salesperson else None,
            position=position,
        )
        session.add(item)
        session.flush()
        record.append(
            session,
            account,
            event="promised",
            actor=staff_actor(salesperson),
            item=item,
            promised_value=item.promised_value,
            outcome="promised",
            note=f"promised by {salesperson.display_name if salesperson else 'sales'}",
        )
    session.refresh(account, ["items"])
    return account
