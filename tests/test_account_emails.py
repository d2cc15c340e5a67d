"""The account page says where each email stands: queued for the worker, waiting to retry after
an error, failed with the error, or sent (and in file mode, the .eml it became)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from portal.models import OutboxEmail
from portal.onboarding import send_welcome
from portal.outbox import deliver_pending
from tests.smtp_server import SmtpServer, smtp_server  # noqa: F401  (the fixture)


@pytest.fixture
def office(staff, make_staff):
    staff.login(make_staff("office"))


def emails_section(client, account_id: int) -> str:
    page = client.get(f"/staff/accounts/{account_id}").get_data(as_text=True)
    return page.split("<h2>Emails</h2>", 1)[1].split("</section>", 1)[0]


def test_a_queued_email_says_it_waits_for_the_worker_and_a_sent_one_names_its_file(
    app, client, db, office, make_account
):
    account = make_account()
    send_welcome(db, account, "system")
    db.commit()
    shown = emails_section(client, account.id)
    assert "queued" in shown and "until the worker sends it" in shown and "make run" in shown

    assert deliver_pending(db).count("sent") == 1
    [eml] = Path(app.config["MAIL_OUTBOX_DIR"]).glob("*.eml")
    assert db.scalars(select(OutboxEmail)).one().file_name == eml.name
    shown = emails_section(client, account.id)
    assert 'status-sent">sent</span>' in shown and eml.name in shown
    assert "queued" not in shown


def test_a_retry_and_a_failure_show_the_error(app, client, db, office, make_account, smtp_server):
    app.config.update(MAIL_BACKEND="smtp", SMTP_HOST=smtp_server.host, SMTP_PORT=smtp_server.port)
    account = make_account()
    send_welcome(db, account, "system")
    db.commit()
    smtp_server.refuse_next(1, 451)  # a temporary refusal: retried later
    deliver_pending(db)
    shown = emails_section(client, account.id)
    assert "queued</span> for another try at" in shown and "451" in shown

    email = db.scalars(select(OutboxEmail)).one()
    email.next_attempt_at = email.created_at  # due again now
    db.commit()
    smtp_server.refuse_next(1, 550, "No such user")  # now for good
    deliver_pending(db)
    shown = emails_section(client, account.id)
    assert 'status-failed">failed</span> after 2 attempts' in shown and "550" in shown
    assert ".eml" not in shown  # SMTP mode: no file to name
