"""Service acknowledges the handoff, asks sales and gets an answer, the dashboard's list of
handoffs not acknowledged before a near first visit, the customer's own goal, cancelling."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import handback, record
from portal.company import company_today
from portal.models import Account, HandoffQuestion, RecordEntry
from portal.onboarding import send_welcome
from tests.conftest import count_rows, form_fields
from tests.test_csv_export import _dispute
from tests.test_welcome import open_link, token_of


def _fresh(db, account_id: int) -> Account:
    db.expire_all()
    return db.get(Account, account_id)


def _events(db, account_id: int) -> list[RecordEntry]:
    return record.entries_for(db, account_id)


def _form_of(page: str, action: str) -> dict[str, str]:
    """The hidden fields of the form posting to `action` on the page."""
    start = page.index(f'action="{action}"')
    return form_fields(page[start : page.index("</form>", start)])


# --- acknowledgment -------------------------------------------------------------------------


def test_the_office_acknowledges_a_handoff_once_and_it_is_in_the_record(
    client, db, staff, make_staff, make_account
):
    office = make_staff("office", name="Olive Office")
    account = make_account()
    staff.login(office)
    path = f"/staff/accounts/{account.id}"
    page = client.get(path).get_data(as_text=True)
    assert "not acknowledged" in page and "Acknowledge the handoff" in page
    action = f"{path}/acknowledge"
    hidden = _form_of(page, action)
    response = client.post(action, data={**hidden, "ack_note": "Read it; gate code noted."})
    assert response.status_code == 302
    found = _fresh(db, account.id)
    assert found.acknowledged_at is not None
    [entry] = [e for e in _events(db, account.id) if e.event == "handoff_acknowledged"]
    assert entry.actor == f"staff:{office.id}" and entry.note == "Read it; gate code noted."
    page = client.get(path).get_data(as_text=True)
    assert "acknowledged</span> by Olive Office" in page and "Acknowledge the handoff" not in page

    # The same form again (a double click) and a fresh one: still one acknowledgment.
    before = count_rows(db, RecordEntry)
    assert client.post(action, data={**hidden, "ack_note": "again"}).status_code == 302
    again = client.post(action, data={"form_id": "a-fresh-form-id-0123456789", "ack_note": "again"})
    assert again.status_code == 302
    assert "acknowledged already" in client.get(again.headers["Location"]).get_data(as_text=True)
    assert count_rows(db, RecordEntry) == before
    assert _fresh(db, account.id).acknowledged_at == found.acknowledged_at


@pytest.mark.parametrize("role", ["sales", "technician"])
def test_only_office_and_admin_acknowledge_or_ask(client, db, staff, make_staff, make_account, role):
    user = make_staff(role)
    account = make_account(user if role == "sales" else None)
    staff.login(user)
    if role == "sales":
        assert "Acknowledge the handoff" not in client.get(f"/staff/accounts/{account.id}").get_data(
            as_text=True
        )
    before = count_rows(db, RecordEntry)
    form = {"form_id": "a-fresh-form-id-0123456789"}
    assert client.post(f"/staff/accounts/{account.id}/acknowledge", data=form).status_code == 403
    assert (
        client.post(f"/staff/accounts/{account.id}/questions", data={**form, "question": "?"}).status_code
        == 403
    )
    assert count_rows(db, RecordEntry) == before and count_rows(db, HandoffQuestion) == 0
    assert _fresh(db, account.id).acknowledged_at is None


def test_another_salespersons_account_is_a_404_for_answering(client, db, staff, make_staff, make_account):
    office, seller, other = make_staff("office"), make_staff("sales"), make_staff("sales")
    account = make_account(seller)
    asked = handback.ask(db, account, office, "Which gate?")
    db.commit()
    staff.login(other)
    response = client.post(
        f"/staff/accounts/{account.id}/questions/{asked.id}/answer",
        data={"form_id": "a-fresh-form-id-0123456789", "answer": "The side one"},
    )
    assert response.status_code == 404
    db.expire_all()
    assert db.get(HandoffQuestion, asked.id).answered_at is None


def test_a_question_to_sales_waits_on_their_dashboard_and_is_answered_on_the_account_page(
    client, db, staff, make_staff, make_account
):
    office = make_staff("office", name="Olive Office")
    seller = make_staff("sales", name="Sam Seller")
    account = make_account(seller)
    path = f"/staff/accounts/{account.id}"

    staff.login(office)
    page = client.get(path).get_data(as_text=True)
    hidden = _form_of(page, f"{path}/questions")
    # No question: refused, the page again with the message, nothing stored.
    refused = client.post(f"{path}/questions", data={**hidden, "question": "  "})
    assert refused.status_code == 400 and "Write the question" in refused.get_data(as_text=True)
    assert count_rows(db, HandoffQuestion) == 0
    long = "x" * (handback.QUESTION_MAX + 1)
    refused = client.post(f"{path}/questions", data={**hidden, "question": long})
    assert refused.status_code == 400 and long in refused.get_data(as_text=True)  # nothing lost
    assert count_rows(db, HandoffQuestion) == 0
    asked = client.post(f"{path}/questions", data={**hidden, "question": "Is the dog friendly?"})
    assert asked.status_code == 302
    [question] = db.scalars(select(HandoffQuestion)).all()
    assert question.asked_by_id == office.id and question.answered_at is None
    [entry] = [e for e in _events(db, account.id) if e.event == "handoff_question"]
    assert entry.note == "Is the dog friendly?" and entry.actor == f"staff:{office.id}"
    staff.logout()

    staff.login(seller)
    dashboard = client.get("/staff/").get_data(as_text=True)
    assert "Questions waiting for you" in dashboard and "Is the dog friendly?" in dashboard
    page = client.get(path).get_data(as_text=True)
    action = f"{path}/questions/{question.id}/answer"
    hidden = _form_of(page, action)
    assert client.post(action, data={**hidden, "answer": ""}).status_code == 400
    db.expire_all()
    assert db.get(HandoffQuestion, question.id).answered_at is None
    assert client.post(action, data={**hidden, "answer": "Yes, Biscuit is friendly."}).status_code == 302
    db.expire_all()
    answered = db.get(HandoffQuestion, question.id)
    assert answered.answer == "Yes, Biscuit is friendly." and answered.answered_by_id == seller.id
    [entry] = [e for e in _events(db, account.id) if e.event == "handoff_answer"]
    assert entry.actor == f"staff:{seller.id}" and entry.details["question_id"] == question.id
    assert "Questions waiting for you" not in client.get("/staff/").get_data(as_text=True)
    staff.logout()

    # The office reads the answer on the account page; it cannot answer for sales.
    staff.login(office)
    page = client.get(path).get_data(as_text=True)
    assert "Yes, Biscuit is friendly." in page and "Sam Seller</strong> answered" in page
    second = handback.ask(db, _fresh(db, account.id), office, "Which day suits?")
    db.commit()
    response = client.post(
        f"{path}/questions/{second.id}/answer",
        data={"form_id": "a-fresh-form-id-0123456789", "answer": "Fri"},
    )
    assert response.status_code == 403
    db.expire_all()
    assert db.get(HandoffQuestion, second.id).answered_at is None


def test_the_dashboard_lists_unacknowledged_handoffs_with_a_first_visit_within_3_days_not_4(
    client, db, staff, make_staff, make_account
):
    today = company_today()
    due = {n: make_account(first_visit=today + timedelta(days=n)) for n in (0, 3, 4)}
    for n, account in due.items():
        account.customer.name = f"Customer in {n} days"
    done = make_account(first_visit=today + timedelta(days=1))
    done.customer.name = "Already acknowledged"
    office = make_staff("office")
    handback.acknowledge(db, done, office)
    cancelled = make_account(first_visit=today + timedelta(days=2))
    cancelled.customer.name = "Cancelled customer"
    handback.cancel(db, cancelled, office, "Moved away")
    db.commit()

    soon = handback.unacknowledged_soon(db, office, today)
    assert [a.id for a in soon.accounts] == [due[0].id, due[3].id] and soon.count == 2

    staff.login(office)
    page = client.get("/staff/").get_data(as_text=True)
    listed = page.split("Not acknowledged, first visit within 3 days", 1)[1].split("</table>", 1)[0]
    assert "Customer in 0 days" in listed and "Customer in 3 days" in listed
    assert "Customer in 4 days" not in listed
    assert "Already acknowledged" not in listed and "Cancelled customer" not in listed
    assert "(2)" in page.split("Not acknowledged", 1)[1].split("</h2>", 1)[0]


def test_the_dashboard_list_is_scoped_and_its_queries_do_not_grow(
    client, db, staff, make_staff, make_account, app
):
    from sqlalchemy import event

    today = company_today()
    office = make_staff("office")

    def statements() -> int:
        seen: list[str] = []
        engine = app.extensions["portal.engine"]
        listener = lambda *args: seen.append(args[2])  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            assert client.get("/staff/").status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        return len(seen)

    staff.login(office)
    make_account(first_visit=today + timedelta(days=1))
    db.commit()
    few = statements()
    for _ in range(6):
        make_account(first_visit=today + timedelta(days=2))
    db.commit()
    assert statements() == few


# --- the customer's goal ----------------------------------------------------------------------


@pytest.fixture
def invited(db, make_account):
    account = make_account()
    sent = send_welcome(db, account, "system")
    db.commit()
    return account, "/welcome/t/" + token_of(sent.url)


def test_the_customers_goal_is_saved_recorded_and_shown_on_the_brief_and_account_page(
    client, db, invited, staff, make_staff
):
    account, path = invited
    open_link(client, path)
    page = client.get("/welcome/step/welcome").get_data(as_text=True)
    assert "What would make this service great for you?" in page
    goal = "A clean pool for <b>the kids'</b> summer parties"
    response = client.post("/welcome/step/welcome", data={**form_fields(page), "goal": goal})
    assert response.status_code == 302
    assert _fresh(db, account.id).customer_goal == goal
    [entry] = [e for e in _events(db, account.id) if e.event == "customer_goal"]
    assert entry.confirmed_value == goal and entry.actor == "customer"
    # Shown again, as text, when the customer comes back to the step.
    assert "&lt;b&gt;the kids" in client.get("/welcome/step/welcome").get_data(as_text=True)

    staff.login(make_staff("technician"))
    brief = client.get(f"/staff/accounts/{account.id}/brief").get_data(as_text=True)
    assert "Their goal" in brief and "&lt;b&gt;the kids&#39;&lt;/b&gt; summer parties" in brief
    assert "Previous company missed two visits" in brief  # beside sales' "why us"
    staff.logout()
    staff.login(make_staff("office"))
    page = client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    assert "The customer's goal" in page and "&lt;b&gt;the kids&#39;&lt;/b&gt; summer parties" in page
    assert page.index("The customer's goal") < page.index("Why they chose us")


def test_an_over_long_goal_is_refused_with_the_text_kept_and_nothing_changed(client, db, invited):
    account, path = invited
    open_link(client, path)
    page = client.get("/welcome/step/welcome").get_data(as_text=True)
    before = count_rows(db, RecordEntry)
    long = "y" * (handback.GOAL_MAX + 1)
    response = client.post("/welcome/step/welcome", data={**form_fields(page), "goal": long})
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "keep this under 1,000 characters" in body and long in body
    assert count_rows(db, RecordEntry) == before
    assert _fresh(db, account.id).customer_goal == ""


def test_the_goal_is_optional_and_an_unchanged_goal_is_not_recorded_twice(client, db, invited):
    account, path = invited
    open_link(client, path)
    page = client.get("/welcome/step/welcome").get_data(as_text=True)
    assert client.post("/welcome/step/welcome", data=form_fields(page)).status_code == 302
    assert not [e for e in _events(db, account.id) if e.event == "customer_goal"]
    for _ in range(2):
        page = client.get("/welcome/step/welcome").get_data(as_text=True)
        client.post("/welcome/step/welcome", data={**form_fields(page), "goal": "Green never again"})
    assert len([e for e in _events(db, account.id) if e.event == "customer_goal"]) == 1


# --- cancelling -----------------------------------------------------------------------------


def test_cancel_needs_a_reason_then_the_account_leaves_the_day_list_and_the_inbox(
    client, db, staff, make_staff, make_account
):
    today = company_today()
    office = make_staff("office")
    account = make_account(first_visit=today + timedelta(days=1))
    send_welcome(db, account, "system")
    db.commit()
    _dispute(db, account, "Never promised")  # a difference, so the inbox lists the account
    staff.login(office)
    path = f"/staff/accounts/{account.id}"
    day = f"/staff/day?date={(today + timedelta(days=1)).isoformat()}"
    assert "Dana Reyes" in client.get(day).get_data(as_text=True)
    assert "Dana Reyes" in client.get("/staff/differences").get_data(as_text=True)

    hidden = _form_of(client.get(path).get_data(as_text=True), f"{path}/cancel")
    before = count_rows(db, RecordEntry)
    refused = client.post(f"{path}/cancel", data={**hidden, "reason": " "})
    assert refused.status_code == 400 and "Say why the account is cancelled" in refused.get_data(as_text=True)
    assert count_rows(db, RecordEntry) == before and _fresh(db, account.id).cancelled_at is None

    assert client.post(f"{path}/cancel", data={**hidden, "reason": "Sold the house"}).status_code == 302
    found = _fresh(db, account.id)
    assert found.cancelled_at is not None and found.cancel_reason == "Sold the house"
    [entry] = [e for e in _events(db, account.id) if e.event == "account_cancelled"]
    assert entry.note == "Sold the house" and entry.actor == f"staff:{office.id}"
    assert "Dana Reyes" not in client.get(day).get_data(as_text=True)
    assert "Dana Reyes" not in client.get("/staff/differences").get_data(as_text=True)
    page = client.get(path).get_data(as_text=True)
    assert "Cancelled</strong>" in page and "Sold the house" in page  # still found, marked


@pytest.mark.parametrize("role", ["sales", "technician"])
def test_only_office_and_admin_cancel(client, db, staff, make_staff, make_account, role):
    user = make_staff(role)
    account = make_account(user if role == "sales" else None)
    staff.login(user)
    response = client.post(
        f"/staff/accounts/{account.id}/cancel", data={"form_id": "a-fresh-form-id-0123456789", "reason": "x"}
    )
    assert response.status_code == 403
    assert _fresh(db, account.id).cancelled_at is None


@pytest.mark.csrf
def test_handback_forms_need_the_csrf_token(client, db, staff, make_staff, make_account):
    account = make_account()
    staff.login(make_staff("office"))
    for action, field in (("acknowledge", "ack_note"), ("cancel", "reason"), ("questions", "question")):
        response = client.post(
            f"/staff/accounts/{account.id}/{action}",
            data={"form_id": "a-fresh-form-id-0123456789", field: "text"},
        )
        assert response.status_code == 400, action
    found = _fresh(db, account.id)
    assert found.acknowledged_at is None and found.cancelled_at is None
    assert count_rows(db, HandoffQuestion) == 0
