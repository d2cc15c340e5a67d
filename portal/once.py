"""One-time form ids: every rendered form carries a fresh id; the first post claims it in the
same transaction as its effect, so a double click or a retry takes effect once. The id doubles
as the Stripe idempotency key where a form calls Stripe."""

from __future__ import annotations

import secrets
from typing import Any

from flask_wtf import FlaskForm
from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from wtforms import HiddenField
from wtforms.validators import DataRequired, Length, Regexp

from portal.db import utcnow
from portal.models import FormSubmission

BAD_FORM_ID = "This form's id is not valid; reload the page and try again."


class OnceForm(FlaskForm):
    form_id = HiddenField(
        validators=[
            DataRequired("This form is missing its id; reload the page and try again."),
            Length(min=16, max=64, message=BAD_FORM_ID),
            Regexp(r"^[A-Za-z0-9_-]+$", message=BAD_FORM_ID),
        ]
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        # A blank form shown beside a posted one (formdata=None) needs an id of its own too.
        if not self.is_submitted() or ("formdata" in kwargs and kwargs["formdata"] is None):
            self.form_id.data = new_form_id()

    @property
    def submitted_id(self) -> str:
        """The one-time id posted with the form; never empty once the form has validated."""
        return self.form_id.data or ""


def new_form_id() -> str:
    return secrets.token_urlsafe(18)


def _claim_statement(insert: Any) -> Any:
    return (
        insert(FormSubmission)
        .values(
            token=bindparam("token"),
            purpose=bindparam("purpose"),
            result_url="",
            created_at=bindparam("created_at", type_=FormSubmission.created_at.type),
        )
        .on_conflict_do_nothing(index_elements=[FormSubmission.token])
        .returning(FormSubmission.token)
    )


# Built once per dialect: every customer answer claims an id.
_CLAIM_SQL = {"postgresql": _claim_statement(pg_insert), "sqlite": _claim_statement(sqlite_insert)}


def claim(session: Session, form_id: str, purpose: str) -> str | None:
    """Claim the id inside the caller's transaction: the id, or None if it was used already.

    One INSERT ... ON CONFLICT DO NOTHING: a concurrent claim of the same id waits for this
    transaction and then finds the id taken (PostgreSQL), or waits for the write lock
    (SQLite), so exactly one of them gets the row."""
    statement = _CLAIM_SQL[session.get_bind().dialect.name]
    claimed: str | None = session.connection().scalar(
        statement, {"token": form_id, "purpose": purpose, "created_at": utcnow()}
    )
    return claimed


def keep_result(session: Session, form_id: str, url: str) -> None:
    """Where this submission led, for a repeat of it to be sent to (see earlier_result)."""
    session.execute(update(FormSubmission).where(FormSubmission.token == form_id).values(result_url=url))


def earlier_result(session: Session, form_id: str) -> str | None:
    """Where the first submission of this form led (after a repeat was refused)."""
    return session.scalar(select(FormSubmission.result_url).where(FormSubmission.token == form_id)) or None
