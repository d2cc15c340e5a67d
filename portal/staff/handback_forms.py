"""The account page's handback forms: acknowledge the handoff, ask the salesperson, answer,
cancel the account. The rules (required text, limits, once only) live in portal/handback.py;
these forms carry the text and the one-time id."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.orm import Session
from wtforms import TextAreaField

from portal import access, handback
from portal.models import Account, StaffUser
from portal.once import OnceForm


class AcknowledgeForm(OnceForm):
    ack_note = TextAreaField("Note for the record (optional)")


class QuestionForm(OnceForm):
    question = TextAreaField("Question for the salesperson")


class AnswerForm(OnceForm):
    answer = TextAreaField("Your answer")


class CancelForm(OnceForm):
    reason = TextAreaField("Why is the account cancelled?")


@dataclass
class HandbackView:
    review: handback.Review
    acknowledge: AcknowledgeForm | None
    question: QuestionForm | None
    answers: dict[int, AnswerForm]  # by question id: the ones this user may answer
    cancel: CancelForm | None


def handback_view(
    session: Session, account: Account, user: StaffUser, posted: Mapping[str, object]
) -> HandbackView:
    """What the account page offers this user; a posted form (by name) replaces its blank one."""
    review = handback.review(session, account)
    office = access.may(user, access.Action.ACKNOWLEDGE, account) and account.cancelled_at is None
    acknowledge = posted.get("acknowledge") if office and account.acknowledged_at is None else None
    question = posted.get("question") if office else None
    answers: dict[int, AnswerForm] = {}
    if access.may_answer(user, account):
        for asked in review.questions:
            if asked.answered_at is None:
                form = posted.get(f"answer-{asked.id}")
                answers[asked.id] = form if isinstance(form, AnswerForm) else AnswerForm(formdata=None)
    cancel = posted.get("cancel")
    return HandbackView(
        review=review,
        acknowledge=(
            acknowledge if isinstance(acknowledge, AcknowledgeForm) else AcknowledgeForm(formdata=None)
        )
        if office and account.acknowledged_at is None
        else None,
        question=(question if isinstance(question, QuestionForm) else QuestionForm(formdata=None))
        if office and account.salesperson_id is not None
        else None,
        answers=answers,
        cancel=(cancel if isinstance(cancel, CancelForm) else CancelForm(formdata=None))
        if access.may(user, access.Action.CANCEL, account) and account.cancelled_at is None
        else None,
    )
