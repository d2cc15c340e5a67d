"""The company running the portal: name, colour, contact details, logo, time zone, checklist."""

from __future__ import annotations

import time
from datetime import date, datetime, timezone
from email.utils import formataddr, parseaddr
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from flask import current_app, g, has_app_context
from sqlalchemy import event, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, UOWTransaction

from portal import logo
from portal.db import get_db
from portal.models import CompanySettings

DEFAULT_CHECKLIST = [
    "Pets secured on visit day",
    "Gate unlocked or code working",
    "Pool equipment power switched on",
]


def default_company(new_row: bool = False) -> CompanySettings:
    """The settings before any are saved: id 0 as a stand-in, or no id for a row to add."""
    company = CompanySettings(
        name="Handoff Portal",
        phone="",
        email="",
        office_email="",
        logo_url="",
        logo_file="",
        brand_color="#0b5cab",
        currency="USD",
        timezone="America/Phoenix",
        sender_name="",
        reply_to="",
        readiness_checklist=list(DEFAULT_CHECKLIST),
        autopay_retry_days=", ".join(str(day) for day in DEFAULT_RETRY_DAYS),
        billing_timing="advance",
        billing_day=1,
        first_period="prorated",
    )
    if not new_row:
        company.id = 0
    return company


CACHE = "portal.company_cache"


def get_company() -> CompanySettings:
    """The settings as a detached copy: read at most once per COMPANY_CACHE_SECONDS per
    process (every page shows them; they change a few times a year), a default before any
    is saved."""
    if "company" in g:
        kept: CompanySettings = g.company
        return kept
    cached = current_app.extensions.get(CACHE)
    company = cached[1] if cached is not None and cached[0] > time.monotonic() else _read_company()
    g.company = company
    return company


def _read_company() -> CompanySettings:
    session = get_db()
    try:
        row = session.scalars(select(CompanySettings).limit(1)).first()
    except SQLAlchemyError:
        # Error pages must render while the database is away; try again on the next request.
        session.rollback()
        return default_company()
    company = _detached_copy(row) if row is not None else default_company()
    expires = time.monotonic() + current_app.config["COMPANY_CACHE_SECONDS"]
    current_app.extensions[CACHE] = (expires, company)
    return company


def _detached_copy(row: CompanySettings) -> CompanySettings:
    # Shared by the requests of this process: never part of any session, nothing mutable shared.
    values = {column.key: getattr(row, column.key) for column in CompanySettings.__table__.columns}
    values["readiness_checklist"] = list(values["readiness_checklist"] or [])
    return CompanySettings(**values)


def forget_company() -> None:
    if has_app_context():
        current_app.extensions.pop(CACHE, None)
        g.pop("company", None)


@event.listens_for(Session, "after_flush")
def _settings_changed(session: Session, _flush: UOWTransaction) -> None:
    if any(isinstance(row, CompanySettings) for row in (*session.new, *session.dirty, *session.deleted)):
        forget_company()


def editable_company(session: Session) -> CompanySettings:
    """The saved row, or a new one pre-filled with the defaults (added on save)."""
    company = session.scalars(select(CompanySettings).limit(1)).first()
    return company if company is not None else default_company(new_row=True)


# What the settings form edits as plain text (the logo and checklist have their own rules).
TEXT_FIELDS = (
    "name",
    "phone",
    "email",
    "office_email",
    "brand_color",
    "currency",
    "timezone",
    "sender_name",
    "reply_to",
    "autopay_retry_days",
)


def update_company(
    session: Session, company: CompanySettings, data: dict[str, Any], new_logo: bytes | None = None
) -> None:
    """Apply a validated settings form. `new_logo` is a cleaned PNG (portal.logo.clean): it is
    stored under the instance folder and replaces any logo, uploaded or named by path."""
    for name in TEXT_FIELDS:
        setattr(company, name, (data.get(name) or "").strip())
    company.brand_color = company.brand_color.lower()
    company.billing_timing = data.get("billing_timing") or company.billing_timing
    company.billing_day = int(data.get("billing_day") or company.billing_day)
    company.first_period = data.get("first_period") or company.first_period
    company.readiness_checklist = checklist_lines(data.get("readiness_checklist") or "")
    if new_logo is not None:
        company.logo_file, company.logo_url = logo.store(new_logo), ""
    elif data.get("remove_logo"):
        company.logo_file, company.logo_url = "", ""
    session.add(company)


def form_data(company: CompanySettings) -> dict[str, Any]:
    data: dict[str, Any] = {name: getattr(company, name) for name in TEXT_FIELDS}
    data["billing_timing"] = company.billing_timing
    data["billing_day"] = str(company.billing_day)
    data["first_period"] = company.first_period
    data["readiness_checklist"] = "\n".join(company.readiness_checklist or [])
    return data


# Failed autopay: the days after the first decline on which the card is tried again.
DEFAULT_RETRY_DAYS = (3, 5, 7)
MAX_RETRY_DAY = 60


def parse_retry_days(text: str) -> tuple[int, ...]:
    """ "3, 5, 7" -> (3, 5, 7): rising whole days after the first decline. ValueError otherwise
    (the Settings form shows it next to the field)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        return ()
    try:
        days = tuple(int(part) for part in parts)
    except ValueError:
        raise ValueError("Enter whole days separated by commas, e.g. 3, 5, 7.") from None
    if len(days) > 10:
        raise ValueError("At most 10 retries.")
    if any(day < 1 or day > MAX_RETRY_DAY for day in days):
        raise ValueError(f"Each day must be between 1 and {MAX_RETRY_DAY}.")
    if list(days) != sorted(set(days)):
        raise ValueError("List the days in rising order, each once, e.g. 3, 5, 7.")
    return days


def checklist_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


# -- time: stored in UTC, shown in the company's zone ------------------------------------------

ZONE_AREAS = {
    "Africa",
    "America",
    "Antarctica",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
}


@cache
def zone_names() -> tuple[str, ...]:
    """The IANA zones offered in Settings: the Area/City ones people pick from, plus UTC."""
    names = {name for name in available_timezones() if "/" in name and name.split("/", 1)[0] in ZONE_AREAS}
    return ("UTC", *sorted(names))


def company_zone() -> ZoneInfo:
    try:
        return ZoneInfo(get_company().timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):  # saved before zones were checked
        return ZoneInfo("UTC")


def local_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M %Z") -> str:
    """A stored UTC time as the company's clock shows it (the `local` template filter)."""
    if value is None:
        return ""
    if value.tzinfo is None:  # SQLite hands some aggregates back naive; they are UTC
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(company_zone()).strftime(fmt)


def company_today(now: datetime | None = None) -> date:
    """Today where the company works: at 6 pm in Phoenix the server's UTC clock already says
    tomorrow, and a technician's day list must not skip today's visits."""
    return (now or datetime.now(timezone.utc)).astimezone(company_zone()).date()


# -- email: the company's name on the portal's sending address ----------------------------------


def email_sender(mail_from: str) -> str:
    """From: the company's sending name (or its name) on MAIL_FROM's address, the one address
    the mail relay lets the portal send from."""
    company = get_company()
    name = " ".join((company.sender_name or company.name or "").split())
    return formataddr((name or parseaddr(mail_from)[0], parseaddr(mail_from)[1]))


def email_reply_to() -> str:
    """Reply-To: the address set for replies, else the customer-facing email; may be empty."""
    company = get_company()
    return company.reply_to or company.email or ""
