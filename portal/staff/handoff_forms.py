"""The handoff forms. They only collect and render; `portal.validation.parse_handoff` decides
what is valid, the same as for the API and CSV import, and its errors are mapped back here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wtforms import (
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
from wtforms.validators import Optional

from portal.forms import CheckboxesField, options
from portal.handoffs import DERIVED_KINDS, KIND_LABELS, HandoffData
from portal.models import Account, PromiseItem
from portal.money import parse_money
from portal.occasions import OCCASION_WORDS, OWNERS, unit_words
from portal.once import OnceForm
from portal.secret_codes import restored
from portal.validation import WEEKDAYS, HandoffInvalid, parse_handoff

EDITABLE_KINDS = options([(kind, label) for kind, label in KIND_LABELS.items() if kind not in DERIVED_KINDS])


class CustomPromiseForm(Form):
    # Not `label`/`name`: those would shadow FormField attributes in templates.
    title = StringField("Promise", validators=[Optional()])
    value = StringField("Details", validators=[Optional()])


class WhenForm(Form):
    """When a deliverable promise is due and who does it (portal/occasions.py). Empty: the
    kind's usual (equipment on the first visit; other promises not tracked)."""

    occasion = SelectField(
        "When",
        choices=options([("", "Usual for the kind"), *OCCASION_WORDS.items()]),
        validate_choice=False,
    )
    date = StringField("Date (by, or the first time)", render_kw={"type": "date"})
    every = StringField("Every", render_kw={"placeholder": "3 months"})
    owner = SelectField("Who", choices=options(list(OWNERS.items())), validate_choice=False)

    def payload(self) -> dict[str, str]:
        """The API's occasion fields, when a when was chosen."""
        if not self.occasion.data:
            return {}
        return {
            "occasion": self.occasion.data,
            "date": (self.date.data or "").strip(),
            "every": (self.every.data or "").strip(),
            "owner": self.owner.data or "",
        }


def when_data(item: object) -> dict[str, str]:
    """A stored promise's when, for the edit form."""
    every = getattr(item, "every", 0)
    on = getattr(item, "occasion_on", None)
    return {
        "occasion": str(getattr(item, "occasion", "")),
        "date": on.isoformat() if on else "",
        "every": unit_words(every, getattr(item, "every_unit", "")) if every else "",
        "owner": str(getattr(item, "owner", "technician")),
    }


class AccountFieldsMixin:
    """Fields shared by the new and edit forms (WTForms collects them from the class tree)."""

    customer_name = StringField("Customer name")
    customer_email = StringField("Email", render_kw={"type": "email", "inputmode": "email"})
    customer_phone = StringField("Phone", render_kw={"type": "tel"})
    service_address = StringField("Service address")
    plan = StringField("Plan", render_kw={"placeholder": "Weekly full service"})
    visits_per_week = SelectField(
        "Service days a week",
        choices=options([(str(n), "1 (weekly)" if n == 1 else str(n)) for n in range(1, 8)]),
        default="1",
        validate_choice=False,
    )
    billing_cadence = SelectField(
        "Billed",
        choices=options([("monthly", "Monthly"), ("quarterly", "Quarterly"), ("per_visit", "Per visit")]),
        default="monthly",
        validate_choice=False,  # parse_handoff refuses anything else, for every door
    )
    price = StringField("Price ($)", render_kw={"inputmode": "decimal", "placeholder": "165.00"})
    first_visit = StringField("First visit", render_kw={"type": "date"})
    salesperson_id = SelectField("Salesperson", coerce=int, validate_choice=False)
    why_chose_us = TextAreaField("Why they chose us")
    concerns = TextAreaField("Concerns or objections raised")
    contact_preference = TextAreaField("How they like to be contacted")


