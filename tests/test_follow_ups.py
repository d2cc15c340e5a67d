"""Follow-ups: whatever the portal finds for the office to do lands in the one inbox, once,
and ends in an office note that the record keeps and the customer may be told."""

from __future__ import annotations

from sqlalchemy import select

from portal import follow_ups
from portal.db import unit_of_work
from portal.models import Account, FollowUp, RecordEntry
from tests.conftest import count_rows, form_fields, run_at_once
from tests.test_decisions import _emails, _later, _sign, _staff, company  # noqa: F401 (fixture)
from tests.test_welcome import invited  # noqa: F401 (a fixture)


def _raise(db, account, key="task:1", summary="Salt cell check is 3 days overdue"):  # type: ignore[no-untyped-def]
    found = follow_ups.raise_follow_up(db, account, "office", summary, detail="Due 28 April", key=key)
    db.commit()
    return found


def _entries(db, account, event):  # type: ignore[no-untyped-def]
    db.expire_all()
    return list(
        db.scalars(
            select(RecordEntry).where(RecordEntry.account_id == account.id, RecordEntry.event == event)
        )
    )


def _close(office, follow_up_id, **data):  # type: ignore[no-untyped-def]
    page = office.get(f"/staff/follow-ups/{follow_up_id}")
    assert page.status_code == 200
    fields = form_fields(page.get_data(as_text=True).split('action="/staff/follow-ups/', 1)[1])
    return office.post(f"/staff/follow-ups/{follow_up_id}", data={**fields, **data})


def test_a_follow_up_is_in_the_inbox_once_with_its_record_entry(app, client, db, make_account, make_staff):
    account = make_account()
    first = _raise(db, account)
    again = _raise(db, account)
    assert again.id == first.id and count_rows(db, FollowUp) == 1
    assert [e.note for e in _entries(db, account, "follow_up_raised")] == [
        "Salt cell check is 3 days overdue"
    ]

    office = _staff(app, db, make_staff("office"))
    inbox = office.get("/staff/differences").get_data(as_text=True)
    assert "Salt cell check is 3 days overdue" in inbox and "Due 28 April" in inbox
    assert f"/staff/follow-ups/{first.id}" in inbox
    # A filter on a kind of promise is about promises: no follow-up is one.
    assert "Salt cell check" not in office.get("/staff/differences?kind=equipment").get_data(as_text=True)
    attention = office.get("/staff/").get_data(as_text=True).split("Needs attention", 1)[1]
    assert account.customer.name in attention.split("Latest handoffs", 1)[0]
    page = office.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    assert "For the office: Salt cell check is 3 days overdue" in page  # the record
    open_ones = page.split('id="follow-ups"', 1)[1].split("</section>", 1)[0]
    assert "Salt cell check is 3 days overdue" in open_ones and f"/staff/follow-ups/{first.id}" in open_ones


def test_another_key_is_another_follow_up_and_a_closed_one_can_be_raised_again(
    app, db, make_account, make_staff
):
    account = make_account()
    first = _raise(db, account)
    _raise(db, account, key="task:2", summary="Skimmer lid is overdue")
    assert count_rows(db, FollowUp) == 2
    with unit_of_work(db):
        follow_ups.close(db, first.id, make_staff("office"), "Done on the 29th")
    assert _raise(db, account).id != first.id and count_rows(db, FollowUp) == 3


def test_two_workers_raising_the_same_follow_up_at_once_make_one(app, client, db, make_account):
    account_id = make_account().id  # read here: the threads must not touch the test's session
    client.get("/healthz")  # ends the test's transaction, as a request would

    def raise_it() -> int:
        session = app.extensions["portal.sessionmaker"]()  # each worker its own connection
        try:
            with unit_of_work(session):
                found = session.get(Account, account_id)
                assert found is not None
                raised = follow_ups.raise_follow_up(session, found, "office", "Gate open", key="visit:1")
                return raised.id
        finally:
            session.close()

    ids = run_at_once(app, 2, raise_it)
    db.rollback()
    assert len(set(ids)) == 1 and count_rows(db, FollowUp) == 1
    assert len(_entries(db, db.get(Account, account_id), "follow_up_raised")) == 1


