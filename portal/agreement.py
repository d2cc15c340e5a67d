"""The service agreement a customer signs: the company's versioned service terms, the
electronic-records disclosure, the exact document the review step shows (and its SHA-256), and
the signed agreement as a PDF.

The document is built once, here, from the account's agreed values, the terms in force and the
disclosure; the review page shows it, signing hashes it again and refuses when anything changed
since the page was drawn, and the PDF prints it. The signed PDF is stored (portal.models.Signature),
never regenerated: a new terms version applies to new signatures only."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from flask import Response
from fpdf import FPDF
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.company import get_company, local_time
from portal.handoffs import display_value
from portal.models import Account, CompanySettings, Outcome, RecordEntry, ServiceTerms, Signature, StaffUser
from portal.secret_codes import blank_codes, is_secret, without_codes
from portal.validation import NOT_TEXT

DEFAULT_TERMS: tuple[dict[str, str], ...] = (
    {
        "title": "Skip policy",
        "text": "If we cannot reach the pool on a visit day (locked gate, pet out, unsafe weather), "
        "the visit counts as made and we come back on the next scheduled day.",
    },
    {
        "title": "Return-trip fee",
        "text": "A return trip you ask for outside the schedule costs $35.",
    },
    {
        "title": "Chemicals",
        "text": "Routine chemicals are included in the monthly price; extra treatments (algae, stains) "
        "are quoted and agreed before we do them.",
    },
    {
        "title": "Cancellation",
        "text": "Either side may cancel with 30 days' notice by email or phone, without a fee.",
    },
)
MAX_TERMS, MAX_TITLE, MAX_TEXT = 20, 80, 1000

# The electronic-records disclosure (E-SIGN 15 USC 7001(c)). A change of wording is a new
# version; every consent and signature names the version it was given under.
E_RECORDS_VERSION = "e-records-1"
PDF_NAME = "service-agreement.pdf"
ACCESS_NOTED_IN_AGREEMENT = (
    "noted as you confirmed it (on your service page and the technician's brief; never emailed)"
)
# The answers that belong to no promise, as the agreement lists them after the promises.
EXTRA_LINES = (
    ("readiness", "Before the first visit"),
    ("contact_preferences", "How to reach you"),
    ("technician_note", "Notes for the technician"),
)
FONTS = Path(__file__).resolve().parent / "fonts"


@dataclass(frozen=True)
class Terms:
    version: int
    terms: tuple[dict[str, str], ...]


def current_terms(session: Session) -> Terms:
    """The newest version; before any is saved, the defaults as version 1."""
    row = session.scalars(select(ServiceTerms).order_by(ServiceTerms.version.desc()).limit(1)).first()
    if row is None:
        return Terms(1, DEFAULT_TERMS)
    return Terms(row.version, tuple(dict(term) for term in row.terms))


def _store_defaults(session: Session) -> None:
    if session.scalar(select(func.count()).select_from(ServiceTerms)) == 0:
        session.add(ServiceTerms(version=1, terms=[dict(term) for term in DEFAULT_TERMS]))
        session.flush()


def keep_terms(session: Session, terms: Terms) -> None:
    """Make sure the version a signature names is stored (the defaults, before any save)."""
    if terms.version == 1:
        _store_defaults(session)


def save_terms(session: Session, terms: list[dict[str, str]], staff: StaffUser | None) -> int | None:
    """A new version when the terms differ from the newest; returns it (None: unchanged)."""
    current = current_terms(session)
    if list(current.terms) == terms:
        return None
    _store_defaults(session)
    version = current.version + 1
    session.add(ServiceTerms(version=version, terms=terms, created_by_id=staff.id if staff else None))
    session.flush()
    return version


def parse_terms(text: str) -> tuple[list[dict[str, str]], str | None]:
    """Settings' textarea: one term per paragraph, its first line the title. Returns the terms
    and an error message (None when they are fine)."""
    text = text.replace("\r\n", "\n")
    if NOT_TEXT.search(text):
        return [], "The terms must be plain text, without control characters."
    blocks = [block.strip() for block in text.split("\n\n") if block.strip()]
    terms = []
    for block in blocks:
        title, _, body = block.partition("\n")
        body = " ".join(body.split())
        if not body:
            return [], f"“{title[:40]}” needs its text on the lines under the title."
        if len(title.strip()) > MAX_TITLE or len(body) > MAX_TEXT:
            return [], f"Keep each title under {MAX_TITLE} characters and each text under {MAX_TEXT}."
        terms.append({"title": title.strip(), "text": body})
    if len(terms) > MAX_TERMS:
        return [], f"At most {MAX_TERMS} terms."
    return terms, None


def terms_text(terms: Terms) -> str:
    return "\n\n".join(f"{term['title']}\n{term['text']}" for term in terms.terms)


def paper_contact(company: CompanySettings) -> str:
    parts = [company.office_email or company.email, company.phone]
    return " or ".join(part for part in parts if part) or "the office"


def e_records_disclosure(company: CompanySettings) -> tuple[str, ...]:
    """What the customer reads before agreeing to get records electronically."""
    contact = paper_contact(company)
    return (
        f"{company.name} will give you this agreement, its amendments, notices about your service "
        "and invoices electronically: on these pages and by email, with the signed agreement as a "
        "PDF file. This consent covers those records for as long as you have the service.",
        f"You may have a paper copy of any record at no charge: ask {contact}.",
        "You may withdraw this consent at any time, free of charge, from My service (or by asking "
        f"{contact}); we will then send records on paper. Withdrawing does not undo anything "
        "already signed.",
        "Keep your email address current: change it on the How to reach you step or ask the office.",
        "You need a device with a current web browser, an email account, and a program that opens "
        "PDF files (every current phone and computer has one), and a way to save or print them.",
    )


def disclosure_sha256(paragraphs: tuple[str, ...]) -> str:
    return hashlib.sha256("\n\n".join(paragraphs).encode()).hexdigest()


@dataclass(frozen=True)
class Agreement:
    """The exact document shown on the review step, printed in the PDF and hashed."""

    company_name: str
    company_contact: str
    customer_name: str
    customer_email: str
    service_address: str
    lines: tuple[tuple[str, str], ...]  # (what, as agreed)
    terms: Terms
    disclosure: tuple[str, ...]
    e_records_version: str = E_RECORDS_VERSION
    heading: str = field(default="Service agreement")

    def text(self) -> str:
        out = [
            f"{self.heading}: {self.company_name}",
            f"Company contact: {self.company_contact}",
            f"Customer: {self.customer_name} <{self.customer_email}>",
            f"Service address: {self.service_address}",
            "",
            "Agreed service",
            *(f"- {label}: {value}" for label, value in self.lines),
            "",
            f"Service terms (version {self.terms.version})",
            *(f"- {term['title']}: {term['text']}" for term in self.terms.terms),
            "",
            f"Electronic records disclosure ({self.e_records_version})",
            *(f"- {paragraph}" for paragraph in self.disclosure),
        ]
        return "\n".join(out) + "\n"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text().encode()).hexdigest()


def agreement_for(session: Session, account: Account) -> Agreement:
    from portal.confirmations import latest_step_details, summary  # confirmations signs with this module

    company = get_company()
    lines = []
    for line in summary(session, account):
        # The PDF is emailed: access codes stay behind the link (portal.secret_codes).
        if is_secret(line.kind, line.promised) or is_secret(line.kind, line.confirmed):
            value = ACCESS_NOTED_IN_AGREEMENT
        elif line.outcome == "disputed":
            value = f"to be settled with the office (you were told otherwise: {blank_codes(line.comment)})"
        else:
            value = line.confirmed or "(not agreed yet)"
        lines.append((line.label, value))
    extras = latest_step_details(session, account)
    for event, label in EXTRA_LINES:
        found = extras.get(event)
        if found and found.get("value"):
            lines.append((label, without_codes(str(found["value"]), event)))
    return Agreement(
        company_name=company.name,
        company_contact=" · ".join(p for p in (company.phone, company.email) if p),
        customer_name=account.customer.name,
        customer_email=account.customer.email,
        service_address=account.service_address,
        lines=tuple(lines),
        terms=current_terms(session),
        disclosure=e_records_disclosure(company),
    )


@dataclass(frozen=True)
class Evidence:
    """The signing act as the request saw it."""

    typed_name: str
    ip_address: str
    user_agent: str
    link_nonce_hash: str
    shown_sha256: str
    accepted_terms: tuple[str, ...]


class AgreementChanged(Exception):
    """The document changed between showing it and signing it: show it again."""


def render_pdf(agreement: Agreement, evidence: Evidence, signed_at: datetime) -> bytes:
    """The signed agreement: company header, agreed values, terms, disclosure, signature block."""
    pdf = FPDF(format="Letter")
    pdf.set_title(f"{agreement.heading}: {agreement.customer_name}")
    pdf.set_author(agreement.company_name)
    pdf.set_creation_date(signed_at)
    pdf.add_font("DejaVu", "", str(FONTS / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", str(FONTS / "DejaVuSans-Bold.ttf"))
    pdf.set_margins(18, 18, 18)
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin

    def heading(text: str, size: int = 12) -> None:
        pdf.ln(3)
        pdf.set_font("DejaVu", "B", size)
        pdf.multi_cell(width, size * 0.5, text, align="L", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1)

    def para(text: str, size: int = 10) -> None:
        pdf.set_font("DejaVu", "", size)
        pdf.multi_cell(width, 5, text, align="L", new_x="LMARGIN", new_y="NEXT")

    heading(agreement.company_name, 16)
    if agreement.company_contact:
        para(agreement.company_contact, 9)
    heading(agreement.heading, 14)
    para(f"Customer: {agreement.customer_name} ({agreement.customer_email})")
    para(f"Service address: {agreement.service_address}")
    heading("Agreed service")
    for label, value in agreement.lines:
        para(f"{label}: {value}")
    heading(f"Service terms (version {agreement.terms.version})")
    for term in agreement.terms.terms:
        para(f"{term['title']}: {term['text']}")
    heading(f"Electronic records disclosure ({agreement.e_records_version})")
    for paragraph in agreement.disclosure:
        para(paragraph, 9)
    heading("Signature")
    para(f"Signed by typing the name: {evidence.typed_name}")
    para(f"Signed at: {local_time(signed_at, '%Y-%m-%d %H:%M:%S %Z')} ({signed_at.isoformat()})")
    para(f"IP address: {evidence.ip_address or 'unknown'}")
    para(f"Browser: {evidence.user_agent or 'unknown'}", 9)
    para(f"Authenticated by the welcome link with nonce hash {evidence.link_nonce_hash or 'none'}", 9)
    para(f"Terms accepted one by one: {', '.join(evidence.accepted_terms) or 'none'}", 9)
    para(f"SHA-256 of the document shown: {agreement.sha256}", 9)
    return bytes(pdf.output())


# Office decisions on a promise: a difference resolved, a change agreed, a promise withdrawn.
AMENDING = (Outcome.RESOLVED.value, Outcome.AGREED.value, Outcome.WITHDRAWN.value)


@dataclass(frozen=True)
class Amendment:
    """A change to an agreed value after signing (an office decision): dated, beside the signed
    agreement, which stays as it was signed."""

    when: datetime
    label: str
    value: str
    note: str


def amendments(session: Session, account: Account, signature: Signature) -> list[Amendment]:
    """Every decision on a promise recorded after the signature, oldest first."""
    signed = session.get(RecordEntry, signature.record_entry_id)
    if signed is None:
        return []
    items = {item.id: item for item in account.all_items}
    found = []
    for entry in session.scalars(
        select(RecordEntry)
        .where(
            RecordEntry.account_id == account.id,
            RecordEntry.seq > signed.seq,
            RecordEntry.item_id.is_not(None),
            RecordEntry.outcome.in_(AMENDING),
            RecordEntry.actor != "customer",
        )
        .order_by(RecordEntry.seq)
    ):
        item = items.get(entry.item_id or 0)
        if item is None:
            continue
        value = (
            "withdrawn" if entry.outcome == "withdrawn" else display_value(entry.confirmed_value, item.kind)
        )
        starts = (entry.details or {}).get("effective_from")
        if starts:
            value += f" (from {display_value(str(starts), 'start_date')})"
        found.append(Amendment(entry.created_at, item.label, value, entry.note))
    return found


def signature_of(session: Session, account_id: int) -> Signature | None:
    return session.scalars(select(Signature).where(Signature.account_id == account_id)).first()


def pdf_download(signature: Signature) -> Response:
    """The signed PDF's stored bytes, for the customer and for staff alike."""
    response = Response(signature.pdf, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="{PDF_NAME}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
