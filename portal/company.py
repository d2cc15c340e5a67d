"""The company running the portal: name, colour, contact details, checklist."""
from __future__ import annotations

import re
import time
from datetime import date, datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app, g, has_app_context
from sqlalchemy import event, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, UOWTransaction

from portal.db import get_db
from portal.models import CompanySettings
from portal.validation import single_line_problem

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
        brand_color="#0b5cab",
        currency="USD",
        timezone="America/Phoenix",
        readiness_checklist=list(DEFAULT_CHECKLIST),
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


def company_today(now: datetime | None = None) -> date:
    """Today where the company works: at 6 pm in Phoenix the server's UTC clock already says
    tomorrow, and a technician's day list must not skip today's visits."""
    try:
        zone: ZoneInfo | timezone = ZoneInfo(get_company().timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = timezone.utc
    return (now or datetime.now(timezone.utc)).astimezone(zone).date()


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


def update_company(session: Session, company: CompanySettings, data: dict[str, Any]) -> None:
    for name in ("name", "phone", "email", "office_email", "logo_url", "brand_color", "currency"):
        setattr(company, name, (data.get(name) or "").strip())
    company.readiness_checklist = checklist_lines(data.get("readiness_checklist") or "")
    session.add(company)


def form_data(company: CompanySettings) -> dict[str, Any]:
    fields = ("name", "phone", "email", "office_email", "logo_url", "brand_color", "currency")
    data: dict[str, Any] = {name: getattr(company, name) for name in fields}
    data["readiness_checklist"] = "\n".join(company.readiness_checklist or [])
    return data


# Until logo upload exists, the logo is a file already under static/, named by its path there.
# Nothing else: no address of another site, no scheme (javascript:), no way out of the folder.
LOGO_PATH = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*"
                       r"\.(png|jpe?g|gif|webp)", re.IGNORECASE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def clean_logo_path(value: str) -> str:
    """The logo's path inside static/ (a leading "static/" is dropped), or ValueError saying
    what is wrong with it. The empty string means no logo."""
    path = value.strip()
    if problem := single_line_problem(path, "The logo path"):
        raise ValueError(problem)
    if SCHEME.match(path) or path.startswith("//"):
        raise ValueError("Give a file under static/, not a web address (no outside images).")
    if "\\" in path:
        raise ValueError("Use forward slashes (/) in the logo path, not backslashes.")
    if path.startswith("/"):
        raise ValueError("Give the path inside static/, like img/logo.png, not starting with /.")
    if ".." in path.split("/"):
        raise ValueError("The logo path cannot leave the static/ folder (no ..).")
    path = path.removeprefix("static/")
    if path and not LOGO_PATH.fullmatch(path):
        raise ValueError("Use letters, digits, - _ . and / only, for a .png, .jpg, .gif or "
                         ".webp file, like img/logo.png.")
    return path


def checklist_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def ink_for(colour: str) -> str:
    """White text on the brand colour when that passes WCAG AA (4.5:1), else near-black."""
    white_contrast = 1.05 / (_luminance(colour) + 0.05)
    return "#ffffff" if white_contrast >= 4.5 else "#111111"
