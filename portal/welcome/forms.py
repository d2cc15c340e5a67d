"""Customer forms. Step forms are built per account: one group of fields per promise."""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import Any

from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    Field,
    FieldList,
    Form,
    FormField,
    HiddenField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Email, Length, Optional, Regexp, ValidationError

from portal import access_card, consents, sms
from portal.confirmations import Answer, preference_text, preferences
from portal.forms import CheckboxesField, options
from portal.handoffs import display_value
from portal.models import CompanySettings, PromiseItem, RecordEntry
from portal.once import OnceForm
from portal.record import ItemState
from portal.validation import WEEKDAYS, SingleLine, normalise_weekdays

CARD, INVOICE = "Card autopay", "Invoice"
NO_LABELS = {
    "visit_day": "I'd like a different day",
    "start_date": "I'd like a different date",
    "gate_access": "That needs correcting",
    "safety": "That needs correcting",
}
DISPUTE_LABEL = "That's not what I was told"
COMMENT_LABELS = {
    "visit_day": "Why? (it helps us plan the route)",
    "start_date": "Why? (it helps us plan the route)",
}
# The access step's promises take a correction only; the step's one notes box (and the access
# card) carries anything else, so a phone shows no box until an answer needs one.
NO_COMMENT_KINDS = frozenset({"gate_access", "safety"})
DISPUTE_COMMENT = "What were you told?"
MAX_TEXT = 1000


def _prefix(item: PromiseItem) -> str:
    return f"i{item.id}"


WEEKDAY_CHOICES = [(day, day) for day in WEEKDAYS]
ORDINALS = ("1st", "2nd", "3rd", "4th", "5th", "6th", "7th")


def choice_count(item: PromiseItem) -> int:
    """How many ordered choices the visit-day question offers: the plan's days and two more."""
    return min(len(WEEKDAYS), item.account.visits_per_week + 2)


def _choice_fields(item: PromiseItem) -> list[str]:
    return [f"{_prefix(item)}_pref{n}" for n in range(1, choice_count(item) + 1)]


def billing_is_card(value: str) -> bool:
    return "card" in value.lower() or "autopay" in value.lower()


# What a promise's group of fields is built from, and nothing else: its id (the fields'
# names), kind, label and how many ordered day choices it offers.
_Shape = tuple[int, str, str, int]


def item_form_class(
    items: list[PromiseItem], with_note: bool = False, with_card: bool = False
) -> type[OnceForm]:
    """A form class with a group of fields per promise (and a free note on the access step).

    Classes are kept per shape (the promises' ids, kinds, labels and day-choice counts): a
    customer coming back to a step reuses theirs instead of WTForms building a class each
    request. A class holds field definitions only, never a customer's answers (those live on
    each request's form instance), and the shape holds every value the fields are made from."""
    shape = tuple(
        (item.id, item.kind, item.label, choice_count(item) if item.kind == "visit_day" else 0)
        for item in items
    )
    return _form_class(shape, with_note, with_card)


@lru_cache(maxsize=512)
def _form_class(shape: tuple[_Shape, ...], with_note: bool, with_card: bool = False) -> type[OnceForm]:
    fields: dict[str, Any] = {}
    for item_id, kind, label, choices in shape:
        p = f"i{item_id}"
        if kind == "billing":
            fields[f"{p}_choice"] = RadioField(
                "How would you like to pay?",
                validate_choice=False,
                choices=options(
                    [
                        (CARD, "Autopay by card (saved securely with Stripe)"),
                        (INVOICE, "Pay each invoice from an email link"),
                    ]
                ),
            )
            continue
        fields[f"{p}_answer"] = RadioField(
            label,
            validate_choice=False,
            choices=options([("yes", "That's right"), ("no", NO_LABELS.get(kind, DISPUTE_LABEL))]),
        )
        if kind == "visit_day":
            for number in range(choices):
                fields[f"{p}_pref{number + 1}"] = SelectField(
                    f"{ORDINALS[number]} choice",
                    validate_choice=False,
                    choices=options([("", "No preference" if number else "Choose a day"), *WEEKDAY_CHOICES]),
                )
        elif kind == "start_date":
            fields[f"{p}_date"] = StringField("A date that suits you better", render_kw={"type": "date"})
        elif kind in ("gate_access", "safety"):
            fields[f"{p}_value"] = StringField("What is correct?", validators=[SingleLine("The correction")])
        if kind not in NO_COMMENT_KINDS:
            fields[f"{p}_comment"] = TextAreaField(COMMENT_LABELS.get(kind, DISPUTE_COMMENT))
    if with_note:
        fields["technician_note"] = TextAreaField(
            "Notes for the technician (optional)", validators=[Optional(), Length(max=MAX_TEXT)]
        )
    if with_card:
        fields["card"] = FormField(CardFields, label="Your access card")
    return type("ItemAnswersForm", (OnceForm,), fields)


