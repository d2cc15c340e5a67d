"""The customer's side of the loop: answers to each promise, the readiness checklist, contact
preferences, signing, and change requests. Every answer is a service record entry; the current
state is always derived from the record, so answering twice simply makes the later answer win."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import (Connection, Select, bindparam, cast, literal_column, null, select, true,
                        union_all, update)
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from portal import record
from portal.company import get_company
from portal.db import utcnow
from portal.handoffs import OnboardingSigned, display_value
from portal.mail import queue_email
from portal.models import Account, AccountStatus, Customer, PromiseItem, RecordEntry
from portal.validation import WEEKDAYS, normalise_weekdays

CUSTOMER = "customer"
ANSWERED = ("confirmed", "changed", "disputed", "resolved")


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    kinds: tuple[str, ...] = ()
    event: str = ""  # for steps without items: the record event that marks them done


STEPS = (
    Step("welcome", "Welcome", event="started"),
    Step("schedule", "Visit schedule", kinds=("visit_day", "start_date")),
    Step("access", "Access and safety", kinds=("gate_access", "safety")),
    Step("readiness", "Before the first visit", event="readiness"),
    Step("contact", "How to reach you", event="contact_preferences"),
    Step("promises", "Service promises", kinds=("equipment", "custom")),
    Step("billing", "Price and billing", kinds=("price", "billing")),
    Step("review", "Review and sign", event="signed"),
)
STEP_BY_NAME = {step.name: step for step in STEPS}


@dataclass
class StepStatus:
    step: Step
    number: int
    done: bool
    items: list[PromiseItem | StepItem] = field(default_factory=list)


@dataclass
class Progress:
    steps: list[StepStatus]
    signed: bool

    @property
    def first_unfinished(self) -> StepStatus:
        return next((s for s in self.steps if not s.done), self.steps[-1])

    def get(self, name: str) -> StepStatus | None:
        return next((s for s in self.steps if s.step.name == name), None)

    def neighbours(self, name: str) -> tuple[StepStatus | None, StepStatus | None]:
        names = [s.step.name for s in self.steps]
        index = names.index(name)
        before = self.steps[index - 1] if index > 0 else None
        after = self.steps[index + 1] if index + 1 < len(self.steps) else None
        return before, after

    @property
    def unfinished_before_review(self) -> list[StepStatus]:
        return [s for s in self.steps[:-1] if not s.done]


def progress(session: Session, account: Account) -> Progress:
    """Which steps this account has, and which are done: the items (their current outcome is
    kept on them by record.append) and one query for the step events, whatever the size."""
    events = set(session.connection().scalars(CUSTOMER_EVENTS_SQL, {"account_id": account.id}))
    return progress_of(account.items, events, account.status == AccountStatus.SIGNED.value)


STEP_EVENTS = tuple(step.event for step in STEPS if step.event)
# Written into the SQL (they are constants of this module): a bound IN list is expanded on
# every execution, which cost more than the rest of the customer pages' read.
_STEP_EVENTS_SQL = [literal_column(f"'{event}'") for event in STEP_EVENTS]


def _customer_events(account_id: Any) -> Select[tuple[str]]:
    # Only the events that finish a step: probes of the (event, account) index, however long
    # the account's record grows (years of visits and invoices).
    return (select(RecordEntry.event)
            .where(RecordEntry.event.in_(_STEP_EVENTS_SQL), RecordEntry.account_id == account_id,
                   RecordEntry.actor == CUSTOMER).distinct())


CUSTOMER_EVENTS_SQL = _customer_events(bindparam("account_id"))


def progress_of(items: Sequence[Any], events: set[str], signed: bool) -> Progress:
    """The steps from the items in force (anything with .kind and .current_outcome: ORM items
    or plain rows) and the events the customer has recorded."""
    steps: list[StepStatus] = []
    for step in STEPS:
        mine = [item for item in items if item.kind in step.kinds]
        if step.kinds and not mine:
            continue  # nothing promised of this kind: no step to show
        if step.kinds:
            done = all(item.current_outcome in ANSWERED for item in mine)
        else:
            done = step.event in events
        steps.append(StepStatus(step, len(steps) + 1, done, mine))
    return Progress(steps, signed)


@dataclass(frozen=True)
class StepItem:
    """A promise in force as a plain row: what the step forms show and an answer records."""
    id: int
    kind: str
    label: str
    promised_value: str
    current_outcome: str


@dataclass(frozen=True)
class StepAccount:
    """A customer's account as the step pages need it, read as plain rows in one query (no
    ORM objects): the session check, the progress bar and the promises to answer."""
    id: int
    link_nonce_hash: str | None
    deleted_at: Any
    signed_at: Any
    customer_name: str
    service_address: str
    first_visit: date | None
    progress: Progress


def _step_account_statement() -> Select[Any]:
    """One round trip: the account's row once per item in force and per customer event (an
    item's outcome is never NULL, so a NULL outcome marks an event)."""
    accounts, customers, items = Account.__table__, Customer.__table__, PromiseItem.__table__
    account_id = bindparam("account_id")
    in_force = (select(items.c.kind, items.c.current_outcome, items.c.id.label("item_id"),
                       items.c.label, items.c.promised_value, items.c.position)
                .where(items.c.account_id == account_id, items.c.withdrawn_at.is_(None)))
    # Typed NULLs: PostgreSQL types an untyped NULL under DISTINCT as text before the UNION.
    events = _customer_events(account_id).add_columns(  # type: ignore[arg-type]
        *(cast(null(), column.type) for column in list(in_force.selected_columns)[1:]))
    parts = union_all(in_force, events).subquery()
    return (select(accounts.c.id, accounts.c.link_nonce_hash, accounts.c.deleted_at,
                   accounts.c.signed_at, accounts.c.status, accounts.c.service_address,
                   accounts.c.first_visit, customers.c.name.label("customer_name"),
                   parts.c.kind, parts.c.current_outcome, parts.c.item_id, parts.c.label,
                   parts.c.promised_value, parts.c.position)
            .join(customers, customers.c.id == accounts.c.customer_id)
            .outerjoin(parts, true())
            .where(accounts.c.id == account_id))


