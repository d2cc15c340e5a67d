from __future__ import annotations

from typing import Any

from babel.numbers import list_currencies
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
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
from wtforms.validators import (
    AnyOf,
    DataRequired,
    Email,
    EqualTo,
    InputRequired,
    Length,
    Optional,
    Regexp,
    ValidationError,
)

from portal import access_card, brand, logo
from portal.agreement import parse_terms
from portal.auth import MIN_PASSWORD
from portal.company import checklist_lines, parse_retry_days, zone_names
from portal.forms import CheckboxesField, options
from portal.models import StaffUser
from portal.once import OnceForm
from portal.validation import SingleLine


class LoginForm(FlaskForm):
    email = EmailField(
        "Email",
        validators=[
            DataRequired("Enter your email address."),
            Email("Enter a valid email address."),
            Length(max=254),
        ],
    )
    password = PasswordField("Password", validators=[DataRequired("Enter your password."), Length(max=200)])
    remember = BooleanField("Keep me signed in on this device")
    next = HiddenField()


ROLE_CHOICES = options(
    [("office", "Office"), ("sales", "Sales"), ("technician", "Technician"), ("admin", "Admin")]
)
_ROLE = [AnyOf([choice.value for choice in ROLE_CHOICES], message="Choose a role.")]


def _email_field(label: str) -> EmailField:
    return EmailField(
        label,
        validators=[
            DataRequired("Enter an email address."),
            SingleLine("The email address"),
            Email("Enter a valid email address."),
            Length(max=254),
        ],
    )


def _new_password(label: str) -> PasswordField:
    return PasswordField(
        label,
        validators=[
            DataRequired("Choose a password."),
            Length(min=MIN_PASSWORD, max=200, message=f"Use between {MIN_PASSWORD} and 200 characters."),
        ],
    )


def _repeat(label: str, of: str) -> PasswordField:
    return PasswordField(
        label,
        validators=[
            DataRequired("Type the new password again."),
            EqualTo(of, message="The two passwords differ."),
        ],
    )


class InviteForm(OnceForm):
    name = StringField(
        "Name",
        validators=[
            DataRequired("Enter their name: colleagues see it."),
            Length(max=120),
            SingleLine("The name"),
        ],
    )
    email = _email_field("Email")
    role = SelectField("Role", choices=ROLE_CHOICES, validate_choice=False, validators=_ROLE)


class RoleForm(OnceForm):
    role = SelectField("Role", choices=ROLE_CHOICES, validate_choice=False, validators=_ROLE)


class ActiveForm(OnceForm):
    active = HiddenField(validators=[AnyOf(["0", "1"], message="That action was not understood.")])


class ForgotPasswordForm(OnceForm):
    email = _email_field("Your email")


class SetPasswordForm(FlaskForm):
    password = _new_password("New password")
    confirm = _repeat("New password again", "password")


class ChangePasswordForm(FlaskForm):
    current = PasswordField(
        "Current password", validators=[DataRequired("Enter your current password."), Length(max=200)]
    )
    password = _new_password("New password")
    confirm = _repeat("New password again", "password")


class WebhookForm(FlaskForm):
    """Settings: where outgoing webhooks go (portal/webhooks.py checks the address itself)."""

    url = StringField(
        "Webhook URL",
        validators=[Optional(), Length(max=254, message="Keep the URL to 254 characters.")],
        render_kw={"inputmode": "url", "placeholder": "https://crm.example.com/hooks/pool"},
    )


