"""The service record: append-only at the ORM and database level, hash-chained, state derived."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import delete, event, select, text, update
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from portal import once, record
from portal.db import unit_of_work
from portal.models import Account, AppendOnlyError, FormSubmission, PromiseItem, RecordEntry
from tests.conftest import BACKEND, count_rows, run_at_once


def _first_entry(db: Session) -> RecordEntry:
    return db.scalars(select(RecordEntry).order_by(RecordEntry.id)).first()


def test_each_promise_gets_a_promised_entry_chained_to_the_last(db, make_account):
    account = make_account()
    entries = record.entries_for(db, account.id)
    assert [e.seq for e in entries] == list(range(1, len(account.items) + 1))
    assert {e.item_id for e in entries} == {item.id for item in account.items}
    assert entries[0].prev_hash == record.GENESIS
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.hash
    assert all(e.created_at.tzinfo is not None for e in entries)
    assert record.verify_chain(db, account.id) is None


def test_an_append_is_written_at_once_and_the_item_points_at_it(db, make_account):
    account = make_account()
    item = account.items[0]
    entry = record.append(
        db,
        account,
        event="answered",
        actor="customer",
        item=item,
        promised_value=item.promised_value,
        confirmed_value="Tuesday",
        outcome="changed",
    )
    stored = (
        db.connection()
        .execute(
            select(PromiseItem.current_outcome, PromiseItem.latest_entry_id).where(PromiseItem.id == item.id)
        )
        .one()
    )
    assert tuple(stored) == ("changed", entry.id)
    assert (item.current_outcome, item.latest_entry_id) == ("changed", entry.id)
    assert not db.is_modified(item) and entry not in db.new and db.get(RecordEntry, entry.id) is entry
    entry.note = "edited after the fact"  # a loaded entry, not a pending one: refused, not re-inserted
    with pytest.raises(AppendOnlyError):
        db.flush()
    db.rollback()
    db.commit()
    assert record.verify_chain(db, account.id) is None


def test_answers_are_appended_in_order_and_each_item_points_at_its_own(db, make_account):
    account = make_account()
    first, second, third = account.items[:3]
    record.append(db, account, event="note", actor="staff:1")
    db.commit()
    entries = record.append_all(
        db,
        account,
        [
            record.Change("answered", "customer", first, first.promised_value, "Tuesday", "changed"),
            record.Change("answered", "customer", second, second.promised_value, None, "confirmed"),
            record.Change("note", "customer", confirmed_value="a note, no state"),
            record.Change("answered", "customer", third, third.promised_value, None, "disputed", "no"),
        ],
    )
    assert [e.seq for e in entries] == list(range(entries[0].seq, entries[0].seq + 4))
    assert [e.prev_hash for e in entries[1:]] == [e.hash for e in entries[:-1]]
    db.commit()
    stored = {
        row.id: row for row in db.scalars(select(RecordEntry).where(RecordEntry.account_id == account.id))
    }
    assert [stored[e.id].event for e in entries] == ["answered", "answered", "note", "answered"]
    assert [stored[e.id].seq for e in entries] == [e.seq for e in entries]
    items = {
        row.id: tuple(row)
        for row in db.execute(
            select(PromiseItem.id, PromiseItem.current_outcome, PromiseItem.latest_entry_id).where(
                PromiseItem.id.in_([first.id, second.id, third.id])
            )
        )
    }
    assert items == {
        first.id: (first.id, "changed", entries[0].id),
        second.id: (second.id, "confirmed", entries[1].id),
        third.id: (third.id, "disputed", entries[3].id),
    }
    assert record.verify_chain(db, account.id) is None
    assert record.append_all(db, account, []) == []


def test_orm_update_of_an_entry_is_refused(db, make_account):
    make_account()
    entry = _first_entry(db)
    original = entry.confirmed_value
    entry.confirmed_value = "tampered"
    with pytest.raises(AppendOnlyError):
        db.flush()
    db.rollback()
    assert _first_entry(db).confirmed_value == original


def test_orm_delete_of_an_entry_is_refused(db, make_account):
    make_account()
    count = len(db.scalars(select(RecordEntry)).all())
    db.delete(_first_entry(db))
    with pytest.raises(AppendOnlyError):
        db.flush()
    db.rollback()
    assert len(db.scalars(select(RecordEntry)).all()) == count


@pytest.mark.parametrize(
    "statement",
    [
        update(RecordEntry).values(note="changed"),
        delete(RecordEntry),
    ],
)
def test_orm_bulk_statements_are_refused(db, make_account, statement):
    make_account()
    with pytest.raises(AppendOnlyError):
        db.execute(statement)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE record_entries SET note = 'changed'",
        "DELETE FROM record_entries",
    ],
)
def test_raw_sql_update_and_delete_are_refused_by_the_database(db, make_account, sql):
    make_account()
    before = [(e.id, e.note) for e in db.scalars(select(RecordEntry))]
    db.commit()
    with pytest.raises(DatabaseError, match="append-only"):
        db.connection().exec_driver_sql(sql)
    db.rollback()
    assert [(e.id, e.note) for e in db.scalars(select(RecordEntry))] == before


def _drop_triggers(db: Session) -> None:
    if BACKEND == "postgres":
        db.execute(text("ALTER TABLE record_entries DISABLE TRIGGER record_entries_append_only"))
    else:
        db.execute(text("DROP TRIGGER record_entries_no_update"))


def _restore_triggers(db: Session) -> None:
    if BACKEND == "postgres":
        db.execute(text("ALTER TABLE record_entries ENABLE TRIGGER record_entries_append_only"))
    else:
        db.execute(
            text(
                "CREATE TRIGGER record_entries_no_update BEFORE UPDATE ON record_entries "
                "BEGIN SELECT RAISE(ABORT, 'service record entries are append-only'); END"
            )
        )


def test_verify_record_finds_an_entry_altered_behind_the_orms_back(db, make_account, runner):
    make_account()
    account = make_account()
    result = runner.invoke(args=["verify-record"])
    assert result.exit_code == 0, result.output
    assert "intact for 2 account(s)" in result.output

    target = record.entries_for(db, account.id)[2]
    _drop_triggers(db)
    db.execute(text("UPDATE record_entries SET promised_value = 'Monday' WHERE id = :id"), {"id": target.id})
    _restore_triggers(db)
    db.commit()

    result = runner.invoke(args=["verify-record"])
    assert result.exit_code == 1
    assert f"Account {account.id}: broken at entry {target.seq}" in result.output
    assert "contents do not match" in result.output
    single = runner.invoke(args=["verify-record", str(account.id)])
    assert single.exit_code == 1


def test_current_state_is_the_latest_entry_of_each_item(db, make_account):
    account = make_account()
    visit, gate = account.items[0], account.items[1]
    record.append(
        db,
        account,
        event="answered",
        actor="customer",
        item=visit,
        promised_value=visit.promised_value,
        confirmed_value="Thursday",
        outcome="changed",
    )
    record.append(
        db,
        account,
        event="answered",
        actor="customer",
        item=visit,
        promised_value=visit.promised_value,
        confirmed_value=visit.promised_value,
        outcome="confirmed",
    )
    record.append(
        db,
        account,
        event="answered",
        actor="customer",
        item=gate,
        promised_value=gate.promised_value,
        confirmed_value="Front gate",
        outcome="changed",
    )
    db.commit()

    states = {state.item.id: state for state in record.item_states(db, account)}
    assert states[visit.id].outcome == "confirmed"
    assert states[visit.id].current_value == visit.promised_value
    assert states[gate.id].outcome == "changed"
    assert states[gate.id].current_value == "Front gate"
    untouched = account.items[2]
    assert states[untouched.id].outcome == "promised"
    assert record.verify_chain(db, account.id) is None


def test_the_state_of_an_account_costs_the_same_however_many_items_were_answered(db, make_account, app):
    """No query per item (N+1): two answered items or all of them, the same count."""
    account = make_account()
    engine = app.extensions["portal.engine"]

    def count_queries() -> int:
        db.commit()
        assert account.items  # loaded before counting: the question is the state, not the items
        statements: list[str] = []
        listener = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            states = record.item_states(db, account)
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        assert [s.outcome for s in states if s.item.id in answered] == ["changed"] * len(answered)
        return len(statements)

    answered: list[int] = []
    counts = []
    for batch in (account.items[:2], account.items[2:]):
        for item in batch:
            record.append(
                db,
                account,
                event="answered",
                actor="customer",
                item=item,
                promised_value=item.promised_value,
                confirmed_value="x",
                outcome="changed",
            )
            answered.append(item.id)
        counts.append(count_queries())
    assert len(account.items) > 4 and counts[0] == counts[1], counts


def test_the_same_form_posted_at_once_takes_effect_once_and_the_chain_holds(app, db, make_account):
    """Four requests with one form id at the same moment: one claims it and writes its two
    entries; the others find the id taken and write nothing (PostgreSQL waits on the first
    transaction's row, SQLite on the write lock)."""
    account = make_account()
    db.commit()
    before = count_rows(db, RecordEntry)

    def post_once() -> bool:
        session = app.extensions["portal.sessionmaker"]()
        try:
            with unit_of_work(session):
                if once.claim(session, "form-posted-from-four-tabs", "test") is None:
                    return False
                mine = session.get(Account, account.id)
                for note in ("first of two", "second of two"):
                    record.append(session, mine, event="note", actor="customer", note=note)
            return True
        finally:
            session.close()

    assert sorted(run_at_once(app, 4, post_once)) == [False, False, False, True]
    db.rollback()  # end this session's read snapshot (SQLite) to see what the four wrote
    assert count_rows(db, FormSubmission) == 1
    assert count_rows(db, RecordEntry) == before + 2
    assert record.verify_chain(db, account.id) is None