class HandoffForm(AccountFieldsMixin, OnceForm):
    visit_days = CheckboxesField(
        "Visit day(s)", choices=options([(d, d) for d in WEEKDAYS]), validate_choice=False
    )
    gate_code = StringField("Gate code")
    gate_lock = StringField("Lock")
    gate_instructions = StringField("Access instructions")
    safety_children = StringField("Children")
    safety_pets = StringField("Pets")
    safety_alarm = StringField("Pool alarm")
    safety_other = TextAreaField("Anything else the technician must know")
    equipment = FieldList(StringField("Equipment promise"), min_entries=2)
    # Beside each equipment promise and other promise, by position: their when and who.
    equipment_when = FieldList(FormField(WhenForm), min_entries=2)
    billing = RadioField(
        "Billing preference",
        choices=options([("Card autopay", "Card autopay"), ("Invoice", "Pay by invoice")]),
        validate_choice=False,
    )
    custom = FieldList(FormField(CustomPromiseForm), min_entries=1)
    custom_when = FieldList(FormField(WhenForm), min_entries=1)

    def add_row(self, which: str) -> None:
        """One more blank promise row, with its when."""
        rows, whens = (
            (self.custom, self.custom_when) if which == "custom" else (self.equipment, self.equipment_when)
        )
        rows.append_entry()
        while len(whens) < len(rows):
            whens.append_entry()

    def when_at(self, which: str, index: int) -> WhenForm | None:
        whens = self.custom_when if which == "custom" else self.equipment_when
        return whens[index].form if index < len(whens) else None


class PromiseRowForm(Form):
    item_id = HiddenField()
    kind = SelectField("Kind", choices=EDITABLE_KINDS, validate_choice=False)
    title = StringField("Label")
    value = StringField("Promise")
    remove = SelectField(
        "Keep", choices=options([("", "Keep"), ("remove", "Withdraw")]), validate_choice=False
    )
    when = FormField(WhenForm)


class EditHandoffForm(AccountFieldsMixin, OnceForm):
    version = HiddenField()
    rows = FieldList(FormField(PromiseRowForm), min_entries=0)


Promises = list[tuple[dict[str, Any], Field]]


def validate(
    form: AccountFieldsMixin, promises: Promises, account: Account | None = None
) -> HandoffData | None:
    """Run the shared validator; put each error next to its field. None when invalid. Editing
    `account`, the sale's notes the form showed with codes blanked take those codes back."""
    payload, fields = account_payload(form, promises)
    if account is not None:
        for name in SALE_NOTES:
            payload[name] = restored(payload[name], getattr(account, name))
    errors: dict[str, str] = {}
    try:
        payload["price_cents"] = parse_money(form.price.data or "")
    except ValueError as error:
        errors["price_cents"] = str(error)
        payload["price_cents"] = 1  # checked above; let the rest be validated too
    try:
        data = parse_handoff(payload)
    except HandoffInvalid as invalid:
        errors = {**invalid.errors, **errors}
    if errors:
        show_errors(form, errors, fields)
        return None
    return data


def account_payload(form: AccountFieldsMixin, promises: Promises) -> tuple[dict[str, Any], dict[str, Field]]:
    """The API-shaped payload, and which form field each error path belongs to."""
    fields: dict[str, Field] = {
        "customer.name": form.customer_name,
        "customer.email": form.customer_email,
        "customer.phone": form.customer_phone,
        "service_address": form.service_address,
        "plan": form.plan,
        "visits_per_week": form.visits_per_week,
        "billing_cadence": form.billing_cadence,
        "price_cents": form.price,
        "first_visit": form.first_visit,
        "why_chose_us": form.why_chose_us,
        "concerns": form.concerns,
        "contact_preference": form.contact_preference,
    }
    payload: dict[str, Any] = {
        "customer": {
            "name": form.customer_name.data,
            "email": form.customer_email.data,
            "phone": form.customer_phone.data,
        },
        "service_address": form.service_address.data,
        "plan": form.plan.data,
        "visits_per_week": form.visits_per_week.data,
        "billing_cadence": form.billing_cadence.data,
        "first_visit": form.first_visit.data,
        "why_chose_us": form.why_chose_us.data,
        "concerns": form.concerns.data,
        "contact_preference": form.contact_preference.data,
        "promises": [promise for promise, _ in promises],
    }
    for index, (promise, field) in enumerate(promises):
        for part in ("", ".value", ".kind", ".label"):
            fields[f"promises.{index}{part}"] = field
        when = promise.get(WHEN)
        if isinstance(when, WhenForm):
            for name in ("occasion", "date", "every", "owner"):
                fields[f"promises.{index}.{name}"] = when[name]
    payload["promises"] = [
        {**{k: v for k, v in promise.items() if k != WHEN}, **_when_fields(promise.get(WHEN))}
        for promise, _ in promises
    ]
    return payload, fields