# Built once: making the statement object cost more than running it on this page.
STEP_ACCOUNT_SQL = _step_account_statement()


def read_step_account(connection: Connection, account_id: int) -> StepAccount | None:
    found = connection.execute(STEP_ACCOUNT_SQL, {"account_id": account_id}).all()
    if not found:
        return None
    row = found[0]
    in_force = sorted((r for r in found if r.current_outcome is not None), key=lambda r: (r.position, r.item_id))
    items = [StepItem(r.item_id, r.kind, r.label, r.promised_value, r.current_outcome) for r in in_force]
    progress = progress_of(items, {r.kind for r in found if r.kind is not None and r.current_outcome is None},
                           row.status == AccountStatus.SIGNED.value)
    return StepAccount(row.id, row.link_nonce_hash, row.deleted_at, row.signed_at, row.customer_name,
                       row.service_address, row.first_visit, progress)


@dataclass(frozen=True)
class Answer:
    item: PromiseItem | StepItem
    outcome: str  # confirmed, changed or disputed
    value: str | None
    comment: str = ""


_STARTED = (AccountStatus.LINK_SENT.value, AccountStatus.OPENED.value, AccountStatus.DRAFT.value)
# The version moves too: a staff save from a form loaded before this answer is refused, as
# for any other change to the account.
_MARK_IN_PROGRESS_SQL = (
    update(Account.__table__)
    .where(Account.__table__.c.id == bindparam("account_id"), Account.__table__.c.status.in_(_STARTED))
    .values(status=AccountStatus.IN_PROGRESS.value, version=Account.__table__.c.version + 1)
    .returning(Account.__table__.c.version))


def _ensure_open(session: Session, account: Account | StepAccount) -> str | None:
    """The status read again under the account's row lock: a second tab may have signed
    since this request loaded the account."""
    status = record.lock_account(session, account.id)
    if isinstance(account, Account):
        set_committed_value(account, "status", status)
    if status == AccountStatus.SIGNED.value:
        raise OnboardingSigned("Your onboarding is signed. To change something, ask for a change.")
    return status


def _open_for_answers(session: Session, account: Account | StepAccount) -> None:
    """As _ensure_open, and a first answer moves the onboarding to in progress."""
    if _ensure_open(session, account) not in _STARTED:
        return
    version = session.connection().scalar(_MARK_IN_PROGRESS_SQL, {"account_id": account.id})
    if isinstance(account, Account):
        set_committed_value(account, "status", AccountStatus.IN_PROGRESS.value)
        set_committed_value(account, "version", version)


def record_answers(session: Session, account: Account | StepAccount, answers: list[Answer]) -> None:
    _open_for_answers(session, account)
    record.append_all(session, account, [
        record.Change("answered", CUSTOMER, answer.item, answer.item.promised_value, answer.value,
                      answer.outcome, answer.comment) for answer in answers])


def record_step_event(session: Session, account: Account | StepAccount, event: str, *,
                      confirmed: str = "", note: str = "", details: dict[str, Any] | None = None) -> None:
    """Answers that belong to no promise: started, readiness, contact preferences, notes."""
    _open_for_answers(session, account)
    record.append(session, account, event=event, actor=CUSTOMER, confirmed_value=confirmed or None,
                  note=note, details=details or {})