def prefill(items: list[PromiseItem], latest: dict[int, RecordEntry]) -> dict[str, Any]:
    """The customer's previous answers, so going back shows what they said."""
    data: dict[str, Any] = {}
    for item in items:
        entry = latest.get(item.id)
        p = _prefix(item)
        if item.kind == "billing":
            current = entry.confirmed_value if entry and entry.confirmed_value else item.promised_value
            data[f"{p}_choice"] = CARD if billing_is_card(current) else INVOICE
            continue
        if entry is None or entry.actor != "customer":
            continue
        data[f"{p}_answer"] = "yes" if entry.outcome == "confirmed" else "no"
        data[f"{p}_comment"] = entry.note
        if entry.outcome == "changed" and entry.confirmed_value:
            if item.kind == "visit_day":
                data.update(zip(_choice_fields(item), preferences(entry), strict=False))
            elif item.kind == "start_date":
                data[f"{p}_date"] = entry.confirmed_value
            else:
                data[f"{p}_value"] = entry.confirmed_value
    return data


def parse_answers(form: OnceForm, items: list[PromiseItem], today: date) -> list[Answer] | None:
    """Read one answer per promise; put a message next to each field that needs one."""
    answers: list[Answer] = []
    valid = True
    for item in items:
        answer = _parse_item(form, item, today)
        if answer is None:
            valid = False
        else:
            answers.append(answer)
    return answers if valid else None


def _error(field: Any, message: str) -> None:
    field.errors = [*field.errors, message]


def _text(form: OnceForm, name: str) -> str:
    field = getattr(form, name, None)
    return (field.data or "").strip() if field is not None and isinstance(field.data, str) else ""


def _parse_item(form: OnceForm, item: PromiseItem, today: date) -> Answer | None:
    p = _prefix(item)
    if item.kind == "billing":
        choice = getattr(form, f"{p}_choice")
        if choice.data not in (CARD, INVOICE):
            _error(choice, "Choose how you would like to pay.")
            return None
        same = billing_is_card(choice.data) == billing_is_card(item.promised_value)
        return Answer(item, "confirmed" if same else "changed", choice.data)
    answer_field = getattr(form, f"{p}_answer")
    comment = _text(form, f"{p}_comment")
    comment_field = getattr(form, f"{p}_comment", None)
    if comment_field is not None and len(comment) > MAX_TEXT:
        _error(comment_field, f"Please keep this under {MAX_TEXT} characters.")
        return None
    if answer_field.data == "yes":
        return Answer(item, "confirmed", item.promised_value, comment)
    if answer_field.data != "no":
        _error(answer_field, "Choose \u201cThat's right\u201d or tell us what is different.")
        return None
    return _parse_change(form, item, comment, comment_field, today)


def _parse_change(
    form: OnceForm, item: PromiseItem, comment: str, comment_field: Any, today: date
) -> Answer | None:
    p = _prefix(item)
    if item.kind == "visit_day":
        return _parse_preferences(form, item, comment, comment_field)
    if item.kind == "start_date":
        date_field = getattr(form, f"{p}_date")
        try:
            chosen = date.fromisoformat(date_field.data or "")
        except ValueError:
            _error(date_field, "Choose a date, e.g. 2026-12-04.")
            return None
        if chosen < today:
            _error(date_field, "Choose a date from today on.")
            return None
        if not comment:
            _error(comment_field, "Tell us briefly why, so we can plan the route.")
            return None
        return Answer(item, "changed", chosen.isoformat(), comment)
    if item.kind in ("gate_access", "safety"):
        value_field = getattr(form, f"{p}_value")
        value = _text(form, f"{p}_value")
        if not value or len(value) > MAX_TEXT:
            _error(
                value_field,
                "Tell us what is correct." if not value else f"Please keep this under {MAX_TEXT} characters.",
            )
            return None
        return Answer(item, "changed", value, comment)
    if not comment:
        _error(comment_field, "Tell us what you were told, so we can put it right.")
        return None
    return Answer(item, "disputed", None, comment)


