from __future__ import annotations

from typing import Any

from babel.numbers import list_currencies
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    Form,
    HiddenField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Email, InputRequired, Length, Optional, Regexp, ValidationError

from portal.company import checklist_lines, clean_logo_path
from portal.models import StaffUser
from portal.once import OnceForm
from portal.staff.handoff_forms import options
from portal.validation import SingleLine


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired("Enter your email address."),
                                            Email("Enter a valid email address."),
                                            Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired("Enter your password."),
                                                     Length(max=200)])
    remember = BooleanField("Keep me signed in on this device")
    next = HiddenField()


HEX_COLOUR = r"^#[0-9a-fA-F]{6}$"


class CompanySettingsForm(FlaskForm):
    name = StringField("Company name", validators=[DataRequired("Enter the company name."), Length(max=120),
                                                   SingleLine("The company name")])
    phone = StringField("Phone", validators=[Optional(), Length(max=40), SingleLine("The phone number")])
    email = EmailField("Customer-facing email", validators=[Optional(), SingleLine("The email address"),
                                                            Email("Enter a valid email address."), Length(max=254)])
    office_email = EmailField("Office email (gets difference alerts)",
                              validators=[Optional(), SingleLine("The email address"),
                                          Email("Enter a valid email address."), Length(max=254)])
    logo_url = StringField("Logo file (its path inside static/)", validators=[Optional(), Length(max=500)])
    brand_color = StringField("Brand colour", validators=[
        DataRequired("Enter a colour like #0b5cab."),
        Regexp(HEX_COLOUR, message="Use a colour like #0b5cab."),
    ])
    currency = StringField("Currency", validators=[
        DataRequired("Enter a currency code like USD."), Length(min=3, max=3)])
    readiness_checklist = TextAreaField("Before-the-first-visit checklist (one item per line)",
                                        validators=[Length(max=2000)])

    def validate_currency(self, field: StringField) -> None:
        code = (field.data or "").upper()
        if code not in list_currencies():
            raise ValidationError("Enter a known currency code like USD or EUR.")
        field.data = code

    def validate_logo_url(self, field: StringField) -> None:
        try:
            field.data = clean_logo_path(field.data or "")
        except ValueError as problem:
            raise ValidationError(str(problem)) from None

    def validate_readiness_checklist(self, field: TextAreaField) -> None:
        lines = checklist_lines(field.data or "")
        if len(lines) > 12:
            raise ValidationError("Keep the checklist to 12 items or fewer.")
        if any(len(line) > 120 for line in lines):
            raise ValidationError("Keep each checklist item under 120 characters.")



class DifferenceFilterForm(Form):
    """Read from the query string (a GET form: filters are bookmarkable, need no CSRF)."""

    status = SelectField("Status", validate_choice=False,
                         choices=options([("open", "Open"), ("resolved", "Resolved")]))
    kind = SelectField("Kind", validate_choice=False)
    salesperson = SelectField("Salesperson", validate_choice=False)
    visit_from = DateField("First visit from", validators=[Optional()])
    visit_to = DateField("First visit to", validators=[Optional()])


RESOLUTIONS = {
    "accept": "Accept the customer's version",
    "keep": "Keep the promise: the customer was contacted and agreed",
    "assign": "Assign it to a colleague to handle",
}


class ResolveForm(OnceForm):
    action = RadioField("What do you decide?", validators=[InputRequired("Choose what to do.")],
                        render_kw={"class": "plain"})
    note = TextAreaField("Note (how was the customer contacted, and what did they agree?)",
                         validators=[Length(max=1000)])
    assignee = SelectField("Assign to", coerce=int, validate_choice=False)
    back = HiddenField()


def new_resolve_form(people: list[StaffUser], disputed: bool) -> ResolveForm:
    """A dispute without a new value cannot be accepted as it stands: no such choice."""
    form = ResolveForm()
    form.action.choices = options([(key, label) for key, label in RESOLUTIONS.items()
                                   if not (disputed and key == "accept")])
    form.assignee.choices = options([(p.id, p.display_name) for p in people])
    return form


class NoteForm(OnceForm):
    item = SelectField("About", coerce=int)
    note = TextAreaField("Note", validators=[DataRequired("Write the note first."),
                                             Length(max=1000, message="Keep the note under 1,000 characters.")])


def new_note_form(account: Any) -> NoteForm:
    """Only this account's promises are offered (and accepted: the choice is validated)."""
    form = NoteForm()
    form.item.choices = options([(0, "The account as a whole"),
                                 *((item.id, item.label) for item in account.items)])
    return form


class AccountFilterForm(Form):
    """The accounts list's search, filters and order, read from the query string (a GET form:
    bookmarkable, no CSRF); choices are filled in by the view."""

    q = StringField("Search", validators=[Optional(), Length(max=100, message="Keep the search under 100 characters.")])
    status = SelectField("Status", validate_choice=False)
    salesperson = SelectField("Salesperson", validate_choice=False)
    visit_from = DateField("First visit from", validators=[Optional()])
    visit_to = DateField("First visit to", validators=[Optional()])
    sort = SelectField("Order", validate_choice=False)
