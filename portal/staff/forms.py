from __future__ import annotations

from babel.numbers import list_currencies
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, HiddenField, PasswordField, StringField, TextAreaField
from portal.company import checklist_lines
from wtforms.validators import DataRequired, Email, Length, Optional, Regexp, ValidationError


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
    name = StringField("Company name", validators=[DataRequired("Enter the company name."), Length(max=120)])
    phone = StringField("Phone", validators=[Optional(), Length(max=40)])
    email = EmailField("Customer-facing email", validators=[Optional(), Email("Enter a valid email address."), Length(max=254)])
    office_email = EmailField("Office email (gets difference alerts)",
                              validators=[Optional(), Email("Enter a valid email address."), Length(max=254)])
    logo_url = StringField("Logo path on this site", validators=[
        Optional(), Length(max=500),
        Regexp(r"^/[^/\\].*$", message="Use a path on this site, e.g. /static/logo.png (no outside images)."),
    ])
    brand_color = StringField("Brand colour", validators=[
        DataRequired("Enter a colour like #0b5cab."), Regexp(HEX_COLOUR, message="Use a colour like #0b5cab."),
    ])
    currency = StringField("Currency", validators=[DataRequired("Enter a currency code like USD."), Length(min=3, max=3)])
    readiness_checklist = TextAreaField("Before-the-first-visit checklist (one item per line)",
                                        validators=[Length(max=2000)])

    def validate_currency(self, field: StringField) -> None:
        code = (field.data or "").upper()
        if code not in list_currencies():
            raise ValidationError("Enter a known currency code like USD or EUR.")
        field.data = code

    def validate_readiness_checklist(self, field: TextAreaField) -> None:
        lines = checklist_lines(field.data or "")
        if len(lines) > 12:
            raise ValidationError("Keep the checklist to 12 items or fewer.")
        if any(len(line) > 120 for line in lines):
            raise ValidationError("Keep each checklist item under 120 characters.")

