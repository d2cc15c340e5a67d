"""Payment forms: the staff invoice form (line items and a due date) and the button forms."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from flask_wtf import FlaskForm
from wtforms import BooleanField, FieldList, Form, FormField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Regexp

from portal.money import parse_money
from portal.once import OnceForm
from portal.payments.invoices import Line
from portal.validation import MAX_INVOICE_CENTS, MAX_INVOICE_LINES, MIN_INVOICE_CENTS, SingleLine

# The same limits as invoices from other systems (portal/validation.py, parse_invoice).
MAX_LINES = MAX_INVOICE_LINES
MIN_TOTAL_CENTS = MIN_INVOICE_CENTS
MAX_TOTAL_CENTS = MAX_INVOICE_CENTS


class InvoiceLineForm(Form):
    # Not `description`: FormField has an attribute of that name.
    detail = StringField("Description", render_kw={"maxlength": 300})
    amount = StringField("Amount", render_kw={"inputmode": "decimal", "placeholder": "165.00"})


class InvoiceForm(OnceForm):
    lines = FieldList(FormField(InvoiceLineForm), min_entries=3, max_entries=MAX_LINES)
    due_date = StringField("Due date", render_kw={"type": "date"})

    @classmethod
    def prefilled(cls, first: Line, due: date) -> InvoiceForm:
        """A new form whose first line is `first` (the plan's price), due on `due`."""
        amount = f"{Decimal(first.amount_cents) / 100:.2f}"
        return cls(
            data={"due_date": due.isoformat(), "lines": [{"detail": first.description, "amount": amount}]}
        )

    def parse(self, today: date) -> tuple[list[Line], date] | None:
        """The lines (blank rows skipped) and due date, or None with a message on each field."""
        lines: list[Line] = []
        valid = True
        for entry in self.lines:
            description = (entry.detail.data or "").strip()
            amount_text = (entry.amount.data or "").strip()
            if not description and not amount_text:
                continue
            if not description:
                entry.detail.errors = ["Describe this line, e.g. Weekly service, March."]
                valid = False
            elif len(description) > 300:
                entry.detail.errors = ["Keep the description under 300 characters."]
                valid = False
            try:
                cents = parse_money(amount_text)
                if cents <= 0:
                    raise ValueError("Enter an amount above zero")
            except ValueError as error:
                entry.amount.errors = [str(error)]
                valid = False
                continue
            lines.append(Line(description, cents))
        if valid and not lines:
            self.form_errors.append("Add at least one line with a description and an amount.")
            valid = False
        total = sum(line.amount_cents for line in lines)
        if valid and total < MIN_TOTAL_CENTS:
            self.form_errors.append("The total must be at least 0.50: card payments cannot be smaller.")
            valid = False
        if valid and total > MAX_TOTAL_CENTS:
            self.form_errors.append("The total is too large for one card payment; split the invoice.")
            valid = False
        due = self._due_date(today)
        if due is None or not valid:
            return None
        return lines, due

    def _due_date(self, today: date) -> date | None:
        try:
            due = date.fromisoformat((self.due_date.data or "").strip())
        except ValueError:
            self.due_date.errors = ["Choose a due date, e.g. 2026-12-31."]
            return None
        if due < today:
            self.due_date.errors = ["Choose a due date from today on."]
            return None
        return due


class AdjustForm(OnceForm):
    """Void or refund an invoice: the reason is required, and the customer sees it."""

    reason = TextAreaField(
        "Reason (the customer sees it on their statement)",
        validators=[
            DataRequired("Give a reason, e.g. Billed twice for March."),
            Length(max=300, message="Keep the reason under 300 characters."),
        ],
        render_kw={"rows": 3, "maxlength": 300},
    )


class DemoForm(FlaskForm):
    """The demo page's buttons: CSRF only. Repeats are harmless (the events repeat too)."""


class PromotionForm(OnceForm):
    """The office confirms a promotion from the sale as a dated credit (plan_billing)."""

    month = StringField(
        "Month it covers",
        validators=[DataRequired("Choose the month, e.g. 2026-12.")],
        render_kw={"placeholder": "2026-12", "inputmode": "numeric", "autocomplete": "off"},
    )
    free = BooleanField("Free: the whole month's plan charge")
    amount = StringField("Or an amount off", render_kw={"inputmode": "decimal", "placeholder": "50.00"})
    code = StringField(
        "Promo code",
        validators=[
            DataRequired("Enter the promo code, e.g. FALL26."),
            Length(max=40, message="Keep the code to 40 characters."),
            SingleLine("The promo code"),
            Regexp(r"^[A-Za-z0-9_-]+$", message="Use letters, digits, - and _ only, e.g. FALL26."),
        ],
    )
    source = StringField("From the sale", validators=[Length(max=2000), SingleLine("The sale's words")])

    def parse(self, today: date) -> tuple[date, int | None] | None:
        """The month (its first day) and the amount off (None: free), or None with messages."""
        valid = True
        month: date | None = None
        try:
            month = date.fromisoformat(f"{(self.month.data or '').strip()}-01")
        except ValueError:
            self.month.errors = ["Enter the month as YYYY-MM, e.g. 2026-12."]
            valid = False
        if month is not None and not (
            date(today.year - 1, today.month, 1) <= month <= date(today.year + 2, today.month, 1)
        ):
            self.month.errors = ["Choose a month from a year ago to two years ahead."]
            valid = False
        amount: int | None = None
        text = (self.amount.data or "").strip()
        if self.free.data and text:
            self.amount.errors = ["Either free or an amount off, not both."]
            valid = False
        elif not self.free.data:
            try:
                amount = parse_money(text)
                if amount <= 0 or amount > MAX_TOTAL_CENTS:
                    raise ValueError("Enter an amount above zero, e.g. 50.00")
            except ValueError as error:
                self.amount.errors = [str(error) if text else "Tick free, or enter an amount off."]
                valid = False
        if not valid or month is None:
            return None
        return month, amount