def record_opened(session: Session, account: Account) -> None:
    if account.link_opened_at is None:
        account.link_opened_at = utcnow()
    if account.status == AccountStatus.LINK_SENT.value:
        account.status = AccountStatus.OPENED.value
    record.append(session, account, event="link_opened", actor=CUSTOMER)


@dataclass(frozen=True)
class SummaryLine:
    label: str
    promised: str
    confirmed: str
    outcome: str
    comment: str


def summary(session: Session, account: Account) -> list[SummaryLine]:
    """Every promise with the customer's latest answer, as the review page and emails show it."""
    lines = []
    for state in record.item_states(session, account):
        latest = state.latest
        lines.append(SummaryLine(
            label=state.item.label,
            promised=display_value(state.item.promised_value, state.item.kind),
            confirmed=display_value(state.current_value, state.item.kind),
            outcome=state.outcome,
            comment=latest.note if latest is not None and latest.actor == CUSTOMER else "",
        ))
    return lines


def latest_step_details(session: Session, account: Account) -> dict[str, dict[str, Any]]:
    """The latest readiness, contact and technician-note answers, by event."""
    wanted = ("readiness", "contact_preferences", "technician_note", "sms_consent")
    found: dict[str, dict[str, Any]] = {}
    for entry in session.scalars(select(RecordEntry).where(
            RecordEntry.account_id == account.id, RecordEntry.event.in_(wanted))
            .order_by(RecordEntry.seq)):
        found[entry.event] = {**entry.details, "value": entry.confirmed_value, "note": entry.note}
    return found


def summary_hash(lines: list[SummaryLine], extras: dict[str, dict[str, Any]]) -> str:
    canonical = json.dumps({"lines": [line.__dict__ for line in lines], "extras": extras},
                           sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def sign(session: Session, account: Account, typed_name: str) -> RecordEntry:
    """Freeze the onboarding: one entry carrying a hash of everything confirmed, and the emails."""
    _ensure_open(session, account)
    lines = summary(session, account)
    extras = latest_step_details(session, account)
    digest = summary_hash(lines, extras)
    entry = record.append(session, account, event="signed", actor=CUSTOMER, confirmed_value=typed_name,
                          note="signed the onboarding summary",
                          details={"summary_sha256": digest, "promises": len(lines)})
    account.signed_at = utcnow()
    account.status = AccountStatus.SIGNED.value
    differences = [line for line in lines if line.outcome in ("changed", "disputed")]
    _queue_signed_emails(session, account, lines, differences)
    return entry


def _queue_signed_emails(session: Session, account: Account, lines: list[SummaryLine],
                         differences: list[SummaryLine]) -> None:
    company = get_company()
    queue_email(session, template="signed_customer", to=account.customer.email,
                subject=f"{company.name}: your confirmed service", account=account,
                context={"account": account, "lines": lines, "differences": differences})
    if not differences:
        return
    recipients = {account.salesperson.email if account.salesperson else "", company.office_email}
    for address in sorted(r for r in recipients if r):
        queue_email(session, template="differences_alert", to=address, account=account,
                    subject=f"{account.customer.name} changed {len(differences)} promise(s)",
                    context={"account": account, "differences": differences})


def request_change(session: Session, account: Account, item: PromiseItem | None, details: str) -> None:
    """After signing, the only way to change something: an entry and a note to the office."""
    record.append(session, account, event="change_requested", actor=CUSTOMER, item=item,
                  promised_value=item.promised_value if item else None, note=details,
                  outcome=None)
    company = get_company()
    office = company.office_email or company.email
    if office:
        queue_email(session, template="change_request", to=office, account=account,
                    subject=f"Change requested by {account.customer.name}",
                    context={"account": account, "item": item, "details": details})


def agreed_days(session: Session, account: Account) -> list[str]:
    for state in record.item_states(session, account):
        if state.item.kind == "visit_day":
            return [d for d in (normalise_weekdays(state.current_value) or "").split(", ") if d]
    return []


def agreed_start(session: Session, account: Account) -> date | None:
    for state in record.item_states(session, account):
        if state.item.kind == "start_date":
            try:
                return date.fromisoformat(state.current_value)
            except ValueError:
                return account.first_visit
    return account.first_visit


def next_visit(days: list[str], start: date | None, today: date) -> date | None:
    """The first agreed weekday on or after both today and the start date."""
    if not days:
        return start if start and start >= today else None
    day = max(today, start or today)
    wanted = {WEEKDAYS.index(d) for d in days}
    for offset in range(7):
        candidate = day + timedelta(days=offset)
        if candidate.weekday() in wanted:
            return candidate
    return None