def test_the_office_closes_it_with_a_note_the_customer_is_emailed(
    app, client, db, invited, make_staff, company, runner
):
    account, path = invited
    _sign(client, account, path)
    follow_up = _raise(db, account, summary="First visit did not match, says the customer")
    office = _staff(app, db, make_staff("office", name="Olive Office"))
    response = _close(office, follow_up.id, note="Called Dana; Tom comes back on Friday.", tell_customer="y")
    assert response.status_code == 302
    db.expire_all()
    closed = db.get(FollowUp, follow_up.id)
    assert closed.status == "closed" and closed.told_customer and closed.closed_at is not None
    entry = _entries(db, account, "follow_up_closed")[0]
    assert entry.note == "Called Dana; Tom comes back on Friday."

    assert "First visit did not match" not in office.get("/staff/differences").get_data(as_text=True)
    decided = office.get("/staff/differences?status=resolved").get_data(as_text=True)
    assert "First visit did not match" in decided and "Olive Office" in decided
    emails = _emails(runner, app, _later(app))
    assert len(emails) == 1
    body = "\n".join(part.get_content() for part in emails[0].walk() if part.get_content_maintype() == "text")
    assert "From the office" in body and "Tom comes back on Friday." in body
    service = client.get("/welcome/service").get_data(as_text=True)
    assert "Tom comes back on Friday." in service.split('id="office-notes"', 1)[1].split("</section>", 1)[0]


def test_closing_without_a_note_or_twice_changes_nothing(app, client, db, make_account, make_staff):
    account = make_account()
    follow_up = _raise(db, account)
    office = _staff(app, db, make_staff("office"))
    before = count_rows(db, RecordEntry)
    response = _close(office, follow_up.id, note="  ")
    assert response.status_code == 400 and "Say what was done" in response.get_data(as_text=True)
    db.expire_all()
    assert db.get(FollowUp, follow_up.id).status == "open" and count_rows(db, RecordEntry) == before

    page = office.get(f"/staff/follow-ups/{follow_up.id}").get_data(as_text=True)
    fields = form_fields(page.split('action="/staff/follow-ups/', 1)[1])
    assert _close(office, follow_up.id, note="Sorted").status_code == 302
    after = count_rows(db, RecordEntry)
    again = office.post(f"/staff/follow-ups/{follow_up.id}", data={**fields, "note": "Sorted again"})
    assert again.status_code == 302  # "closed already", back to the inbox
    db.expire_all()
    assert count_rows(db, RecordEntry) == after and db.get(FollowUp, follow_up.id).closing_note == "Sorted"


def test_who_may_see_and_close_a_follow_up(app, client, db, make_account, make_staff):
    seller = make_staff("sales")
    account = make_account(salesperson=seller)
    follow_up = _raise(db, account)
    before = count_rows(db, RecordEntry)

    own_seller = _staff(app, db, seller)
    assert "Salt cell check" in own_seller.get("/staff/differences").get_data(as_text=True)
    assert own_seller.get(f"/staff/follow-ups/{follow_up.id}").status_code == 403
    assert own_seller.post(f"/staff/follow-ups/{follow_up.id}", data={"note": "x"}).status_code == 403
    other = _staff(app, db, make_staff("sales"))
    assert "Salt cell check" not in other.get("/staff/differences").get_data(as_text=True)
    technician = _staff(app, db, make_staff("technician"))
    assert technician.get(f"/staff/follow-ups/{follow_up.id}").status_code == 403
    office = _staff(app, db, make_staff("office"))
    assert office.get(f"/staff/follow-ups/{follow_up.id + 100}").status_code == 404

    db.expire_all()
    assert db.get(FollowUp, follow_up.id).status == "open" and count_rows(db, RecordEntry) == before