def _parse_preferences(form: OnceForm, item: PromiseItem, comment: str, comment_field: Any) -> Answer | None:
    """The days that suit the customer, 1st choice first: a wish the office decides on, never
    a new schedule (the agreed days stay the promise until then)."""
    chosen: list[str] = []
    valid = True
    for name in _choice_fields(item):
        field = getattr(form, name)
        day = field.data.strip() if isinstance(field.data, str) else ""
        if not day:
            continue
        if day not in WEEKDAYS:
            _error(field, "Choose a day of the week from the list.")
            valid = False
        elif day in chosen:
            _error(field, f"{day} is chosen already: choose another day, or no preference.")
            valid = False
        else:
            chosen.append(day)
    if not valid:
        return None
    needed = item.account.visits_per_week
    if len(chosen) < needed:
        first = getattr(form, _choice_fields(item)[0])
        _error(
            first,
            "Choose at least one day that suits you."
            if needed == 1
            else f"Your plan has {needed} visits a week: choose at least {needed} days, in order.",
        )
        return None
    if not comment:
        _error(comment_field, "Tell us briefly why, so we can plan the route.")
        return None
    if sorted(chosen, key=WEEKDAYS.index) == (normalise_weekdays(item.promised_value) or "").split(", "):
        return Answer(item, "confirmed", item.promised_value, comment)
    return Answer(item, "changed", preference_text(chosen), comment, {"preferences": chosen})


GOAL_MAX = 1000


class WelcomeForm(OnceForm):
    """The first step: one optional question, the customer's own goal for the service."""

    goal = TextAreaField(
        "What would make this service great for you? (optional)",
        validators=[
            Optional(),
            Length(max=GOAL_MAX, message=f"Please keep this under {GOAL_MAX:,} characters."),
        ],
    )


def readiness_form_class(checklist: list[str]) -> type[OnceForm]:
    fields = {
        f"r{index}": RadioField(
            label, validate_choice=False, choices=options([("done", "Done"), ("not_yet", "Not yet")])
        )
        for index, label in enumerate(checklist)
    }
    return type("ReadinessForm", (OnceForm,), fields)


class ContactForm(OnceForm):
    channels = CheckboxesField(
        "How may we reach you?",
        validate_choice=False,
        choices=options([("email", "Email"), ("text", "Text message"), ("call", "Phone call")]),
    )
    phone = StringField(
        "Mobile or phone number",
        validators=[Optional(), Length(max=40), SingleLine("The phone number")],
        render_kw={"type": "tel", "autocomplete": "tel"},
    )
    preferred_times = StringField(
        "Best times to reach you (optional)",
        validators=[Optional(), Length(max=200), SingleLine("The times")],
    )
    # Two separate, unticked choices; their labels (the disclosures, naming the number) are
    # set by the view from portal.sms.
    sms_service = BooleanField("Service texts")
    sms_marketing = BooleanField("Marketing texts")
    # The number the disclosures named when the page was drawn: a consent is for that number.
    shown_phone = HiddenField()
    new_email = EmailField(
        "Use a different email address (optional)",
        validators=[
            Optional(),
            SingleLine("The email address"),
            Email("Enter a valid email address, like dana@example.com."),
            Length(max=254),
        ],
        render_kw={"autocomplete": "email"},
    )

    def validate_channels(self, field: CheckboxesField) -> None:
        allowed = {"email", "text", "call"}
        if not field.data or not set(field.data) <= allowed:
            raise ValidationError("Choose at least one way to reach you.")

    def extra_checks(self) -> bool:
        ok = True
        wants_phone = {"text", "call"} & set(self.channels.data or [])
        if wants_phone and not (self.phone.data or "").strip():
            _error(self.phone, "Give a number for texts or calls.")
            ok = False
        if "text" in (self.channels.data or []) and not self.sms_service.data:
            _error(self.sms_service, "Tick the box to agree to service texts, or untick Text message.")
            ok = False
        if (self.sms_service.data or self.sms_marketing.data) and not (self.phone.data or "").strip():
            _error(self.phone, "Give the mobile number the texts should go to.")
            ok = False
        elif sms.e164(self.shown_phone.data or "") != sms.e164(self.phone.data or ""):
            for consent in (self.sms_service, self.sms_marketing):
                if consent.data:
                    _error(
                        consent, "The number changed: read the consent again for the new number and tick it."
                    )
                    consent.data = False
                    ok = False
        return ok

    def label_consents(self, company: CompanySettings) -> None:
        """Each text consent's label is its disclosure, naming the number it is for."""
        phone = (self.phone.data or "").strip()
        self.shown_phone.data = phone
        self.sms_service.label.text = sms.disclosure(consents.SMS_SERVICE, company, phone)
        self.sms_marketing.label.text = sms.disclosure(consents.SMS_MARKETING, company, phone)


