"""Handoffs: an account, its promise items and one record entry per promise, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy.orm import Session

from portal import deliverables, links, record
from portal.db import utcnow
from portal.models import Account, AccountStatus, Customer, PromiseItem, PromiseKind, StaffUser
from portal.money import format_money
from portal.occasions import Occasion, default_for

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
    # When a deliverable is due and who owns it; None: not said (a new promise takes its
    # kind's default, an edited one keeps what it had).
    occasion: Occasion | None = None


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
    visits_per_week: int = 1  # service days a week (weekly = 1)
    billing_cadence: str = "monthly"  # what price_cents buys (validation.CADENCES)


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


# What a plan's price buys, and how the price promise says it.
CADENCES = {"monthly": "per month", "quarterly": "per quarter", "per_visit": "per visit"}


def price_promise(plan: str, price_cents: int, currency: str | None = None, cadence: str = "monthly") -> str:
    return f"{plan}, {format_money(price_cents, currency)} {CADENCES.get(cadence, 'per month')}"


def with_derived_promises(data: HandoffData, currency: str | None = None) -> list[Promise]:
    """The promises as entered plus the price and first visit, which the customer confirms too."""
    promises = list(data.promises)
    kinds = {p.kind for p in promises}
    if PromiseKind.PRICE.value not in kinds:
        price = price_promise(data.plan, data.price_cents, currency, data.billing_cadence)
        promises.append(Promise(PromiseKind.PRICE.value, price))
    if PromiseKind.START_DATE.value not in kinds and data.first_visit is not None:
        promises.append(Promise(PromiseKind.START_DATE.value, data.first_visit.isoformat()))
    return sorted(promises, key=lambda p: KIND_ORDER.index(p.kind))


def new_customer(data: HandoffData) -> Customer:
    """Every account gets its own contact row. Never a lookup by name and email: a shared row
    let whoever created a look-alike handoff edit another account's address and take its link."""
    return Customer(
        name=data.customer_name, email=data.customer_email.strip().lower(), phone=data.customer_phone
    )


