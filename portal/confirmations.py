"""The customer's side of the loop: answers to each promise, the readiness checklist, contact
preferences, signing, and change requests. Every answer is a service record entry; the current
state is always derived from the record, so answering twice simply makes the later answer win."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from portal import agreement, consents, decisions, links, record, webhooks
from portal.company import get_company
from portal.db import utcnow
from portal.handoffs import OnboardingSigned, display_value
from portal.mail import Attachment, queue_email
from portal.models import Account, AccountStatus, PromiseItem, RecordEntry, Signature
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
    items: list[PromiseItem] = field(default_factory=list)


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


STEP_EVENTS = tuple(step.event for step in STEPS if step.event)
# The customer's step events of one account. Built once (every customer page asks): only the
# account differs between requests, and SQLAlchemy keeps the compiled statement.
FINISHED_STEP_EVENTS = (
    select(RecordEntry.event)
    .distinct()
    .where(
        RecordEntry.event.in_(STEP_EVENTS),
        RecordEntry.account_id == bindparam("account_id"),
        RecordEntry.actor == CUSTOMER,
    )
)


def progress(session: Session, account: Account) -> Progress:
    """Which steps this account has, and which are done: the items in force (their current
    outcome is kept on them by record.append) and one query for the step events."""
    # Only the events that finish a step: probes of the (event, account) index, however long
    # the account's record grows (years of visits and invoices).
    events = set(session.scalars(FINISHED_STEP_EVENTS, {"account_id": account.id}))
    steps: list[StepStatus] = []
    for step in STEPS:
        mine = [item for item in account.items if item.kind in step.kinds]
        if step.kinds and not mine:
            continue  # nothing promised of this kind: no step to show
        done = all(item.current_outcome in ANSWERED for item in mine) if step.kinds else step.event in events
        steps.append(StepStatus(step, len(steps) + 1, done, mine))
    return Progress(steps, account.status == AccountStatus.SIGNED.value)


@dataclass(frozen=True)
class Answer:
    item: PromiseItem
    outcome: str  # confirmed, changed or disputed
    value: str | None
    comment: str = ""
    details: dict[str, Any] | None = None  # machine-readable parts, e.g. the preferred days


_STARTED = (AccountStatus.LINK_SENT.value, AccountStatus.OPENED.value, AccountStatus.DRAFT.value)


def _ensure_open(session: Session, account: Account) -> str | None:
    """The status read again under the account's row lock: a second tab may have signed
    since this request loaded the account."""
    status = record.lock_account(session, account.id)
    if status == AccountStatus.SIGNED.value:
        raise OnboardingSigned("Your onboarding is signed. To change something, ask for a change.")
    return status


def _open_for_answers(session: Session, account: Account) -> None:
    """As _ensure_open, and a first answer moves the onboarding to in progress (the version
    moves too: a staff save from a form loaded before this answer is refused)."""
    if _ensure_open(session, account) in _STARTED:
        session.refresh(account, ["status", "version"])
        account.status = AccountStatus.IN_PROGRESS.value
        session.flush()  # the loaded account shows its new version at once


def record_answers(session: Session, account: Account, answers: list[Answer]) -> None:
    _open_for_answers(session, account)
    record.append_all(
        session,
        account,
        [
            record.Change(
                "answered",
                CUSTOMER,
                answer.item,
                answer.item.promised_value,
                answer.value,
                answer.outcome,
                answer.comment,
                answer.details,
            )
            for answer in answers
        ],
    )


def record_step_event(
    session: Session,
    account: Account,
    event: str,
    *,
    confirmed: str = "",
    note: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """Answers that belong to no promise: started, readiness, contact preferences, notes."""
    _open_for_answers(session, account)
    record.append(
        session,
        account,
        event=event,
        actor=CUSTOMER,
        confirmed_value=confirmed or None,
        note=note,
        details=details or {},
    )


def record_goal(session: Session, account: Account, goal: str) -> None:
    """The customer's own goal ("What would make this service great for you?"): kept on the
    account for the brief and the account page, and recorded when it changes."""
    goal = goal.strip()
    if goal == account.customer_goal:
        return
    record_step_event(session, account, "customer_goal", confirmed=goal, note="" if goal else "cleared")
    account.customer_goal = goal


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
    kind: str = ""


def summary(session: Session, account: Account) -> list[SummaryLine]:
    """Every promise with the customer's latest answer, as the review page and emails show it."""
    lines = []
    for state in record.item_states(session, account):
        latest = state.latest
        lines.append(
            SummaryLine(
                label=state.item.label,
                promised=display_value(state.item.promised_value, state.item.kind),
                confirmed=display_value(state.current_value, state.item.kind),
                outcome=state.outcome,
                comment=latest.note if latest is not None and latest.actor == CUSTOMER else "",
                kind=state.item.kind,
            )
        )
    return lines


