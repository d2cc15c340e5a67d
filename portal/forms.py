"""Form parts two audiences share (the staff pages, the customer pages and the pay pages): choice
lists, the checkbox group, the "email me a new link" form and the photo forms."""

from __future__ import annotations

from typing import Any

from flask_wtf.file import FileField
from wtforms import EmailField, SelectMultipleField, StringField, ValidationError, widgets
from wtforms.validators import DataRequired, Email, Length

# WTForms 3.3 wants SelectChoice (choice tuples are deprecated); types-WTForms 3.2 predates it.
from wtforms import SelectChoice  # type: ignore[attr-defined]  # isort: skip

from portal import photos
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


class PhotoForm(OnceForm):
    """One photo and its caption: the customer's (onboarding, My service) and staff's alike.
    `cleaned` holds the verified, re-encoded photo once the form validates; nothing is stored
    before then."""

    photo = FileField(
        "Photo",
        # `capture`: a phone offers its camera first. No JavaScript: a plain multipart POST.
        render_kw={"accept": "image/*", "capture": "environment"},
    )
    caption = StringField(
        "Caption",
        validators=[
            DataRequired("Say what the photo shows, like “Side gate, latch on the left”."),
            SingleLine("The caption"),
            Length(
                max=photos.CAPTION_MAX, message=f"Keep the caption under {photos.CAPTION_MAX} characters."
            ),
        ],
        render_kw={"maxlength": photos.CAPTION_MAX, "autocomplete": "off"},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cleaned: photos.Cleaned | None = None

    def validate_photo(self, field: FileField) -> None:
        upload = field.data
        if not upload or not getattr(upload, "filename", None):
            raise ValidationError("Choose a photo to add (JPEG, PNG, WebP or HEIC, up to 10 MB).")
        try:
            # One byte more than allowed is enough to tell the file is too large.
            self.cleaned = photos.clean(upload.stream.read(photos.MAX_BYTES + 1))
        except photos.PhotoProblem as problem:
            raise ValidationError(str(problem)) from None


class RemovePhotoForm(OnceForm):
    reason = StringField(
        "Why remove it",
        validators=[
            DataRequired("Say why, for the service record (like “not this house”)."),
            SingleLine("The reason"),
            Length(max=photos.CAPTION_MAX, message=f"Keep it under {photos.CAPTION_MAX} characters."),
        ],
    )
