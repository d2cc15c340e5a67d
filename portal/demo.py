"""Demo data for `make run`: a company, one staff user per role, a few accounts."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.auth import create_staff
from portal.company import DEFAULT_CHECKLIST
from portal.handoffs import HandoffData, Promise, create_handoff
from portal.models import CompanySettings, StaffUser

DEMO_PASSWORD = "demo-password"
DEMO_STAFF = [
    ("admin@example.com", "admin", "Alex Admin"),
    ("sam@example.com", "sales", "Sam Sales"),
    ("olivia@example.com", "office", "Olivia Office"),
    ("theo@example.com", "technician", "Theo Tech"),
]


def seed_demo(session: Session) -> bool:
    """Seed once, in the caller's unit of work; returns False when staff exist already."""
    if session.scalars(select(StaffUser).limit(1)).first() is not None:
        return False
    session.add(
        CompanySettings(
            name="Blue Lagoon Pool Care",
            phone="+1 480 555 0100",
            email="hello@bluelagoon.example",
            office_email="office@bluelagoon.example",
            brand_color="#0b5cab",
            currency="USD",
            timezone="America/Phoenix",
            readiness_checklist=list(DEFAULT_CHECKLIST),
        )
    )
    staff = {
        role: create_staff(session, email, DEMO_PASSWORD, role, name) for email, role, name in DEMO_STAFF
    }
    create_handoff(session, demo_handoff(), staff["sales"])
    return True


def demo_handoff() -> HandoffData:
    return HandoffData(
        customer_name="Dana Reyes",
        customer_email="dana@example.com",
        customer_phone="+1 480 555 0134",
        service_address="1820 W Palm Ln, Phoenix, AZ 85007",
        plan="Weekly full service",
        price_cents=16500,
        first_visit=date.today() + timedelta(days=7),
        promises=[
            Promise("visit_day", "Friday"),
            Promise("gate_access", "Side gate, code 4412"),
            Promise("safety", "Toddler at home: always re-latch the gate"),
            Promise("equipment", "Salt cell check before summer"),
            Promise("billing", "Card autopay"),
        ],
        why_chose_us="Previous company missed two visits in a row.",
        concerns="Worried about the gate being left open.",
        contact_preference="Text before arriving",
    )