SALE_NOTES = ("why_chose_us", "concerns", "contact_preference")
WHEN = "_when"  # a promise's WhenForm, carried beside its fields until the payload is built


def _when_fields(when: object) -> dict[str, str]:
    return when.payload() if isinstance(when, WhenForm) else {}


def _when_form(field: object) -> WhenForm | None:
    form = getattr(field, "form", None)
    return form if isinstance(form, WhenForm) else None


def new_handoff_promises(form: HandoffForm) -> Promises:
    promises: Promises = []
    if form.visit_days.data:
        promises.append(({"kind": "visit_day", "value": ", ".join(form.visit_days.data)}, form.visit_days))
    labelled = [
        ("gate_access", "Gate code", form.gate_code),
        ("gate_access", "Lock", form.gate_lock),
        ("gate_access", "Access instructions", form.gate_instructions),
        ("safety", "Children", form.safety_children),
        ("safety", "Pets", form.safety_pets),
        ("safety", "Pool alarm", form.safety_alarm),
        ("safety", "Safety note", form.safety_other),
    ]
    for kind, label, field in labelled:
        if field.data and field.data.strip():
            promises.append(({"kind": kind, "label": label, "value": field.data}, field))
    for index, field in enumerate(form.equipment):
        if field.data and field.data.strip():
            promises.append(
                ({"kind": "equipment", "value": field.data, WHEN: form.when_at("equipment", index)}, field)
            )
    if form.billing.data:
        promises.append(({"kind": "billing", "value": form.billing.data}, form.billing))
    for index, row in enumerate(form.custom):
        label, value = (row.title.data or "").strip(), (row.value.data or "").strip()
        if label or value:
            promise = {"kind": "custom", "label": label, "value": value, WHEN: form.when_at("custom", index)}
            promises.append((promise, row.value))
    return promises


def edit_promises(
    form: EditHandoffForm, items: Mapping[int, PromiseItem]
) -> tuple[Promises, list[int | None]]:
    """The rows as promises, and each row's item id (None for a new one). The form showed an
    item's codes blanked: a blank still there is taken back as the code it hid (`items`)."""
    promises: Promises = []
    item_ids: list[int | None] = []
    for row in form.rows:
        if row.remove.data == "remove" or not ((row.value.data or "").strip() or row.item_id.data):
            continue
        item_id = int(row.item_id.data) if (row.item_id.data or "").isdigit() else None
        item = items.get(item_id) if item_id is not None else None
        value = restored(row.value.data, item.promised_value, item.kind) if item else row.value.data
        promises.append(
            (
                {
                    "kind": row.kind.data,
                    "label": row.title.data or "",
                    "value": value,
                    WHEN: _when_form(row.when),
                },
                row.value,
            )
        )
        item_ids.append(item_id)
    return promises, item_ids


def show_errors(form: Any, errors: dict[str, str], fields: dict[str, Field]) -> None:
    for path, message in errors.items():
        field = fields.get(path)
        if field is None:
            form.form_errors.append(message)
        elif message not in field.errors:
            field.errors = [*field.errors, message] if isinstance(field.errors, list) else [message]
