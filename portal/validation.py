"""One validator for handoffs from every door: the staff form, the JSON API and CSV import.

Input is the API's JSON shape (a mapping); the result is a `HandoffData` or a dict of errors
keyed by field path ("customer.email", "promises.2.value"), each a sentence for people.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from babel.numbers import format_currency
from email_validator import EmailNotValidError, validate_email
from wtforms import Field
from wtforms.validators import ValidationError

from portal import occasions
from portal.handoffs import CADENCES, HandoffData, Promise
from portal.models import PromiseKind
from portal.secret_codes import BLANKED, HIDDEN_LEFT

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
PHONE = re.compile(r"^\+?[0-9 ().\-]{7,25}$")
MAX_PRICE_CENTS = 10_000_000
MAX_PROMISES = 40
MAX_VISITS_PER_WEEK = 7
LIMITS = {
    "customer.name": 120,
    "customer.phone": 40,
    "service_address": 300,
    "plan": 120,
    "why_chose_us": 2000,
    "concerns": 2000,
    "contact_preference": 2000,
    "promise.value": 1000,
    "promise.label": 120,
    "external_id": 100,
}


# A single-line value (a name, a phone number, anything that may end up in an email header or
# subject) refuses every control character and line separator: C0 (CR, LF, NUL, tab...), DEL,
# C1 (NEL...) and U+2028/U+2029. A line break in a customer's name once made every office alert
# email for that account fail for good.
NOT_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Multi-line text keeps line feeds and tabs (browsers send CR LF; it is stored as LF).
NOT_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def single_line_problem(value: str, what: str) -> str | None:
    """The message for a value that is not one plain line of text, or None when it is."""
    if NOT_ONE_LINE.search(value):
        return f"{what} must be one line, without line breaks or control characters."
    return None


class SingleLine:
    """The same rule as a WTForms validator, for forms outside the handoff validator."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __call__(self, _form: object, field: Field) -> None:
        if isinstance(field.data, str):
            problem = single_line_problem(field.data.strip(), self.what)
            if problem:
                raise ValidationError(problem)


class HandoffInvalid(ValueError):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


class _Checker:
    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def text(
        self,
        key: str,
        value: Any,
        *,
        required: bool,
        what: str,
        single_line: bool = False,
        limit_of: str | None = None,
    ) -> str:
        """`limit_of` names the LIMITS entry when the key is a position (promises.3.label)."""
        limit = LIMITS.get(limit_of or key, 1000)
        if value is not None and not isinstance(value, str):
            self.errors[key] = f"{what} must be text."
            return ""
        cleaned = _text(value)
        if not single_line:
            cleaned = cleaned.replace("\r\n", "\n").replace("\r", "\n")
        if required and not cleaned:
            self.errors[key] = f"Enter {what.lower()}."
        elif len(cleaned) > limit:
            self.errors[key] = f"{what} must be at most {limit} characters."
        elif single_line and (problem := single_line_problem(cleaned, what)):
            self.errors[key] = problem
        elif NOT_TEXT.search(cleaned):
            self.errors[key] = f"{what} contains characters we cannot store."
        return cleaned


def parse_handoff(payload: Any, today: date | None = None) -> HandoffData:
    """Validate a handoff; raise `HandoffInvalid` carrying every error found."""
    if not isinstance(payload, Mapping):
        raise HandoffInvalid({"body": "Send a JSON object describing one handoff."})
    today = today or date.today()
    check = _Checker()
    customer = payload.get("customer")
    if not isinstance(customer, Mapping):
        check.errors["customer"] = "Give the customer's name, email and phone."
        customer = {}
    name = check.text(
        "customer.name", customer.get("name"), required=True, what="The customer's name", single_line=True
    )
    email = _email(check, customer.get("email"))
    phone = check.text(
        "customer.phone", customer.get("phone"), required=False, what="The phone number", single_line=True
    )
    if phone and "customer.phone" not in check.errors and not PHONE.match(phone):
        check.errors["customer.phone"] = "Enter a phone number like +1 480 555 0134."
    address = check.text(
        "service_address",
        payload.get("service_address"),
        required=True,
        what="The service address",
        single_line=True,
    )
    plan = check.text("plan", payload.get("plan"), required=True, what="The plan", single_line=True)
    visits_per_week = _visits_per_week(check, payload.get("visits_per_week"))
    cadence = _cadence(check, payload.get("billing_cadence"))
    promises = _promises(check, payload.get("promises", []), visits_per_week, today)
    data = HandoffData(
        customer_name=name,
        customer_email=email,
        customer_phone=phone,
        service_address=address,
        plan=plan,
        price_cents=_price(check, payload.get("price_cents")),
        first_visit=_first_visit(check, payload.get("first_visit"), today),
        promises=promises,
        visits_per_week=visits_per_week,
        billing_cadence=cadence,
        why_chose_us=check.text(
            "why_chose_us", payload.get("why_chose_us"), required=False, what="Why they chose us"
        ),
        concerns=check.text("concerns", payload.get("concerns"), required=False, what="Concerns"),
        contact_preference=check.text(
            "contact_preference", payload.get("contact_preference"), required=False, what="Contact preference"
        ),
    )
    if check.errors:
        raise HandoffInvalid(check.errors)
    return data


