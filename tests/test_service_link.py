"""Staff can replace a signed customer's link: the "your service" email (not the welcome text,
no gate codes), and the old link and the sessions it started stop working."""

from __future__ import annotations

from sqlalchemy import select

from portal import record
from portal.models import Account, OutboxEmail, RecordEntry
from tests.conftest import PASSWORD, count_rows, form_fields
from tests.test_welcome import complete, invited, open_link  # noqa: F401 (fixture)

GATE_CODE = "4412"  # in the demo handoff's gate promise


def _sign(client, path):  # type: ignore[no-untyped-def]
    open_link(client, path)
    assert complete(client) == "/welcome/thanks"
    assert client.get("/welcome/service").status_code == 200


def _staff_browser(app, db, staff_user):  # type: ignore[no-untyped-def]
    """The office, in a browser of its own beside the customer's."""
    browser = app.test_client()
    browser.test_session = db
    fields = form_fields(browser.get("/staff/login").get_data(as_text=True))
    browser.post("/staff/login", data={**fields, "email": staff_user.email, "password": PASSWORD})
    return browser


def _send_from_account_page(browser, account_id):  # type: ignore[no-untyped-def]
    page = browser.get(f"/staff/accounts/{account_id}").get_data(as_text=True)
    assert "Send a new service link" in page
    form = page.split(f'action="/staff/accounts/{account_id}/send"', 1)[1]
    return browser.post(f"/staff/accounts/{account_id}/send", data=form_fields(form))


def test_a_new_service_link_replaces_the_old_link_and_ends_its_sessions(app, client, db, invited, make_staff):
    account, old_path = invited
    _sign(client, old_path)
    office = _staff_browser(app, db, make_staff("office"))
    emails_before = count_rows(db, OutboxEmail)

    response = _send_from_account_page(office, account.id)
    assert response.status_code == 302
    page = office.get(response.headers["Location"]).get_data(as_text=True)
    assert "New link to their service page sent" in page

    # The customer's open session ends, and the old link gets the "ask for a new link" page.
    ended = client.get("/welcome/service")
    assert ended.status_code == 302 and ended.headers["Location"] == "/welcome/session-ended"
    refused = client.get(old_path)
    assert refused.status_code == 400 and "Email me a new link" in refused.get_data(as_text=True)

    email = db.scalars(select(OutboxEmail).order_by(OutboxEmail.id.desc())).first()
    assert count_rows(db, OutboxEmail) == emails_before + 1
    assert email.kind == "service_link" and email.to_address == account.customer.email
    for body in (email.text_body, email.html_body):
        assert "here is your new link to your service page" in body.lower()
        assert "Confirm my service" not in body and "check what we agreed" not in body
        assert GATE_CODE not in body and "/welcome/t/" in body

    # The new link opens the signed customer's service page.
    new_path = "/welcome/t/" + email.text_body.split("/welcome/t/")[1].split()[0]
    assert client.get(new_path).headers["Location"] == "/welcome/"
    assert client.get("/welcome/").headers["Location"] == "/welcome/service"
    assert client.get("/welcome/service").status_code == 200
    events = [entry.event for entry in record.entries_for(db, account.id)]
    assert events.index("signed") < events.index("link_resent")


def test_the_new_link_button_posted_twice_sends_one_email(app, client, db, invited, make_staff):
    account, path = invited
    _sign(client, path)
    office = _staff_browser(app, db, make_staff("office"))
    page = office.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    fields = form_fields(page.split(f'action="/staff/accounts/{account.id}/send"', 1)[1])
    before = (count_rows(db, OutboxEmail), count_rows(db, RecordEntry))
    for _ in range(2):
        assert office.post(f"/staff/accounts/{account.id}/send", data=fields).status_code == 302
    assert (count_rows(db, OutboxEmail), count_rows(db, RecordEntry)) == (before[0] + 1, before[1] + 1)


def test_sales_cannot_send_a_new_link_for_another_sellers_customer(app, client, db, invited, make_staff):
    account, path = invited
    _sign(client, path)
    other_seller = _staff_browser(app, db, make_staff("sales"))
    before = count_rows(db, OutboxEmail)
    assert other_seller.post(f"/staff/accounts/{account.id}/send").status_code == 404
    assert count_rows(db, OutboxEmail) == before
    assert client.get("/welcome/service").status_code == 200  # the customer's session is untouched


def test_a_signed_customer_asking_for_a_new_link_gets_the_service_text(client, db, invited):
    account, path = invited
    _sign(client, path)
    fields = form_fields(client.get("/welcome/session-ended").get_data(as_text=True))
    assert (
        client.post("/welcome/new-link", data={**fields, "email": account.customer.email}).status_code == 200
    )
    email = db.scalars(select(OutboxEmail).order_by(OutboxEmail.id.desc())).first()
    assert email.kind == "service_link" and GATE_CODE not in email.text_body
    db.expire_all()
    assert db.get(Account, account.id).signed_at is not None