def latest_step_details(session: Session, account: Account) -> dict[str, dict[str, Any]]:
    """The latest readiness, contact and technician-note answers, by event."""
    wanted = ("readiness", "contact_preferences", "technician_note", "sms_consent")
    found: dict[str, dict[str, Any]] = {}
    for entry in session.scalars(
        select(RecordEntry)
        .where(RecordEntry.account_id == account.id, RecordEntry.event.in_(wanted))
        .order_by(RecordEntry.seq)
    ):
        found[entry.event] = {**entry.details, "value": entry.confirmed_value, "note": entry.note}
    return found


def summary_hash(lines: list[SummaryLine], extras: dict[str, dict[str, Any]]) -> str:
    canonical = json.dumps(
        {"lines": [line.__dict__ for line in lines], "extras": extras},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def sign(session: Session, account: Account, evidence: agreement.Evidence) -> RecordEntry:
    """Freeze the onboarding. Refused (AgreementChanged, nothing recorded) when the document
    differs from the one the customer was shown. Records the electronic-records consent, then
    one "signed" entry with the evidence, stores the signed PDF, and queues the emails."""
    _ensure_open(session, account)
    shown = agreement.agreement_for(session, account)
    if shown.sha256 != evidence.shown_sha256:
        raise agreement.AgreementChanged
    lines = summary(session, account)
    extras = latest_step_details(session, account)
    agreement.keep_terms(session, shown.terms)
    channel = consents.Channel("welcome/review", evidence.ip_address, evidence.user_agent)
    consents.give(
        session,
        account,
        consents.E_RECORDS,
        version=shown.e_records_version,
        text_sha256=agreement.disclosure_sha256(shown.disclosure),
        channel=channel,
    )
    signed_at = utcnow()
    pdf = agreement.render_pdf(shown, evidence, signed_at)
    pdf_sha256 = hashlib.sha256(pdf).hexdigest()
    entry = record.append(
        session,
        account,
        event="signed",
        actor=CUSTOMER,
        confirmed_value=evidence.typed_name,
        note="signed the service agreement",
        details={
            "summary_sha256": summary_hash(lines, extras),
            "promises": len(lines),
            "document_sha256": shown.sha256,
            "pdf_sha256": pdf_sha256,
            "terms_version": shown.terms.version,
            "terms_accepted": list(evidence.accepted_terms),
            "e_records_version": shown.e_records_version,
            "signed_at": signed_at.isoformat(),
            "link_nonce_hash": evidence.link_nonce_hash,
            **channel.details(),
        },
    )
    session.add(
        Signature(
            account_id=account.id,
            record_entry_id=entry.id,
            typed_name=evidence.typed_name,
            signed_at=signed_at,
            ip_address=evidence.ip_address,
            user_agent=evidence.user_agent[:500],
            link_nonce_hash=evidence.link_nonce_hash,
            terms_version=shown.terms.version,
            e_records_version=shown.e_records_version,
            document=shown.text(),
            document_sha256=shown.sha256,
            pdf=pdf,
            pdf_sha256=pdf_sha256,
        )
    )
    account.signed_at = signed_at
    account.status = AccountStatus.SIGNED.value
    differences = [line for line in lines if line.outcome in ("changed", "disputed")]
    _queue_signed_emails(session, account, lines, differences, pdf)
    webhooks.queue_event(
        session,
        "account.signed",
        {
            "account_id": account.id,
            "signed_at": account.signed_at.isoformat(),
            "promises": len(lines),
            "differences": len(differences),
        },
    )
    return entry


def _queue_signed_emails(
    session: Session,
    account: Account,
    lines: list[SummaryLine],
    differences: list[SummaryLine],
    pdf: bytes,
) -> None:
    company = get_company()
    queue_email(
        session,
        template="signed_customer",
        to=account.customer.email,
        subject=f"{company.name}: your confirmed service",
        account=account,
        context={
            "account": account,
            "lines": lines,
            "differences": differences,
            "service_url": links.public_url("welcome.my_service"),
        },
        attachments=[Attachment(agreement.PDF_NAME, "application/pdf", pdf)],
    )
    if not differences:
        return
    recipients = {account.salesperson.email if account.salesperson else "", company.office_email}
    for address in sorted(r for r in recipients if r):
        queue_email(
            session,
            template="differences_alert",
            to=address,
            account=account,
            subject=f"{account.customer.name} changed {_promises(len(differences))}",
            context={
                "account": account,
                "differences": differences,
                "account_url": links.public_url("staff.account", account_id=account.id),
            },
        )


def request_change(
    session: Session,
    account: Account,
    item: PromiseItem | None,
    details: str,
    effective: date | None = None,
) -> None:
    """After signing, the only way to change something: an open change request in the office
    inbox (with its record entry) and a note to the office."""
    decisions.open_request(session, account, item, details, effective)
    company = get_company()
    office = company.office_email or company.email
    if office:
        now = next(
            (
                state.current_value
                for state in record.item_states(session, account)
                if item is not None and state.item.id == item.id
            ),
            None,
        )
        queue_email(
            session,
            template="change_request",
            to=office,
            account=account,
            subject=f"Change requested by {account.customer.name}",
            context={
                "account": account,
                "item": item,
                "now": now,
                "details": details,
                "account_url": links.public_url("staff.account", account_id=account.id),
            },
        )


# -- the schedule: agreed days, first visit, next visit ------------------------------------------

SCHEDULE_KINDS = ("visit_day", "start_date")
UNDECIDED = ("changed", "disputed")


def preference_text(days: list[str]) -> str:
    """The customer's preferred days in their order, as people read them."""
    return "prefers " + ", then ".join(days)


def preferences(entry: RecordEntry | None) -> list[str]:
    """The days a visit-day answer prefers, 1st choice first (older answers listed the days
    without an order: they read as given)."""
    if entry is None:
        return []
    listed = (entry.details or {}).get("preferences")
    if isinstance(listed, list):
        return [day for day in listed if day in WEEKDAYS]
    days = normalise_weekdays(entry.confirmed_value or "") if entry.outcome != "resolved" else None
    return days.split(", ") if days else []


def _agreed_value(state: record.ItemState) -> str:
    """What is agreed now: a customer's different answer is a wish until the office decides."""
    if state.outcome in UNDECIDED:
        return state.item.promised_value
    return state.current_value


def agreed_days(session: Session, account: Account) -> list[str]:
    for state in record.item_states(session, account):
        if state.item.kind == "visit_day":
            return [d for d in (normalise_weekdays(_agreed_value(state)) or "").split(", ") if d]
    return []


def agreed_start(session: Session, account: Account) -> date | None:
    for state in record.item_states(session, account):
        if state.item.kind == "start_date":
            try:
                return date.fromisoformat(_agreed_value(state))
            except ValueError:
                return account.first_visit
    return account.first_visit


def first_service_day_after(first: date, days: list[str]) -> date | None:
    """The first agreed weekday after the first visit: where the weekly service begins."""
    wanted = {WEEKDAYS.index(d) for d in days}
    return next(
        (day for day in (first + timedelta(days=n) for n in range(1, 8)) if day.weekday() in wanted), None
    )


def next_visit(days: list[str], first: date | None, today: date) -> date | None:
    """The first visit is itself a visit; after it, the next agreed service day. `today` is
    the company's (company_today)."""
    if first is not None and first >= today:
        return first
    if not days:
        return None
    wanted = {WEEKDAYS.index(d) for d in days}
    return next(
        today + timedelta(days=n) for n in range(7) if (today + timedelta(days=n)).weekday() in wanted
    )


@dataclass(frozen=True)
class Schedule:
    """The agreed schedule and its revision: `sequence` counts the office's and sales' changes
    to it (customers' wishes change nothing), `changed_at` is the latest of those."""

    first: date | None
    days: list[str]
    sequence: int
    changed_at: datetime | None

    def next_visit(self, today: date) -> date | None:
        return next_visit(self.days, self.first, today)

    @property
    def service_from(self) -> date | None:
        """Where the weekly service starts: the first agreed day after the first visit."""
        return first_service_day_after(self.first, self.days) if self.first and self.days else None


def schedule(session: Session, account: Account) -> Schedule:
    items = [item.id for item in account.all_items if item.kind in SCHEDULE_KINDS]
    entries = (
        list(
            session.scalars(
                select(RecordEntry)
                .where(
                    RecordEntry.item_id.in_(items),
                    RecordEntry.actor != CUSTOMER,
                    RecordEntry.outcome.is_not(None),
                )
                .order_by(RecordEntry.seq)
            )
        )
        if items
        else []
    )
    return Schedule(
        first=agreed_start(session, account),
        days=agreed_days(session, account),
        sequence=sum(1 for entry in entries if entry.event != "promised"),
        changed_at=entries[-1].created_at if entries else None,
    )


def _promises(count: int) -> str:
    return "1 promise" if count == 1 else f"{count} promises"