def create_handoff(
    session: Session,
    data: HandoffData,
    salesperson: StaffUser | None,
    currency: str | None = None,
    actor: str | None = None,
) -> Account:
    """Write the account, its items and their 'promised' entries. The caller commits. The
    entries' actor is who entered the handoff (`actor`, e.g. the office typing it in for a
    salesperson); each item keeps who promised it."""
    account = Account(
        customer=new_customer(data),
        service_address=data.service_address,
        plan=data.plan,
        visits_per_week=data.visits_per_week,
        billing_cadence=data.billing_cadence,
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
        _add_item(session, account, promise, position, salesperson, actor or staff_actor(salesperson))
    session.refresh(account, ["all_items"])
    return account


DERIVED_KINDS = (PromiseKind.PRICE.value, PromiseKind.START_DATE.value)


class OnboardingSigned(Exception):
    """Signing froze the onboarding: promises, answers and links no longer change; the
    customer's 'ask for a change' is the way forward. Views turn this into a message."""


def update_handoff(
    session: Session,
    account: Account,
    data: HandoffData,
    item_ids: list[int | None],
    salesperson: StaffUser | None,
    actor: str,
) -> list[str]:
    """Apply an edit made before signing. `item_ids[i]` is the item `data.promises[i]` edits
    (None for a new promise); items not named are withdrawn. Every change is a record entry.
    Returns what changed, in words, for the flash message."""
    if account.status == AccountStatus.SIGNED.value:
        raise OnboardingSigned(
            "The customer has signed: change an agreed value on the account page (the customer is told)."
        )
    changes = _update_account_fields(session, account, data, salesperson, actor)
    current = {item.id: item for item in account.items}
    pairs = list(zip(item_ids, data.promises, strict=True))  # one id per promise, None for new
    for promise in with_derived_promises(data):
        if promise.kind in DERIVED_KINDS:
            existing = next((i for i in current.values() if i.kind == promise.kind), None)
            pairs.append((existing.id if existing else None, promise))
    kept: set[int] = set()
    for position, (item_id, promise) in enumerate(pairs):
        item = current.get(item_id) if item_id is not None else None
        if item is None:
            _add_item(session, account, promise, position, salesperson, actor)
            changes.append(f"added {promise.kind.replace('_', ' ')}")
            continue
        kept.add(item.id)
        item.position = position
        edited = (promise.kind, promise.label or item.label, promise.value)
        if (item.kind, item.label, item.promised_value) != edited:
            old = item.promised_value
            item.kind, item.label, item.promised_value = edited
            record.append(
                session,
                account,
                event="promise_edited",
                actor=actor,
                item=item,
                promised_value=item.promised_value,
                outcome="promised",
                note=f"was: {old}",
            )
            changes.append(f"changed {item.label.lower()}")
        if promise.occasion is not None and deliverables.set_occasion(item, promise.occasion):
            record.append(
                session,
                account,
                event="promise_occasion",
                actor=actor,
                item=item,
                promised_value=item.promised_value,
                note=promise.occasion.words(account.first_visit) or "not tracked",
                details=occasion_details(account, item),
            )
            changes.append(f"changed when {item.label.lower()} is due")
    for item in current.values():
        if item.id not in kept:
            item.withdrawn_at = utcnow()
            record.append(
                session,
                account,
                event="promise_withdrawn",
                actor=actor,
                item=item,
                promised_value=item.promised_value,
                outcome="withdrawn",
            )
            changes.append(f"withdrew {item.label.lower()}")
    session.flush()
    session.refresh(account, ["all_items"])
    deliverables.plan_account(session, account)  # withdrawn, re-dated, a moved first visit
    return changes


def _add_item(
    session: Session,
    account: Account,
    promise: Promise,
    position: int,
    salesperson: StaffUser | None,
    actor: str,
) -> PromiseItem:
    item = PromiseItem(
        account_id=account.id,
        kind=promise.kind,
        label=promise.label or KIND_LABELS[promise.kind],
        promised_value=promise.value,
        promised_by_id=salesperson.id if salesperson else None,
        position=position,
    )
    deliverables.set_occasion(item, promise.occasion or default_for(promise.kind))
    session.add(item)
    session.flush()
    record.append(
        session,
        account,
        event="promised",
        actor=actor,
        item=item,
        promised_value=item.promised_value,
        outcome="promised",
        note=f"promised by {salesperson.display_name if salesperson else 'sales'}",
        details=occasion_details(account, item),
    )
    deliverables.plan(session, account, item)
    return item


def occasion_details(account: Account, item: PromiseItem) -> dict[str, str] | None:
    return deliverables.details(deliverables.occasion_of(item), account.first_visit)


def _update_account_fields(
    session: Session, account: Account, data: HandoffData, salesperson: StaffUser | None, actor: str
) -> list[str]:
    changes = _update_contact(session, account, data, actor)
    for name in (
        "service_address",
        "plan",
        "visits_per_week",
        "billing_cadence",
        "price_cents",
        "first_visit",
        "why_chose_us",
        "concerns",
        "contact_preference",
    ):
        setattr(account, name, getattr(data, name))
    account.salesperson = salesperson
    return changes


def _update_contact(session: Session, account: Account, data: HandoffData, actor: str) -> list[str]:
    """The account's own contact row (see new_customer); every change is a record entry."""
    customer = account.customer
    changes = []
    new_email = data.customer_email.strip().lower()
    if new_email != customer.email:
        # The same event the customer's own confirmed change writes, so it also closes any
        # change the customer asked for from the old address.
        record.append(
            session,
            account,
            event="email_changed",
            actor=actor,
            details={"from": customer.email, "to": new_email},
        )
        if account.link_sent_at is not None:
            # The old address holds a working link; revoke it so only the new address gets in.
            links.rotate_nonce(account)
            changes.append("changed the email address (send the link again)")
        else:
            changes.append("changed the email address")
        customer.email = new_email
    moved = {
        name: {"from": getattr(customer, name), "to": getattr(data, f"customer_{name}")}
        for name in ("name", "phone")
        if getattr(customer, name) != getattr(data, f"customer_{name}")
    }
    if moved:
        record.append(session, account, event="contact_changed", actor=actor, details=moved)
        changes += [f"changed the customer's {name}" for name in moved]
        for name, change in moved.items():
            setattr(customer, name, change["to"])
    return changes