class SignForm(OnceForm):
    """The signing act: each term accepted, the electronic-records consent, the typed name.
    `document_sha256` carries the hash of the document the page showed (checked on signing)."""

    document_sha256 = HiddenField()
    e_records = BooleanField(
        "I have read the disclosure above on this device, I can open PDF files, and I agree to "
        "receive my agreement and other records electronically.",
        validators=[DataRequired("Tick the box to receive records electronically.")],
    )
    full_name = StringField(
        "Type your full name",
        validators=[DataRequired("Type your full name to sign."), Length(max=120), SingleLine("Your name")],
        render_kw={"autocomplete": "name"},
    )
    agree = BooleanField(
        "I confirm these details are correct and agree to the service as described.",
        validators=[DataRequired("Tick the box to agree.")],
    )

    def term_fields(self) -> list[Field]:
        return [field for field in self if field.name.startswith("term_")]


def sign_form_class(terms: list[dict[str, str]]) -> type[SignForm]:
    """The sign form for these terms: one box per term, each to be ticked."""
    fields = {
        f"term_{index}": BooleanField(
            f"I accept: {term['title']}",
            validators=[DataRequired(f"Tick the box to accept “{term['title']}”.")],
        )
        for index, term in enumerate(terms)
    }
    return type("TermsSignForm", (SignForm,), fields)


def change_form_class(states: list[ItemState]) -> type[OnceForm]:
    """What a signed customer may ask to change: each promise as agreed now (the record's
    current value, not the sale's promise when a decision or answer changed it)."""
    choices: list[tuple[object, str]] = [
        (
            str(state.item.id),
            f"{state.item.label}: {display_value(state.current_value, state.item.kind)}"[:80],
        )
        for state in states
    ]
    choices.append(("other", "Something else"))
    return type(
        "ChangeRequestForm",
        (OnceForm,),
        {
            "item": RadioField(
                "What would you like to change?", choices=options(choices), validate_choice=True
            ),
            "details": TextAreaField(
                "What should it be instead?",
                validators=[DataRequired("Tell us what you would like to change."), Length(max=MAX_TEXT)],
            ),
            "effective": DateField(
                "From which date? (optional)",
                validators=[Optional()],
                description="Leave it empty for as soon as the office agrees.",
            ),
        },
    )


# -- the access card -----------------------------------------------------------------------------

_CODE = Regexp(access_card.CODE_PATTERN, message="Use digits, letters, # or * (up to 20).")


def _short(label: str, what: str, length: int = 120, **render_kw: Any) -> StringField:
    return StringField(
        label, validators=[Optional(), Length(max=length), SingleLine(what)], render_kw=render_kw or None
    )