class CompanySettingsForm(FlaskForm):
    name = StringField(
        "Company name",
        validators=[DataRequired("Enter the company name."), Length(max=120), SingleLine("The company name")],
    )
    phone = StringField("Phone", validators=[Optional(), Length(max=40), SingleLine("The phone number")])
    email = EmailField(
        "Customer-facing email",
        validators=[
            Optional(),
            SingleLine("The email address"),
            Email("Enter a valid email address."),
            Length(max=254),
        ],
    )
    office_email = EmailField(
        "Office email (gets difference alerts)",
        validators=[
            Optional(),
            SingleLine("The email address"),
            Email("Enter a valid email address."),
            Length(max=254),
        ],
    )
    logo = FileField(
        "Logo (PNG, JPEG or WebP, at most 2 MB)", render_kw={"accept": "image/png,image/jpeg,image/webp"}
    )
    remove_logo = BooleanField("Remove the logo")
    brand_color = StringField(
        "Brand colour",
        render_kw={"spellcheck": "false", "maxlength": 7},
        validators=[
            DataRequired("Enter a colour like #0b5cab."),
            Regexp(brand.HEX_COLOUR.pattern, message="Use a colour like #0b5cab: # and six hex digits."),
        ],
    )
    currency = StringField(
        "Currency", validators=[DataRequired("Enter a currency code like USD."), Length(min=3, max=3)]
    )
    timezone = SelectField("Time zone", validate_choice=False)
    sender_name = StringField(
        "Name on emails", validators=[Optional(), Length(max=120), SingleLine("The name on emails")]
    )
    reply_to = EmailField(
        "Replies go to",
        validators=[
            Optional(),
            SingleLine("The email address"),
            Email("Enter a valid email address."),
            Length(max=254),
        ],
    )
    autopay_retry_days = StringField(
        "Try a declined card again, days after the first decline",
        validators=[Length(max=40), SingleLine("The retry days")],
        render_kw={"inputmode": "numeric", "spellcheck": "false"},
    )
    readiness_checklist = TextAreaField(
        "Before-the-first-visit checklist (one item per line)", validators=[Length(max=2000)]
    )
    # Plan billing (portal/payments/plan_billing.py): its own fieldset on the page.
    billing_timing = RadioField(
        "When plans are invoiced",
        choices=options(
            [
                ("advance", "In advance, on the billing day, for the month starting then"),
                ("arrears", "In arrears, on the last day of the month, for that month"),
            ]
        ),
        default="advance",
        validators=[DataRequired("Choose when plans are invoiced.")],
    )
    billing_day = SelectField(
        "Billing day (in advance)",
        choices=options([(str(day), str(day)) for day in range(1, 29)]),
        default="1",
        validators=[DataRequired("Choose a billing day from 1 to 28.")],
    )
    first_period = RadioField(
        "The first period",
        choices=options(
            [("prorated", "Prorated: charged from the first visit"), ("full", "Full: a whole period's price")]
        ),
        default="prorated",
        validators=[DataRequired("Choose how the first period is charged.")],
    )
    service_terms = TextAreaField(
        "Service terms (one term per paragraph: its title on the first line, its text below)",
        validators=[Length(max=25000)],
        render_kw={"rows": 14},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timezone.choices = options([(name, name.replace("_", " ")) for name in zone_names()])
        self.logo_png: bytes | None = None  # the cleaned upload, once validated

    def validate_service_terms(self, field: TextAreaField) -> None:
        _, error = parse_terms(field.data or "")
        if error:
            raise ValidationError(error)

    def validate_autopay_retry_days(self, field: StringField) -> None:
        try:
            days = parse_retry_days(field.data or "")
        except ValueError as error:
            raise ValidationError(str(error)) from None
        field.data = ", ".join(str(day) for day in days)

    def validate_currency(self, field: StringField) -> None:
        code = (field.data or "").upper()
        if code not in list_currencies():
            raise ValidationError("Enter a known currency code like USD or EUR.")
        field.data = code

    def validate_brand_color(self, field: StringField) -> None:
        colour = (field.data or "").lower()
        if brand.HEX_COLOUR.match(colour) and not brand.readable(colour):
            raise ValidationError(
                f"Links and buttons in {colour} on the white page would be hard to read "
                f"(contrast {brand.contrast_on_page(colour):.1f}:1; WCAG AA asks for 4.5:1). "
                f"Try {brand.darker_shade(colour)}, a darker shade of the same colour."
            )

    def validate_timezone(self, field: SelectField) -> None:
        # The list shown is the check: every name in it is a zone this server's zoneinfo knows.
        if field.data not in zone_names():
            raise ValidationError("Choose a time zone from the list, like America/Phoenix.")

    def validate_logo(self, field: FileField) -> None:
        upload = field.data
        if not upload:
            return
        try:
            # One byte more than allowed is enough to tell the file is too large.
            self.logo_png = logo.clean(upload.stream.read(logo.MAX_BYTES + 1))
        except logo.LogoProblem as problem:
            raise ValidationError(str(problem)) from None

    def validate_readiness_checklist(self, field: TextAreaField) -> None:
        lines = checklist_lines(field.data or "")
        if len(lines) > 12:
            raise ValidationError("Keep the checklist to 12 items or fewer.")
        if any(len(line) > 120 for line in lines):
            raise ValidationError("Keep each checklist item under 120 characters.")


class DifferenceFilterForm(Form):
    """Read from the query string (a GET form: filters are bookmarkable, need no CSRF)."""

    status = SelectField(
        "Status", validate_choice=False, choices=options([("open", "Open"), ("resolved", "Resolved")])
    )
    kind = SelectField("Kind", validate_choice=False)
    salesperson = SelectField("Salesperson", validate_choice=False)
    visit_from = DateField("First visit from", validators=[Optional()])
    visit_to = DateField("First visit to", validators=[Optional()])


class ConsentExportForm(Form):
    """The consent records' date range, from the query string (a GET form: no CSRF)."""

    start = DateField("From", validators=[InputRequired("Choose the first day, e.g. 2026-01-01.")])
    end = DateField("To", validators=[InputRequired("Choose the last day, e.g. 2026-12-31.")])

    def validate_end(self, field: DateField) -> None:
        if self.start.data and field.data and field.data < self.start.data:
            raise ValidationError("The last day must be on or after the first.")


RESOLUTIONS = {
    "accept": "Accept the customer's version",
    "keep": "Keep the promise: the customer was contacted and agreed",
    "assign": "Assign it to a colleague to handle",
}


class TechnicianForm(OnceForm):
    # Any value reaches portal/technicians.py, which refuses all but an active technician.
    technician_id = SelectField("Technician", validate_choice=False)


class ResolveForm(OnceForm):
    action = RadioField(
        "What do you decide?", validators=[InputRequired("Choose what to do.")], render_kw={"class": "plain"}
    )
    note = TextAreaField(
        "Note (how was the customer contacted, and what did they agree?)", validators=[Length(max=1000)]
    )
    assignee = SelectField("Assign to", coerce=int, validate_choice=False)
    # A visit day: which of the customer's preferred days become the agreed ones.
    days = CheckboxesField("Days to agree", validate_choice=False)
    back = HiddenField()


ORDINALS = ("1st", "2nd", "3rd", "4th", "5th", "6th", "7th")


def new_resolve_form(
    people: list[StaffUser],
    disputed: bool,
    preferred_days: list[str] | None = None,
    needed: int = 1,
    *,
    blank: bool = False,
) -> ResolveForm:
    """A dispute without a new value cannot be accepted as it stands: no such choice. A visit
    day's answer is an ordered wish: the office agrees `needed` of its days. `blank`: a fresh
    form though the request is a POST (the page again after "Show codes")."""
    form = ResolveForm(formdata=None) if blank else ResolveForm()
    labels = dict(RESOLUTIONS)
    if preferred_days:
        labels["accept"] = (
            "Agree one of the customer's days" if needed == 1 else f"Agree {needed} of the customer's days"
        )
        form.days.choices = options(
            [(day, f"{day} ({ORDINALS[n]} choice)") for n, day in enumerate(preferred_days)]
        )
        if not form.is_submitted():
            form.days.data = preferred_days[:needed]  # the customer's first choices, to change at will
    form.action.choices = options(
        [(key, label) for key, label in labels.items() if not (disputed and key == "accept")]
    )
    form.assignee.choices = options([(p.id, p.display_name) for p in people])
    return form


class ChangeDecisionForm(OnceForm):
    """The office's answer to a change request (accept or decline, with a note)."""

    action = RadioField(
        "What do you decide?",
        validators=[InputRequired("Choose what to do.")],
        choices=options(
            [
                (
                    "accept",
                    "Accept: it becomes the agreed value (from the customer's date, if they gave one)",
                ),
                ("decline", "Decline: keep what is agreed, and say why"),
            ]
        ),
        render_kw={"class": "plain"},
    )
    value = StringField(
        "Agreed value (when accepting)",
        validators=[SingleLine("The agreed value"), Length(max=500)],
    )
    note = TextAreaField(
        "Note for the customer (they read it in their email and on My service)",
        validators=[Length(max=1000)],
    )
    back = HiddenField()


class FollowUpCloseForm(OnceForm):
    """The office closes a follow-up: what was done, and whether the customer hears it."""

    note = TextAreaField(
        "What was done",
        validators=[InputRequired("Say what was done, so the record shows it."), Length(max=1000)],
    )
    tell_customer = BooleanField(
        "Email this note to the customer (with any other decisions waiting for them)"
    )
    back = HiddenField()


class AgreedChangeForm(OnceForm):
    """The office changes an agreed value after signing; the customer is told."""

    value = StringField(
        "New agreed value",
        validators=[DataRequired("Enter the new value."), SingleLine("The new value"), Length(max=500)],
    )
    effective = DateField("From (optional; empty means now)", validators=[Optional()])
    note = TextAreaField(
        "Why (the customer reads this)",
        validators=[DataRequired("Say why, in words the customer will read."), Length(max=1000)],
    )


class NoteForm(OnceForm):
    item = SelectField("About", coerce=int)
    note = TextAreaField(
        "Note",
        validators=[
            DataRequired("Write the note first."),
            Length(max=1000, message="Keep the note under 1,000 characters."),
        ],
    )


def new_note_form(account: Any, blank: bool = False) -> NoteForm:
    """Only this account's promises are offered (and accepted: the choice is validated).
    `blank`: shown beside another form that was posted, so not filled from the request."""
    form = NoteForm(formdata=None) if blank else NoteForm()
    form.item.choices = options(
        [(0, "The account as a whole"), *((item.id, item.label) for item in account.items)]
    )
    return form


class AccountFilterForm(Form):
    """The accounts list's search, filters and order, read from the query string (a GET form:
    bookmarkable, no CSRF); choices are filled in by the view."""

    q = StringField(
        "Search", validators=[Optional(), Length(max=100, message="Keep the search under 100 characters.")]
    )
    status = SelectField("Status", validate_choice=False)
    salesperson = SelectField("Salesperson", validate_choice=False)
    visit_from = DateField("First visit from", validators=[Optional()])
    visit_to = DateField("First visit to", validators=[Optional()])
    sort = SelectField("Order", validate_choice=False)


class ShowCodesForm(FlaskForm):
    """ "Show code" on the brief: a POST (each showing is a record entry), CSRF only."""


class AccessFlagForm(OnceForm):
    """A technician's report from the gate, one button per flag."""

    flag = SelectField(
        "What happened?",
        choices=options(list(access_card.FLAGS.items())),
        validators=[DataRequired("Choose what happened.")],
    )


class TaskForm(OnceForm):
    """A promised piece of work, closed from the brief on a phone: "Done" or "Couldn't do",
    two submit buttons of one field, and a note (the reason, when it couldn't be done)."""

    outcome = StringField(
        validators=[AnyOf(["done", "missed"], message="Choose Done or Couldn't do.")],
    )
    note = TextAreaField(
        "Note (what you did, or why it couldn't be done)",
        validators=[Length(max=1000, message="Keep the note under 1,000 characters.")],
    )


def task_form(task_id: int, formdata: bool = True) -> TaskForm:
    """One form per task on a page: prefixed, so the page has no two fields with the same id."""
    if formdata:
        return TaskForm(prefix=f"t{task_id}")
    return TaskForm(prefix=f"t{task_id}", formdata=None)
