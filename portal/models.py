"""The data model. Business rules live in the service modules, not here."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import Mapped, ORMExecuteState, Session, mapped_column, relationship

from portal.db import Base, UTCDateTime, utcnow


class Role(str, enum.Enum):
    ADMIN = "admin"
    OFFICE = "office"
    SALES = "sales"
    TECHNICIAN = "technician"


class PromiseKind(str, enum.Enum):
    VISIT_DAY = "visit_day"
    START_DATE = "start_date"
    GATE_ACCESS = "gate_access"
    SAFETY = "safety"
    EQUIPMENT = "equipment"
    PRICE = "price"
    BILLING = "billing"
    CUSTOM = "custom"


class AccountStatus(str, enum.Enum):
    DRAFT = "draft"
    LINK_SENT = "link_sent"
    OPENED = "opened"
    IN_PROGRESS = "in_progress"
    SIGNED = "signed"


class Outcome(str, enum.Enum):
    PROMISED = "promised"
    CONFIRMED = "confirmed"
    CHANGED = "changed"
    DISPUTED = "disputed"
    RESOLVED = "resolved"
    WITHDRAWN = "withdrawn"
    # After signing: the office accepted a change request or changed the value itself.
    AGREED = "agreed"


DIFFERENT = (Outcome.CHANGED.value, Outcome.DISPUTED.value)


class CompanySettings(Base):
    __tablename__ = "company_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    phone: Mapped[str] = mapped_column(String(40), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    office_email: Mapped[str] = mapped_column(String(254), default="")
    # A path inside static/ (before uploads; still shown until replaced) or, preferred, an
    # uploaded logo's file name under UPLOAD_DIR (portal/logo.py).
    logo_url: Mapped[str] = mapped_column(String(500), default="")
    logo_file: Mapped[str] = mapped_column(String(100), default="", server_default="")
    brand_color: Mapped[str] = mapped_column(String(7), default="#0b5cab")
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    timezone: Mapped[str] = mapped_column(String(64), default="America/Phoenix")
    # Emails: From is this name (else the company's) on MAIL_FROM's address; Reply-To this
    # address (else the customer-facing email).
    sender_name: Mapped[str] = mapped_column(String(120), default="", server_default="")
    reply_to: Mapped[str] = mapped_column(String(254), default="", server_default="")
    readiness_checklist: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Outgoing webhooks (portal/webhooks.py, migration 0014): where events are posted and the
    # secret that signs them (shown once when made). Empty: webhooks off.
    webhook_url: Mapped[str] = mapped_column(String(254), default="", server_default="")
    webhook_secret: Mapped[str] = mapped_column(String(100), default="", server_default="")
    # Failed autopay (migration 0018): days after the first decline on which the card is tried
    # again, e.g. "3,5,7"; after the last one the office gets a follow-up.
    autopay_retry_days: Mapped[str] = mapped_column(String(40), default="3,5,7", server_default="3,5,7")
    # Plan billing (portal/payments/plan_billing.py, migration 0021): "advance" bills each
    # month on `billing_day` (1-28, so every month has it) for the month starting that day;
    # "arrears" bills on the last day of the month for the month ending then. The first
    # period is "prorated" from the first visit, or billed "full".
    billing_timing: Mapped[str] = mapped_column(String(10), default="advance", server_default="advance")
    billing_day: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    first_period: Mapped[str] = mapped_column(String(10), default="prorated", server_default="prorated")


class StaffUser(Base):
    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Flask-Login identifies sessions by this, not the primary key, so rotating it
    # (password change, deactivation) signs every session and remember-cookie out.
    session_token: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # None while an invited user has not chosen a password yet (the staff page says "invited").
    password_set_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Flask-Login protocol
    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return self.session_token

    @property
    def display_name(self) -> str:
        return self.name or self.email


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), index=True)  # the accounts list's name order
    email: Mapped[str] = mapped_column(String(254), index=True)
    phone: Mapped[str] = mapped_column(String(40), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    accounts: Mapped[list[Account]] = relationship(back_populates="customer")


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (
        Index("ix_accounts_status_first_visit", "status", "first_visit"),
        Index("ix_accounts_salesperson_first_visit", "salesperson_id", "first_visit"),
        Index("ix_accounts_technician_first_visit", "technician_id", "first_visit"),
        # Covers the dashboard's "link expired" and "not opened" counts (scope columns included,
        # so they never read the accounts themselves).
        Index("ix_accounts_status_link_sent", "status", "link_sent_at", "deleted_at", "salesperson_id"),
        Index("ix_accounts_created", "created_at", "id"),
        # The accounts list's keyset order by first visit (and the dashboard's soonest first).
        Index("ix_accounts_first_visit_id", "first_visit", "id"),
        # The dashboard's handoffs not yet acknowledged whose first visit is near: a range of
        # first visits among the unacknowledged, read from the index alone.
        Index("ix_accounts_unacknowledged", "acknowledged_at", "first_visit", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Unique: each account owns its customer contact, so an edit of one account can never
    # reach another's email, phone or link (two accounts once shared a row found by name+email).
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True, unique=True)
    service_address: Mapped[str] = mapped_column(String(300))
    plan: Mapped[str] = mapped_column(String(120))
    # How many service days a week the plan has (weekly = 1): how many of the customer's
    # preferred days the office picks when it decides a visit-day difference.
    visits_per_week: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    price_cents: Mapped[int] = mapped_column(Integer)
    # What price_cents buys: a month, a quarter or one visit (portal/payments/plan_billing.py).
    billing_cadence: Mapped[str] = mapped_column(String(12), default="monthly", server_default="monthly")
    first_visit: Mapped[date | None] = mapped_column(Date)
    salesperson_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    # The technician the office assigned (portal/technicians.py); None: nobody yet.
    technician_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    status: Mapped[str] = mapped_column(String(20), default=AccountStatus.DRAFT.value)
    # Staff-only context from the sale; the customer never confirms these.
    why_chose_us: Mapped[str] = mapped_column(Text, default="")
    concerns: Mapped[str] = mapped_column(Text, default="")
    contact_preference: Mapped[str] = mapped_column(Text, default="")
    # Only a hash of the current link nonce; re-sending rotates it and revokes old links.
    link_nonce_hash: Mapped[str | None] = mapped_column(String(64))
    link_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    link_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)
    last_reminder_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    billing_method: Mapped[str | None] = mapped_column(String(20))
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    card_brand: Mapped[str | None] = mapped_column(String(20))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    card_exp: Mapped[str | None] = mapped_column(String(7))
    stripe_payment_method_id: Mapped[str | None] = mapped_column(String(255))
    # The saved card (payment method) the customer was told is about to expire: once per card.
    card_expiry_notice_for: Mapped[str | None] = mapped_column(String(255))
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # The customer's own answer to "What would make this service great for you?" (welcome
    # step); its history is in the record.
    customer_goal: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Service acknowledged the handoff (who: the record's "handoff_acknowledged" entry).
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Cancelled by the office: off the day list and the inbox, counted as early churn.
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Two staff saving the same account: the second save is refused, not silently lost.
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    # The service record's chain head (its last entry's seq and hash), moved by every append
    # in the same transaction: a cut tail or an emptied record no longer matches it. Only the
    # record reads them (deferred).
    record_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0", deferred=True)
    record_head: Mapped[str] = mapped_column(
        String(64), default="0" * 64, server_default="0" * 64, deferred=True
    )

    __mapper_args__ = {"version_id_col": version}

    customer: Mapped[Customer] = relationship(back_populates="accounts", lazy="joined")
    salesperson: Mapped[StaffUser | None] = relationship(foreign_keys=[salesperson_id], lazy="joined")
    # Joined like the salesperson: the day list names each visit's technician in its one query.
    technician: Mapped[StaffUser | None] = relationship(foreign_keys=[technician_id], lazy="joined")
    all_items: Mapped[list[PromiseItem]] = relationship(
        back_populates="account", order_by="PromiseItem.position"
    )

    @property
    def items(self) -> list[PromiseItem]:
        """The promises in force (withdrawn ones stay in the record, not in the list)."""
        return [item for item in self.all_items if item.withdrawn_at is None]


class AccountCount(Base):
    """Live (not deleted) accounts per salesperson and status: the dashboard's pipeline counts.

    Kept by database triggers on `accounts` (migration 0009) in the transaction that changes an
    account, so no code path can forget it and the dashboard reads a few rows, not every
    account. `salesperson_id` 0 stands for accounts without one."""

    __tablename__ = "account_counts"

    salesperson_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(20), primary_key=True)
    accounts: Mapped[int] = mapped_column(Integer)


class PromiseItem(Base):
    __tablename__ = "promise_items"
    __table_args__ = (
        # Counts the differences queue from the index alone, with or without a kind. The kind
        # comes last: placed before account_id it made SQLite read a kind's every open item and
        # sort them for a page, instead of walking the accounts in first-visit order.
        Index("ix_promise_items_open", "current_outcome", "withdrawn_at", "account_id", "kind"),
        # Answers "does this account have open differences?" from the index alone.
        Index("ix_promise_items_account_outcome", "account_id", "current_outcome", "withdrawn_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    kind: Mapped[str] = mapped_column(String(20))
    label: Mapped[str] = mapped_column(String(120), default="")
    promised_value: Mapped[str] = mapped_column(Text)
    promised_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Record entries point at items, so a promise sales takes back is marked, never deleted.
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # An index into the record, kept by record.append in the same transaction: which entry is
    # the item's latest state, and its outcome. Lists over a million entries filter on these
    # instead of recomputing "latest per item"; verify-record checks they match the record.
    latest_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("record_entries.id", use_alter=True, name="fk_promise_items_latest_entry")
    )
    current_outcome: Mapped[str] = mapped_column(String(20), default=Outcome.PROMISED.value)
    # A deliverable promise's when and owner (portal/occasions.py): "none" for standing facts.
    occasion: Mapped[str] = mapped_column(String(20), default="none", server_default="none")
    occasion_on: Mapped[date | None] = mapped_column(Date)  # the "by" date or a repeat's start
    every: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    every_unit: Mapped[str] = mapped_column(String(10), default="", server_default="")
    owner: Mapped[str] = mapped_column(String(20), default="technician", server_default="technician")

    account: Mapped[Account] = relationship(back_populates="all_items")


class TaskStatus(str, enum.Enum):
    OPEN = "open"
    DONE = "done"


class PromiseTask(Base):
    """One occurrence of a deliverable promise: due on a date, open until someone marks it
    done. "Couldn't do" leaves it open (the reason is in the record and on the task) so it stays
    on the technician's list and, once past due, reaches the office. A repeating promise has
    one open occurrence at a time; closing it creates the next (portal/follow_through.py)."""

    __tablename__ = "promise_tasks"
    __table_args__ = (
        # Two people closing the same occurrence at once create its successor once.
        UniqueConstraint("item_id", "occurrence", name="uq_promise_tasks_item_occurrence"),
        # The overdue sweep and the day list: open tasks by due date.
        Index("ix_promise_tasks_status_due", "status", "due_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("promise_items.id"))
    occurrence: Mapped[int] = mapped_column(Integer, default=0)
    due_on: Mapped[date] = mapped_column(Date)
    owner: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=TaskStatus.OPEN.value)
    done_on: Mapped[date | None] = mapped_column(Date)  # the company's date it was done
    # Who last acted on it (marked it done, or said they couldn't) and what they said.
    by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    note: Mapped[str] = mapped_column(Text, default="")
    missed_on: Mapped[date | None] = mapped_column(Date)  # the last "couldn't do"
    # When it went to the office inbox as overdue: once per task, so an office that closed the
    # follow-up (say, "rescheduled with the customer") is not asked again every night.
    overdue_raised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    item: Mapped[PromiseItem] = relationship(lazy="joined")
    by: Mapped[StaffUser | None] = relationship()


class RecordEntry(Base):
    """One line of an account's service record. Append-only; chained by hash per account."""

    __tablename__ = "record_entries"
    __table_args__ = (
        UniqueConstraint("account_id", "seq", name="uq_record_entries_account_seq"),
        Index("ix_record_entries_item_seq", "item_id", "seq"),
        Index("ix_record_entries_event_account", "event", "account_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    seq: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("promise_items.id"))
    event: Mapped[str] = mapped_column(String(40))
    promised_value: Mapped[str | None] = mapped_column(Text)
    confirmed_value: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(40))
    note: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    request_id: Mapped[str] = mapped_column(String(64), default="")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # Which record key signed the hash (record.key_id): older keys keep verifying after a rotation.
    key_id: Mapped[str] = mapped_column(String(16))


class ServiceTerms(Base):
    """One version of the company's service terms (Settings). A change is a new version, never
    an edit: each signature names the version it agreed to, and a new version applies to new
    signatures only."""

    __tablename__ = "service_terms"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    # [{"title": ..., "text": ...}] in the order shown.
    terms: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Signature(Base):
    """A signed agreement: the evidence of the signing act and the exact document the customer
    was shown, stored with its PDF so a download years later gives the same bytes. The record's
    "signed" entry carries the same evidence and hashes, inside the hash chain."""

    __tablename__ = "signatures"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), unique=True)
    record_entry_id: Mapped[int] = mapped_column(ForeignKey("record_entries.id"))
    typed_name: Mapped[str] = mapped_column(String(120))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ip_address: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(500), default="")
    # The link that authenticated the customer: the hash of its nonce (never the link itself).
    link_nonce_hash: Mapped[str] = mapped_column(String(64), default="")
    terms_version: Mapped[int] = mapped_column(Integer)
    e_records_version: Mapped[str] = mapped_column(String(40))
    document: Mapped[str] = mapped_column(Text)
    document_sha256: Mapped[str] = mapped_column(String(64))
    pdf: Mapped[bytes] = mapped_column(LargeBinary)
    pdf_sha256: Mapped[str] = mapped_column(String(64))


