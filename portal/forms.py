"""Form parts two audiences share (the staff pages, the customer pages and the pay pages): choice
lists, the checkbox group and the "email me a new link" form."""

from __future__ import annotations

from wtforms import EmailField, SelectMultipleField, widgets
from wtforms.validators import DataRequired, Email, Length

# WTForms 3.3 wants SelectChoice (choice tuples are deprecated); types-WTForms 3.2 predates it.
from wtforms import SelectChoice  # type: ignore[attr-defined]  # isort: skip

from portal.once import OnceForm
from portal.validation import SingleLine


def options(pairs: list[tuple[object, str]]) -> list[SelectChoice]:
    return [SelectChoice(value, label) for value, label in pairs]


class CheckboxesField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class NewLinkForm(OnceForm):
    email = EmailField(
        "Your email address",
        validators=[
            DataRequired("Enter the email address we wrote to."),
            SingleLine("The email address"),
            Email("Enter a valid email address, like dana@example.com."),
            Length(max=254),
        ],
        render_kw={"autocomplete": "email"},
    )