class GateFields(Form):
    """One gate: where it is and its code. Subforms carry no CSRF token of their own (the page's
    form does)."""

    location = _short("Which gate", "The gate")
    code = StringField(
        "Code (if it has one)",
        validators=[Optional(), Length(max=20), SingleLine("The code"), _CODE],
        render_kw={"autocomplete": "off", "spellcheck": "false"},
    )

    def validate(self, extra_validators: Any = None) -> bool:
        # Not an inline validator: Optional() ends the empty field's chain before one would run.
        valid = super().validate(extra_validators)
        if (self.code.data or "").strip() and not (self.location.data or "").strip():
            self.location.errors = [*self.location.errors, "Say which gate this code opens."]
            return False
        return valid


class DogFields(Form):
    name = _short("Dog's name", "The name", 60)
    size = SelectField(
        "Size",
        validate_choice=False,  # checked below: a form posted without the list means no size
        choices=options([("", "Choose"), *((size, size.capitalize()) for size in access_card.DOG_SIZES)]),
    )
    temperament = _short("Temperament (friendly, nervous, barks...)", "The temperament")
    secured = BooleanField("Secured on service days")

    def validate_size(self, field: SelectField) -> None:
        if (field.data or "") not in ("", *access_card.DOG_SIZES):
            raise ValidationError("Choose a size from the list.")

    def validate(self, extra_validators: Any = None) -> bool:
        valid = super().validate(extra_validators)
        described = (self.size.data or "") or (self.temperament.data or "").strip() or self.secured.data
        if described and not (self.name.data or "").strip():
            self.name.errors = [*self.name.errors, "Give the dog's name."]
            return False
        return valid


class CardFields(Form):
    """The access card's fields, inside the access step's form and My service's update form."""

    gates = FieldList(
        FormField(GateFields), min_entries=access_card.MAX_GATES, max_entries=access_card.MAX_GATES
    )
    lock_type = _short("Lock type (padlock, key box, keypad...)", "The lock type")
    alarm = TextAreaField(
        "Alarm or automation (gate motor, pool cover...)", validators=[Optional(), Length(max=MAX_TEXT)]
    )
    alarm_code = StringField(
        "Alarm code (if the technician needs one)",
        validators=[Optional(), Length(max=20), SingleLine("The alarm code"), _CODE],
        render_kw={"autocomplete": "off", "spellcheck": "false"},
    )
    dogs = FieldList(FormField(DogFields), min_entries=access_card.MAX_DOGS, max_entries=access_card.MAX_DOGS)
    children = _short("Children at home (optional)", "The note on children", 300)
    parking = _short("Where to park", "The parking note", 300)
    equipment_pad = _short("Where the equipment pad is", "The equipment pad's place", 300)
    text_before = BooleanField("Text me before the technician arrives")

    def card(self) -> access_card.Card:
        """The validated fields as a card: empty gates and dogs left out."""
        gates = tuple(
            access_card.Gate(_strip(g.location.data), _strip(g.code.data))
            for g in (entry.form for entry in self.gates)
            if _strip(g.location.data)
        )
        dogs = tuple(
            access_card.Dog(
                _strip(d.name.data), d.size.data or "", _strip(d.temperament.data), bool(d.secured.data)
            )
            for d in (entry.form for entry in self.dogs)
            if _strip(d.name.data)
        )
        return access_card.Card(
            gates=gates,
            lock_type=_strip(self.lock_type.data),
            alarm=_strip(self.alarm.data),
            alarm_code=_strip(self.alarm_code.data),
            dogs=dogs,
            children=_strip(self.children.data),
            parking=_strip(self.parking.data),
            equipment_pad=_strip(self.equipment_pad.data),
            text_before=bool(self.text_before.data),
        )


def _strip(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


class CardUpdateForm(OnceForm):
    """My service: the card as it should be, and from which day."""

    card = FormField(CardFields, label="Your access card")
    effective = DateField(
        "From which date?",
        validators=[DataRequired("Give the date this takes effect (today, or the day the code changes).")],
        description="Today, or the day a change takes effect (the code changes on 10 December, say).",
    )

    def check_effective(self, today: date) -> bool:
        chosen = self.effective.data
        if chosen is None:
            return False
        if chosen < today:
            _error(self.effective, "Choose today or a later date.")
            return False
        if chosen > date(today.year + 1, today.month, min(today.day, 28)):
            _error(self.effective, "Choose a date within the next year.")
            return False
        return True
