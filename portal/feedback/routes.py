"""The feedback page. The link itself authenticates (signed, its nonce's hash on the feedback
row) and is used up by the answer; a GET only shows the form (email scanners follow links),
the page's submit button (a POST with CSRF and a one-time form id) records the answer."""

from __future__ import annotations

from flask import render_template, request
from wtforms import RadioField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional

from portal import first_visit, once
from portal.db import get_db, unit_of_work
from portal.feedback import bp
from portal.forms import options
from portal.links import LinkStatus
from portal.models import FirstVisitFeedback

PROBLEM = "feedback/link_problem.html"


class FeedbackForm(once.OnceForm):
    answer = RadioField(
        "Did your first visit match what we agreed?",
        choices=options(list(first_visit.ANSWERS.items())),
        validators=[InputRequired("Choose Yes or Not quite.")],
    )
    comment = TextAreaField(
        "Anything you would like to tell us? (optional)",
        validators=[
            Optional(),
            Length(
                max=first_visit.COMMENT_MAX,
                message=f"Please keep the comment under {first_visit.COMMENT_MAX:,} characters.",
            ),
        ],
    )


@bp.route("/<token>", methods=["GET", "POST"])
def question(token: str) -> str | tuple[str, int]:
    found = first_visit.check(get_db(), token)
    if found.status is not LinkStatus.OK or found.feedback is None:
        # Expired, tampered, another purpose, unknown account: one answer for all.
        return render_template(PROBLEM), 400
    feedback = found.feedback
    if feedback.answered_at is not None:
        return render_template("feedback/answered.html", feedback=feedback, again=True), 409
    if request.method == "GET":
        chosen = request.args.get("answer")
        form = FeedbackForm(data={"answer": chosen if chosen in first_visit.ANSWERS else None})
        return render_template("feedback/question.html", form=form, account=feedback.account)
    form = FeedbackForm()
    if form.validate_on_submit():
        try:
            with unit_of_work() as session:
                if once.claim(session, form.submitted_id, "first-visit-feedback") is not None:
                    # Read again inside the write: a second tab may have answered meanwhile.
                    session.refresh(feedback, with_for_update={"of": FirstVisitFeedback})
                    first_visit.answer(session, feedback, form.answer.data or "", form.comment.data or "")
        except first_visit.AlreadyAnswered:
            get_db().refresh(feedback)
            return render_template("feedback/answered.html", feedback=feedback, again=True), 409
        except first_visit.FeedbackError as error:
            form.comment.errors = [*form.comment.errors, str(error)]
        else:
            get_db().refresh(feedback)
            return render_template("feedback/answered.html", feedback=feedback, again=False)
    return render_template("feedback/question.html", form=form, account=feedback.account), 400
