"""bench/sql_floor.py sends the app's own statements through the raw driver; this keeps them
runnable as the schema moves, and checks that a floor POST writes what a real one does."""
from __future__ import annotations

from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bench import sql_floor
from portal.models import FormSubmission, PromiseItem, RecordEntry
from tests.conftest import count_rows


def test_a_floor_post_claims_a_form_id_and_chains_the_schedule_answers(app: Flask, db: Session,
                                                                      make_account) -> None:  # type: ignore[no-untyped-def]
    account = make_account()
    head = db.scalar(select(func.max(RecordEntry.seq)).where(RecordEntry.account_id == account.id))
    claims = count_rows(db, FormSubmission)
    db.commit()

    engine = app.extensions["portal.engine"]
    statements = sql_floor.Statements(engine.dialect)
    with sql_floor.raw_cursor(engine) as cursor:
        rows = sql_floor.read_step(cursor, statements, account.id)
        sql_floor.answer_schedule(cursor, statements, account.id)
    db.expire_all()  # the session loaded the items before the raw writes

    schedule = [row["item_id"] for row in rows if row["kind"] in sql_floor.SCHEDULE_KINDS]
    assert schedule and {row["customer_name"] for row in rows} == {account.customer.name}
    assert count_rows(db, FormSubmission) == claims + 1
    written = db.scalars(select(RecordEntry).where(RecordEntry.account_id == account.id,
                                                   RecordEntry.seq > head).order_by(RecordEntry.seq)).all()
    assert [entry.seq for entry in written] == list(range(head + 1, head + 1 + len(schedule)))
    assert [entry.item_id for entry in written] == schedule
    previous = db.scalar(select(RecordEntry.hash).where(RecordEntry.account_id == account.id,
                                                        RecordEntry.seq == head))
    for entry in written:  # chained on the last entry, each on the one before
        assert entry.prev_hash == previous
        previous = entry.hash
    items = {item.id: item for item in db.scalars(select(PromiseItem).where(PromiseItem.id.in_(schedule)))}
    assert {(items[e.item_id].latest_entry_id, items[e.item_id].current_outcome) for e in written} == \
        {(e.id, "confirmed") for e in written}
