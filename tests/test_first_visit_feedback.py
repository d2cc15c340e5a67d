"""Feedback after the first visit: one email the day after it (real SMTP), answered once through
a signed single-use link without signing in; "Not quite" lands in the office inbox."""

from __future__ import annotations

import re
import threading
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import select

from portal import first_visit, follow_ups, handback, record
from portal.company import company_today
from portal.models import Account, FirstVisitFeedback, FormSubmission, OutboxEmail, RecordEntry
from portal.onboarding import send_welcome
from portal.worker import ask_feedback
from tests.conftest import count_rows, form_fields
from tests.smtp_server import SmtpServer, smtp_server  # noqa: F401  (the fixture)


@pytest.fixture
def smtp(app: Flask, smtp_server: SmtpServer) -> SmtpServer:  # noqa: F811
    app.config.update(MAIL_BACKEND="smtp", SMTP_HOST=smtp_server.host, SMTP_PORT=smtp_server.port)
    return smtp_server


def _visited(db, make_account, days_ago: int = 1, **changes) -> Account:
    """An invited account whose first visit was `days_ago` days ago (company time)."""
    account = make_account(first_visit=company_today() - timedelta(days=days_ago), **changes)
    send_welcome(db, account, "system")
    db.commit()
    return account


def _links(text: str) -> dict[str, str]:
    """The feedback email's two links, as paths, by answer."""
    found = re.findall(r"http://localhost(/feedback/[^\s?\"]+\?answer=(yes|not_quite))", text)
    return {answer: path for path, answer in found}


def _ask(db, account: Account) -> dict[str, str]:
    first_visit.ask(db, account)
    db.commit()
    email = db.scalars(select(OutboxEmail).order_by(OutboxEmail.id.desc())).first()
    return _links(email.text_body)


def test_the_email_goes_once_the_day_after_the_first_visit_even_when_the_worker_runs_twice(
    app, db, runner, make_account, smtp
):
    today_visit = make_account(first_visit=company_today())
    send_welcome(db, today_visit, "system")
    account = _visited(db, make_account)
    db.commit()
    with app.app_context():
        assert ask_feedback(threading.Event()).summary == "queued 1 first-visit feedback email(s)"
    with app.app_context():
        assert ask_feedback(threading.Event()).summary == "queued 0 first-visit feedback email(s)"
    assert (
        runner.invoke(args=["send-feedback-requests"])
        .output.strip()
        .endswith("Queued 0 first-visit feedback email(s).")
    )
    assert runner.invoke(args=["outbox", "send"]).exit_code == 0

    feedback = [m for m in smtp.messages if "first visit match" in m["Subject"]]
    assert len(feedback) == 1 and feedback[0]["To"] == "dana@example.com"
    text = feedback[0].get_body(("plain",)).get_content()
    html = feedback[0].get_body(("html",)).get_content()
    assert "Did your first visit match what we agreed?" in text and "Not quite" in html
    paths = _links(text)
    assert set(paths) == {"yes", "not_quite"}
    assert "4412" not in text and "4412" not in html  # no gate code travels by email
    db.expire_all()
    [row] = db.scalars(select(FirstVisitFeedback)).all()
    assert row.account_id == account.id and row.answered_at is None
    assert [e.event for e in record.entries_for(db, account.id)].count("first_visit_feedback_sent") == 1
    # The visit today gets its email tomorrow, not now.
    assert (
        db.scalars(select(FirstVisitFeedback).where(FirstVisitFeedback.account_id == today_visit.id)).first()
        is None
    )


def test_the_email_goes_the_next_day_and_never_again_later(db, make_account):
    account = make_account(first_visit=company_today())
    send_welcome(db, account, "system")
    db.commit()
    noon = datetime.combine(company_today(), time(12, 0), tzinfo=ZoneInfo("America/Phoenix"))
    assert first_visit.send_due(db, now=noon) == []
    assert first_visit.send_due(db, now=noon + timedelta(days=1)) == [account.id]
    assert first_visit.send_due(db, now=noon + timedelta(days=2)) == []
    assert count_rows(db, FirstVisitFeedback) == 1


def test_no_email_for_a_cancelled_or_draft_account_or_a_visit_long_past(db, make_account, make_staff):
    cancelled = _visited(db, make_account)
    handback.cancel(db, cancelled, make_staff("office"), "Moved away")
    make_account(first_visit=company_today() - timedelta(days=1))  # draft: never invited
    _visited(db, make_account, days_ago=first_visit.LATEST_DAYS_AFTER + 1)
    db.commit()
    assert first_visit.send_due(db) == []


def test_two_workers_at_once_send_one_email(app, db, make_account):
    from tests.conftest import run_at_once

    account = _visited(db, make_account)
    db.commit()

    def work() -> list[int]:
        from portal.db import get_db

        return first_visit.send_due(get_db())

    results = run_at_once(app, 2, work)
    assert sorted(len(r) for r in results) == [0, 1]
    assert count_rows(db, FirstVisitFeedback) == 1
    events = [e.event for e in record.entries_for(db, account.id)]
    assert events.count("first_visit_feedback_sent") == 1


def test_the_link_opens_without_signing_in_with_the_choice_chosen_and_a_get_changes_nothing(
    client, db, make_account
):
    account = _visited(db, make_account)
    paths = _ask(db, account)
    before = count_rows(db, RecordEntry)
    for answer, path in paths.items():
        page = client.get(path)
        assert page.status_code == 200
        body = page.get_data(as_text=True)
        assert "Did your first visit match what we agreed?" in body and 'name="comment"' in body
        assert re.search(rf'<input checked[^>]*value="{answer}"', body), answer
        assert page.headers["Referrer-Policy"] in {"no-referrer", "same-origin"}
    assert count_rows(db, RecordEntry) == before
    db.expire_all()
    assert db.get(FirstVisitFeedback, 1).answered_at is None