def _email(check: _Checker, value: Any) -> str:
    raw = check.text(
        "customer.email", value, required=True, what="The customer's email address", single_line=True
    )
    if not raw or "customer.email" in check.errors:
        return raw
    try:
        return validate_email(raw, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        check.errors["customer.email"] = "Enter a valid email address, like dana@example.com."
        return raw


def _price(check: _Checker, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        else:
            check.errors["price_cents"] = "Give the price as a whole number of cents, e.g. 16500."
            return 0
    if value <= 0 or value > MAX_PRICE_CENTS:
        check.errors["price_cents"] = "The price must be more than 0 and at most 100,000.00."
        return 0
    return int(value)


def _first_visit(check: _Checker, value: Any, today: date) -> date | None:
    if value in (None, ""):
        check.errors["first_visit"] = "Enter the first visit date."
        return None
    try:
        visit = date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        visit = None
    if visit is None:
        check.errors["first_visit"] = "Enter the first visit as a date, e.g. 2026-12-04."
    elif visit < today:
        check.errors["first_visit"] = "The first visit cannot be in the past."
    elif visit > today + timedelta(days=366):
        check.errors["first_visit"] = "The first visit must be within a year."
    else:
        return visit
    return None


def _visits_per_week(check: _Checker, value: Any) -> int:
    """Service days a week; not given means weekly (1)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return 1
    number = int(value.strip()) if isinstance(value, str) and value.strip().isdigit() else value
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= MAX_VISITS_PER_WEEK:
        check.errors["visits_per_week"] = (
            f"Give the visits a week as a whole number from 1 to {MAX_VISITS_PER_WEEK} (weekly = 1)."
        )
        return 1
    return int(number)


def _cadence(check: _Checker, value: Any) -> str:
    """What the price buys: a month (the default), a quarter or one visit."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return "monthly"
    cadence = value.strip().lower().replace(" ", "_").replace("-", "_") if isinstance(value, str) else None
    if cadence not in CADENCES:
        check.errors["billing_cadence"] = "Choose how the price is billed: monthly, quarterly or per_visit."
        return "monthly"
    return cadence


def normalise_weekdays(value: str) -> str | None:
    """'friday', 'Mon and Thu', 'Monday, Thursday' -> 'Monday, Thursday'; None if not days."""
    tokens = [t for t in re.split(r"[,/&]|\band\b|\s+", value.lower()) if t.strip()]
    days: list[str] = []
    for token in tokens:
        match = next((d for d in WEEKDAYS if len(token) >= 3 and d.lower().startswith(token)), None)
        if match is None:
            return None
        if match not in days:
            days.append(match)
    return ", ".join(sorted(days, key=WEEKDAYS.index)) if days else None


def _promises(
    check: _Checker, value: Any, visits_per_week: int = 1, today: date | None = None
) -> list[Promise]:
    if not isinstance(value, list):
        check.errors["promises"] = "Give the promises as a list."
        return []
    if len(value) > MAX_PROMISES:
        check.errors["promises"] = f"At most {MAX_PROMISES} promises per handoff."
        return []
    kinds = {kind.value for kind in PromiseKind}
    promises = []
    for index, entry in enumerate(value):
        key = f"promises.{index}"
        if not isinstance(entry, Mapping):
            check.errors[key] = "Each promise needs a kind and a value."
            continue
        kind = entry.get("kind")
        if not isinstance(kind, str) or kind not in kinds:  # a list/dict kind is unhashable
            check.errors[f"{key}.kind"] = f"Choose a kind: {', '.join(sorted(kinds))}."
            continue
        text = check.text(
            f"{key}.value", entry.get("value"), required=True, what="The promise", limit_of="promise.value"
        )
        if BLANKED in text:  # a blanked code sent back as it was shown
            check.errors[f"{key}.value"] = HIDDEN_LEFT
            continue
        label = check.text(
            f"{key}.label",
            entry.get("label"),
            required=False,
            what="The label",
            single_line=True,
            limit_of="promise.label",
        )
        if kind == PromiseKind.VISIT_DAY.value and text:
            days = normalise_weekdays(text)
            if days is None:
                check.errors[f"{key}.value"] = "Give the visit day(s) as weekdays, e.g. Friday."
                continue
            count = len(days.split(", "))
            if count > visits_per_week and "visits_per_week" not in check.errors:
                # The plan decides how many days: a weekly plan promises one.
                visits = "1 visit" if visits_per_week == 1 else f"{visits_per_week} visits"
                check.errors[f"{key}.value"] = (
                    f"The plan has {visits} a week but {count} visit days are promised: "
                    f"choose {visits_per_week}, or raise the service days a week."
                )
                continue
            text = days
        occasion = _occasion(check, key, kind, entry, today or date.today())
        if text:
            promises.append(Promise(kind, text, label, occasion))
    return promises


OCCASION_FIELDS = ("occasion", "date", "every", "owner")


def _occasion(
    check: _Checker, key: str, kind: str, entry: Mapping[str, Any], today: date
) -> occasions.Occasion | None:
    """A promise's optional when and owner: `occasion` (first_visit, by_date, recurring, none),
    `date` (the "by" date, or a repeat's first date), `every` ("3 months", "2 weeks") and
    `owner` (technician, office). None when none of them is given: the kind's default."""
    given: dict[str, str] = {}
    for name in OCCASION_FIELDS:
        value = entry.get(name)
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            check.errors[f"{key}.{name}"] = "Give it as text."
            return None
        given[name] = value
    if not given:
        return None
    chosen = given.get("occasion", "").strip().lower()
    if not chosen:  # a date alone means "by", a period alone "every"
        chosen = occasions.RECURRING if "every" in given else occasions.BY_DATE if "date" in given else ""
    if not chosen:
        chosen = occasions.default_for(kind).kind
    if chosen not in occasions.OCCASIONS:
        check.errors[f"{key}.occasion"] = "Choose when: first_visit, by_date, recurring or none."
        return None
    if chosen != occasions.NONE and kind not in occasions.TRACKABLE_KINDS:
        check.errors[f"{key}.occasion"] = "Only equipment and other promises can be tracked as work to do."
        return None
    owner = given.get("owner", occasions.TECHNICIAN).strip().lower()
    if owner not in occasions.OWNERS:
        check.errors[f"{key}.owner"] = "Choose who does it: technician or office."
        return None
    on = _occasion_date(check, f"{key}.date", given.get("date"), today)
    if chosen == occasions.BY_DATE and on is None and f"{key}.date" not in check.errors:
        check.errors[f"{key}.date"] = "Give the date it is due by, e.g. 2027-05-31."
    every, unit = 0, ""
    if chosen == occasions.RECURRING:
        parsed = occasions.parse_every(given.get("every", ""))
        if parsed is None or not 1 <= parsed[0] <= occasions.MAX_EVERY[parsed[1]]:
            check.errors[f"{key}.every"] = (
                "Say how often: every 1 to 52 weeks or 1 to 24 months, e.g. 3 months."
            )
            return None
        every, unit = parsed
    if chosen in (occasions.NONE, occasions.FIRST_VISIT):
        on = None
    return occasions.Occasion(chosen, owner, on, every, unit)


def _occasion_date(check: _Checker, key: str, value: str | None, today: date) -> date | None:
    if value is None:
        return None
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        check.errors[key] = "Give the date as YYYY-MM-DD, e.g. 2027-05-31."
        return None
    if day < today:
        check.errors[key] = "The date cannot be in the past."
    elif day > today + timedelta(days=occasions.MAX_AHEAD_DAYS):
        check.errors[key] = "The date must be within three years."
    else:
        return day
    return None


# ---------------------------------------------------------------- invoices from other systems
# The staff invoice form takes its limits from here too (portal/payments/forms.py).

MAX_INVOICE_LINES = 30
MIN_INVOICE_CENTS = 50  # Stripe's smallest charge
MAX_INVOICE_CENTS = 99_999_999  # Stripe's largest amount (999,999.99)
MAX_LINE_DESCRIPTION = 300
MAX_QUANTITY = 10_000


@dataclass(frozen=True)
class InvoiceData:
    """A checked invoice request: lines as (description, amount in cents), a quantity above one
    folded into the description and the amount; `digest` fingerprints what was asked for, so a
    repeat of the same request is told from a different one with the same external id."""

    external_id: str
    currency: str
    due_date: date
    lines: list[tuple[str, int]]
    digest: str


def parse_invoice(payload: Any, *, today: date, currency: str) -> InvoiceData:
    """Validate an invoice from another system (API body or CSV rows); raise `HandoffInvalid`
    with every error at once, keyed "external_id", "due_date", "lines.0.amount_cents"...
    `currency` is the company's: the one invoices are paid in."""
    if not isinstance(payload, Mapping):
        raise HandoffInvalid({"body": "Send a JSON object describing one invoice."})
    check = _Checker()
    external_id = _external_id(check, payload.get("external_id"))
    chosen = _currency(check, payload.get("currency"), currency)
    due = _due_date(check, payload.get("due_date"), today)
    lines, asked = _invoice_lines(check, payload.get("lines"), currency)
    if check.errors:
        raise HandoffInvalid(check.errors)
    assert due is not None
    digest = hashlib.sha256(
        json.dumps({"currency": chosen, "due_date": due.isoformat(), "lines": asked}, sort_keys=True).encode()
    ).hexdigest()
    return InvoiceData(external_id, chosen, due, lines, digest)


def _external_id(check: _Checker, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return check.text(
        "external_id",
        value,
        required=True,
        what="The external id (your system's invoice id)",
        single_line=True,
    )


def _currency(check: _Checker, value: Any, company_currency: str) -> str:
    if value in (None, ""):
        return company_currency.upper()
    if not isinstance(value, str) or value.strip().upper() != company_currency.upper():
        check.errors["currency"] = (
            f"Invoices here are paid in {company_currency.upper()}; send that currency or leave it out."
        )
        return company_currency.upper()
    return value.strip().upper()


def _due_date(check: _Checker, value: Any, today: date) -> date | None:
    try:
        due = date.fromisoformat(value.strip()) if isinstance(value, str) else None
    except ValueError:
        due = None
    if due is None:
        check.errors["due_date"] = "Give the due date as a date, e.g. 2026-12-31."
    elif due < today:
        check.errors["due_date"] = "The due date cannot be in the past."
    elif due > today + timedelta(days=366):
        check.errors["due_date"] = "The due date must be within a year."
    else:
        return due
    return None


def _whole_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _invoice_lines(check: _Checker, value: Any, currency: str) -> tuple[list[tuple[str, int]], list[Any]]:
    """The lines to write, and what was asked for (for the digest)."""
    if not isinstance(value, list) or not value:
        check.errors["lines"] = "Give at least one line: description, amount_cents and quantity."
        return [], []
    if len(value) > MAX_INVOICE_LINES:
        check.errors["lines"] = f"At most {MAX_INVOICE_LINES} lines per invoice."
        return [], []
    lines: list[tuple[str, int]] = []
    asked: list[Any] = []
    for index, entry in enumerate(value):
        key = f"lines.{index}"
        if not isinstance(entry, Mapping):
            check.errors[key] = "Each line needs a description, amount_cents and quantity."
            continue
        description = check.text(
            f"{key}.description",
            entry.get("description"),
            required=True,
            what="The description",
            single_line=True,
        )
        amount = _whole_number(entry.get("amount_cents"))
        if amount is None or not 0 < amount <= MAX_INVOICE_CENTS:
            check.errors[f"{key}.amount_cents"] = (
                "Give the amount as a whole number of cents above 0, e.g. 16500."
            )
            amount = None
        raw_quantity = entry.get("quantity", 1)
        quantity = 1 if raw_quantity is None else _whole_number(raw_quantity)
        if quantity is None or not 0 < quantity <= MAX_QUANTITY:
            check.errors[f"{key}.quantity"] = (
                f"Give the quantity as a whole number from 1 to {MAX_QUANTITY:,}."
            )
            quantity = None
        if amount is None or quantity is None or f"{key}.description" in check.errors:
            continue
        asked.append([description, amount, quantity])
        shown = description
        if quantity > 1:
            each = format_currency(Decimal(amount) / 100, currency.upper(), locale="en_US")
            shown = f"{description} ({quantity} × {each})"
        if len(shown) > MAX_LINE_DESCRIPTION:
            room = MAX_LINE_DESCRIPTION - (len(shown) - len(description))
            check.errors[f"{key}.description"] = f"Keep the description to {room} characters."
            continue
        lines.append((shown, amount * quantity))
    if lines and len(lines) == len(value):
        total = sum(cents for _, cents in lines)
        if total < MIN_INVOICE_CENTS:
            check.errors["lines"] = "The total must be at least 0.50: card payments cannot be smaller."
        elif total > MAX_INVOICE_CENTS:
            check.errors["lines"] = "The total is too large for one card payment; split the invoice."
    return lines, asked