class AccessCardVersion(Base):
    """One version of an account's access card (gates and their codes, lock, alarm, dogs,
    children, parking, equipment pad), valid from `effective_date` until a later version takes
    over. A change is a new version, never an edit; each has its record entry, whose readable
    text never carries a code (the codes live here, behind staff login or the customer's link)."""

    __tablename__ = "access_card_versions"
    __table_args__ = (
        UniqueConstraint("account_id", "version", name="uq_access_card_versions_account_version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    version: Mapped[int] = mapped_column(Integer)
    effective_date: Mapped[date] = mapped_column(Date)
    card: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    actor: Mapped[str] = mapped_column(String(40))
    record_entry_id: Mapped[int] = mapped_column(ForeignKey("record_entries.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AppendOnlyError(RuntimeError):
    """Raised when code tries to change or remove a service record entry."""


@event.listens_for(RecordEntry, "before_update")
def _refuse_update(*_args: Any) -> None:
    raise AppendOnlyError("service record entries are append-only; write a new entry instead")


@event.listens_for(RecordEntry, "before_delete")
def _refuse_delete(*_args: Any) -> None:
    raise AppendOnlyError("service record entries are never deleted")


class StaffAudit(Base):
    """Who did what to which staff account (invites, roles, deactivation, passwords).
    Append-only like the service record: a later change is a new entry."""

    __tablename__ = "staff_audit"
    __table_args__ = (Index("ix_staff_audit_target", "target_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # None when nobody was signed in: a reset asked for, or a link used, from the login page.
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    action: Mapped[str] = mapped_column(String(40))
    target_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    request_id: Mapped[str] = mapped_column(String(64), default="")

    actor: Mapped[StaffUser | None] = relationship(foreign_keys=[actor_id])
    target: Mapped[StaffUser | None] = relationship(foreign_keys=[target_id])


APPEND_ONLY = (RecordEntry, StaffAudit, Signature, AccessCardVersion)


@event.listens_for(StaffAudit, "before_update")
def _refuse_audit_update(*_args: Any) -> None:
    raise AppendOnlyError("staff audit entries are append-only; write a new entry instead")


@event.listens_for(StaffAudit, "before_delete")
def _refuse_audit_delete(*_args: Any) -> None:
    raise AppendOnlyError("staff audit entries are never deleted")


@event.listens_for(Signature, "before_update")
@event.listens_for(Signature, "before_delete")
def _refuse_signature_change(*_args: Any) -> None:
    raise AppendOnlyError("a signed agreement is kept as signed; later changes are amendments")


@event.listens_for(AccessCardVersion, "before_update")
@event.listens_for(AccessCardVersion, "before_delete")
def _refuse_card_change(*_args: Any) -> None:
    raise AppendOnlyError("an access card version is kept as saved; a change is a new version")


@event.listens_for(Session, "do_orm_execute")
def _refuse_bulk_changes(state: ORMExecuteState) -> None:
    if (state.is_update or state.is_delete) and any(
        mapper.class_ in APPEND_ONLY for mapper in state.all_mappers
    ):
        raise AppendOnlyError("bulk UPDATE/DELETE of append-only entries is refused")


class ChangeRequestStatus(str, enum.Enum):
    OPEN = "open"
    ACCEPTED = "accepted"
    DECLINED = "declined"


class ChangeRequest(Base):
    """A signed customer's "ask for a change": one per promise it changes, open until the office
    accepts it (the requested value becomes the agreed value from `effective_date`, or at once)
    or declines it with a note. The record holds every step; this row is what the inbox lists."""

    __tablename__ = "change_requests"
    __table_args__ = (
        Index("ix_change_requests_status_account", "status", "account_id"),
        # The inbox walks accounts in first-visit order and probes each one's open requests.
        Index("ix_change_requests_account_status", "account_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    # None for "something else": no promise to change, only a note to act on.
    item_id: Mapped[int | None] = mapped_column(ForeignKey("promise_items.id"))
    requested_value: Mapped[str] = mapped_column(Text)
    effective_date: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default=ChangeRequestStatus.OPEN.value)
    staff_note: Mapped[str] = mapped_column(Text, default="")
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    account: Mapped[Account] = relationship(lazy="joined")
    item: Mapped[PromiseItem | None] = relationship(lazy="joined")
    decided_by: Mapped[StaffUser | None] = relationship()


class FollowUpStatus(str, enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class FollowUp(Base):
    """Something the office must act on that is neither a difference nor a customer's change
    request (an overdue promise, a technician's flag, a failed payment, first-visit feedback):
    a row in the inbox until an office user closes it with a note. The record holds both steps."""

    __tablename__ = "follow_ups"
    __table_args__ = (
        # One open follow-up per thing it is about (a task, an invoice): raising it again, even
        # from two workers at once, finds the one that is open. Closed ones do not count.
        Index(
            "uq_follow_ups_open_key",
            "account_id",
            "kind",
            "key",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
        # The inbox walks accounts in first-visit order and probes each one's open follow-ups;
        # its capped count is driven from (status, account_id).
        Index("ix_follow_ups_account_status", "account_id", "status"),
        Index("ix_follow_ups_status_account", "status", "account_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    kind: Mapped[str] = mapped_column(String(40))
    # What it is about, e.g. "task:12" or "invoice:7"; "" when only one of the kind makes sense.
    key: Mapped[str] = mapped_column(String(100), default="")
    summary: Mapped[str] = mapped_column(String(300))
    detail: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default=FollowUpStatus.OPEN.value)
    raised_by: Mapped[str] = mapped_column(String(40))  # a record actor: "system", "staff:3", ...
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closing_note: Mapped[str] = mapped_column(Text, default="")
    told_customer: Mapped[bool] = mapped_column(Boolean, default=False)
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    account: Mapped[Account] = relationship(lazy="joined")
    closed_by: Mapped[StaffUser | None] = relationship()


class DecisionNotice(Base):
    """A decision the customer has not been emailed about yet: the worker sends every waiting
    notice of an account as one email once the oldest is DECISION_EMAIL_DELAY_SECONDS old."""

    __tablename__ = "decision_notices"
    __table_args__ = (Index("ix_decision_notices_emailed_created", "emailed_at", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("record_entries.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    emailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class HandoffQuestion(Base):
    """A question the office sends back to the salesperson while reviewing a handoff, and the
    answer. The record holds both as entries; this row is what waits for the salesperson."""

    __tablename__ = "handoff_questions"
    __table_args__ = (
        # Questions still waiting, walked by account: the salesperson's dashboard list.
        Index("ix_handoff_questions_answered_account", "answered_at", "account_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    question: Mapped[str] = mapped_column(Text)
    asked_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    asked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    answer: Mapped[str] = mapped_column(Text, default="")
    answered_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    account: Mapped[Account] = relationship(lazy="joined")
    asked_by: Mapped[StaffUser | None] = relationship(foreign_keys=[asked_by_id], lazy="joined")
    answered_by: Mapped[StaffUser | None] = relationship(foreign_keys=[answered_by_id])


class FirstVisitFeedback(Base):
    """The one "did your first visit match what we agreed?" email of an account (unique: one
    ever) and its answer. The link's nonce is kept as a hash; answering uses it up."""

    __tablename__ = "first_visit_feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), unique=True)
    nonce_hash: Mapped[str] = mapped_column(String(64))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The account's technician when the email went out (portal/technicians.py: the assigned
    # one, else who last wrote to the record): who worked the first visit, if anyone.
    technician_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    answer: Mapped[str | None] = mapped_column(String(20))  # "yes" or "not_quite"
    comment: Mapped[str] = mapped_column(Text, default="")
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    account: Mapped[Account] = relationship(lazy="joined")


class OutboxEmail(Base):
    """An email written in the same transaction as the state change it reports."""

    __tablename__ = "outbox_emails"
    __table_args__ = (
        Index("ix_outbox_emails_status_next", "status", "next_attempt_at"),
        # The dashboard's latest failed emails, however few there are among all ever sent.
        Index("ix_outbox_emails_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(String(255), default="")
    # Files sent with the message: [{"filename", "content_type", "data" (base64)}].
    attachments: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list, server_default="[]")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # MAIL_BACKEND=file: the .eml written under MAIL_OUTBOX_DIR, shown on the account page.
    file_name: Mapped[str] = mapped_column(String(255), default="", server_default="")

    # Every default is computed in Python, so a flush of many emails with their ids taken
    # beforehand is one executemany; fetching defaults back would insert them one at a time.
    __mapper_args__ = {"eager_defaults": False}


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FormSubmission(Base):
    """One-time form ids: a form posted twice takes effect once."""

    __tablename__ = "form_submissions"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(40))
    # Where the first submission led, so a repeat lands on the same result.
    result_url: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        # Another system's id for the invoice (the API and CSV import): one invoice per id per
        # account, held by the database so two identical calls at once still make one. A unique
        # index rather than a constraint: SQLite adds it without copying the table (0014).
        Index("uq_invoices_account_external_id", "account_id", "external_id", unique=True),
        # One plan invoice per account and period, whoever runs `bill` and however often:
        # the batch inserts with ON CONFLICT DO NOTHING on this index. Other invoices have no
        # period (nulls never collide).
        Index("uq_invoices_account_period", "account_id", "period_start", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="open")
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    total_cents: Mapped[int] = mapped_column(Integer)
    due_date: Mapped[date] = mapped_column(Date)
    pay_nonce_hash: Mapped[str | None] = mapped_column(String(64))
    stripe_checkout_session_id: Mapped[str | None] = mapped_column(String(255), index=True)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Payments (migration 0002): off-session charge attempts (part of the idempotency key), when
    # the last one failed (autopay then waits for the customer or a new card), and until when a
    # Checkout Session the customer opened can still complete (autopay leaves it alone till then).
    autopay_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    autopay_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checkout_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Invoices from other systems (migration 0014): their id, and a digest of what they asked
    # for, so a repeat with the same id is recognised and a different request with it refused.
    external_id: Mapped[str | None] = mapped_column(String(100))
    external_digest: Mapped[str | None] = mapped_column(String(64))
    # Failed autopay (migration 0018): declines since the first one (autopay_failed_at) and when
    # the next try is due; None once the schedule is used up (the office has a follow-up).
    autopay_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    autopay_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Void (unpaid only) and refund (paid only, confirmed by Stripe's event), with staff's reason.
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refund_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255), index=True)
    adjustment_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Plan invoices (`bill`, migration 0021): the service period billed, first and last day.
    period_start: Mapped[date | None] = mapped_column(Date)
    period_end: Mapped[date | None] = mapped_column(Date)

    lines: Mapped[list[InvoiceLine]] = relationship(order_by="InvoiceLine.position")


class InvoiceLine(Base):
    __tablename__ = "invoice_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    description: Mapped[str] = mapped_column(String(300))
    amount_cents: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer, default=0)


class PromoCredit(Base):
    """A promotion from the sale ("December is free (promo FALL26)") as a dated credit the
    office confirmed: `bill` takes it off the invoice of the period holding `month`, as a
    negative line. Amount None means the whole period's plan charge ("free")."""

    __tablename__ = "promo_credits"
    __table_args__ = (
        # Confirmed once: the same code for the same month of an account is one credit.
        UniqueConstraint("account_id", "month", "code", name="uq_promo_credits_account_month_code"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    month: Mapped[date] = mapped_column(Date)  # the first day of the month it covers
    amount_cents: Mapped[int | None] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(40))
    # The sale's words it came from (a promise's value), shown beside it.
    source_text: Mapped[str] = mapped_column(Text, default="")
    confirmed_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The invoice that took it off (its own period's, or for a promotion confirmed after that
    # period was billed, the next one made): set once, so no credit is given twice.
    applied_invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"))
    applied_invoice: Mapped[Invoice | None] = relationship()


class StripeEvent(Base):
    """Every verified webhook event id, so each is processed exactly once."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    created: Mapped[int] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Photo(Base):
    """A photo for the technician (the gate, the equipment pad, the pool), added by the customer
    or by staff. The bytes live in storage (portal/storage.py), re-encoded by portal/photos.py;
    this row names them. A wrong photo is removed, not deleted: the row stays for the record's
    entries that name it, its stored files go."""

    __tablename__ = "photos"
    __table_args__ = (
        # The brief, the day list and My service read an account's shown photos in order.
        Index("ix_photos_account_removed", "account_id", "removed_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    storage_key: Mapped[str] = mapped_column(String(200))
    thumb_key: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(40))
    caption: Mapped[str] = mapped_column(String(200), default="")
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    # "customer", or the staff member who added it.
    added_by: Mapped[str] = mapped_column(String(20))
    added_by_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    removed_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    removed_reason: Mapped[str] = mapped_column(String(200), default="")