def test_yes_is_recorded_once_and_a_second_use_is_refused_with_nothing_changed(client, db, make_account):
    account = _visited(db, make_account)
    paths = _ask(db, account)
    page = client.get(paths["yes"]).get_data(as_text=True)
    response = client.post(paths["yes"], data={**form_fields(page), "answer": "yes", "comment": "Great job"})
    assert response.status_code == 200 and "Thank you" in response.get_data(as_text=True)
    db.expire_all()
    [row] = db.scalars(select(FirstVisitFeedback)).all()
    assert row.answer == "yes" and row.comment == "Great job" and row.answered_at is not None
    [entry] = [e for e in record.entries_for(db, account.id) if e.event == "first_visit_feedback"]
    assert entry.actor == "customer" and entry.confirmed_value == "Yes" and entry.note == "Great job"
    assert follow_ups.open_for(db, account) == []

    before = count_rows(db, RecordEntry)
    for path in paths.values():
        again = client.get(path)
        assert again.status_code == 409 and "You have answered already" in again.get_data(as_text=True)
    fresh = client.post(
        paths["not_quite"],
        data={"form_id": "a-fresh-form-id-0123456789", "answer": "not_quite", "comment": "changed mind"},
    )
    assert fresh.status_code == 409 and "nothing was changed" in fresh.get_data(as_text=True)
    db.expire_all()
    assert count_rows(db, RecordEntry) == before
    row = db.get(FirstVisitFeedback, row.id)
    assert row.answer == "yes" and row.comment == "Great job"
    assert follow_ups.open_for(db, account) == []


def test_not_quite_lands_in_the_office_inbox(client, db, staff, make_staff, make_account):
    account = _visited(db, make_account)
    paths = _ask(db, account)
    page = client.get(paths["not_quite"]).get_data(as_text=True)
    comment = "The gate was left <open>"
    response = client.post(
        paths["not_quite"], data={**form_fields(page), "answer": "not_quite", "comment": comment}
    )
    assert response.status_code == 200 and "The office has your answer" in response.get_data(as_text=True)
    db.expire_all()
    [raised] = follow_ups.open_for(db, db.get(Account, account.id))
    assert raised.kind == "first_visit_feedback" and raised.detail == comment
    assert "first_visit_feedback" in follow_ups.KIND_WORDS
    staff.login(make_staff("office"))
    inbox = client.get("/staff/differences").get_data(as_text=True)
    assert "Dana Reyes" in inbox and follow_ups.KIND_WORDS["first_visit_feedback"] in inbox


def test_bad_answers_and_over_long_comments_are_refused_with_the_text_kept_and_nothing_changed(
    client, db, make_account
):
    account = _visited(db, make_account)
    paths = _ask(db, account)
    page = client.get(paths["yes"]).get_data(as_text=True)
    before = count_rows(db, RecordEntry)
    long = "z" * (first_visit.COMMENT_MAX + 1)
    for data, message in (
        ({"answer": "maybe"}, "Not a valid choice"),
        ({"comment": "no choice made"}, "Choose Yes or Not quite"),
        ({"answer": "yes", "comment": long}, "keep the comment under 1,000 characters"),
    ):
        response = client.post(paths["yes"], data={**form_fields(page), **data})
        body = response.get_data(as_text=True)
        assert response.status_code == 400 and message in body, data
        assert data.get("comment", "") in body
    db.expire_all()
    assert count_rows(db, RecordEntry) == before
    assert db.scalars(select(FirstVisitFeedback)).one().answered_at is None
    assert count_rows(db, FormSubmission) == 0


def test_tampered_other_purpose_and_unknown_links_are_refused_alike(app, client, db, make_account):
    from portal import links

    account = _visited(db, make_account)
    paths = _ask(db, account)
    good = paths["yes"].split("?")[0]
    token = good.rsplit("/", 1)[1]
    with app.test_request_context():
        welcome_style = links.serializer("welcome").dumps({"a": account.id, "n": "whatever"})
        unknown = links.serializer(first_visit.PURPOSE).dumps({"a": account.id + 99, "n": "whatever"})
        wrong_nonce = links.serializer(first_visit.PURPOSE).dumps({"a": account.id, "n": "not-the-nonce"})
    bodies = set()
    for bad in (token[:-3] + "xyz", welcome_style, unknown, wrong_nonce):
        for method in (client.get, client.post):
            response = method(
                f"/feedback/{bad}", data={"answer": "yes", "form_id": "a-fresh-form-id-0123456789"}
            )
            assert response.status_code == 400
            bodies.add(response.get_data(as_text=True))
    assert len(bodies) == 1 and "could not open this feedback link" in bodies.pop()
    db.expire_all()
    assert db.scalars(select(FirstVisitFeedback)).one().answered_at is None


def test_an_expired_link_is_refused(app, client, db, make_account, monkeypatch):
    account = _visited(db, make_account)
    paths = _ask(db, account)
    later = datetime.now(timezone.utc) + timedelta(days=31)
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: later.timestamp())
    assert client.get(paths["yes"]).status_code == 400


@pytest.mark.csrf
def test_the_answer_needs_the_csrf_token(client, db, make_account):
    account = _visited(db, make_account)
    paths = _ask(db, account)
    response = client.post(paths["yes"], data={"answer": "yes", "form_id": "a-fresh-form-id-0123456789"})
    assert response.status_code == 400
    db.expire_all()
    assert db.scalars(select(FirstVisitFeedback)).one().answered_at is None
