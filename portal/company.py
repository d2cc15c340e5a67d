"""The company running the portal: name, colour, contact details, checklist."""
from __future__ import annotations

from typing import Any

from flask import g, has_app_context
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from portal.db import get_db
from portal.models import CompanySettings

DEFAULT_CHECKLIST = [
    "Pets secured on visit day",
    "Gate unlocked or code working",
    "Pool equipment power switched on",
]


def default_company() -> CompanySettings:
    return CompanySettings(
        id=0,
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


def get_company() -> CompanySettings:
    """The settings row, read once per request; a default before any is saved."""
    if has_app_context() and "company" in g:
        return g.company
    session = get_db()
    try:
        company = session.scalars(select(CompanySettings).limit(1)).first() or default_company()
    except SQLAlchemyError:
        # Error pages must render while the database is away.
        session.rollback()
        company = default_company()
    if has_app_context():
        g.company = company
    return company


def editable_company(session: Session) -> CompanySettings:
    """The saved row, or a new one pre-filled with the defaults (added on save)."""
    company = session.scalars(select(CompanySettings).limit(1)).first()
    if company is None:
        company = default_company()
        company.id = None  # type: ignore[assignment]
    return company


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
