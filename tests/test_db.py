"""The unit of work: the one way a view or command writes. It takes SQLite's write lock at its
start, commits at its end and rolls back on an error; reads outside it leave the lock free."""

from __future__ import annotations

import sqlite3

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import record
from portal.db import get_db, unit_of_work
from portal.models import Account, RecordEntry
from tests.conftest import BACKEND, count_rows

sqlite_only = pytest.mark.skipif(
    BACKEND == "postgres", reason="SQLite's one write lock; PostgreSQL writers lock rows"
)


def write_lock_free(app: Flask) -> bool:
    """Whether another connection could start writing now."""
    other = sqlite3.connect(app.extensions["portal.engine"].url.database, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:  # "database is locked": someone holds the write lock
        return False
    finally:
        other.close()


@sqlite_only
def test_a_unit_of_work_holds_the_write_lock_from_its_start_to_its_commit(app, db, make_account):
    account = make_account()
    db.commit()
    before = count_rows(db, RecordEntry)
    db.commit()
    with app.test_request_context("/", method="GET"):  # whatever the method: the unit decides
        session = get_db()
        session.get(Account, account.id)  # a read first, as a view does
        assert write_lock_free(app)
        with unit_of_work() as session:
            assert not write_lock_free(app)  # taken at BEGIN, before any write
            record.append(session, session.get(Account, account.id), event="note", actor="system")
        assert write_lock_free(app)
    db.rollback()
    assert count_rows(db, RecordEntry) == before + 1


@sqlite_only
def test_reads_outside_a_unit_of_work_leave_the_write_lock_free(app, make_account, db):
    make_account()
    db.commit()
    with app.test_request_context("/", method="POST"):  # a POST alone takes no lock
        session = get_db()
        assert session.scalars(select(Account)).first() is not None
        assert session.in_transaction() and write_lock_free(app)


def test_an_error_inside_a_unit_of_work_rolls_back_everything(app, db, make_account):
    account = make_account()
    db.commit()
    before = count_rows(db, RecordEntry)
    db.commit()
    with app.test_request_context("/"):
        with pytest.raises(RuntimeError, match="the second write failed"), unit_of_work() as session:
            record.append(session, session.get(Account, account.id), event="note", actor="system")
            session.flush()
            raise RuntimeError("the second write failed")
        assert not get_db().in_transaction()
    db.rollback()
    assert count_rows(db, RecordEntry) == before
    assert record.verify_chain(db, account.id) is None


def test_a_unit_of_work_refuses_changes_made_before_it_and_nested_units(app, db, make_account):
    account = make_account()
    db.commit()
    with app.test_request_context("/"):
        session: Session = get_db()
        session.get(Account, account.id).plan = "Changed outside"
        with pytest.raises(RuntimeError, match="outside a unit of work"), unit_of_work():
            pass
        session.rollback()
        with unit_of_work(), pytest.raises(RuntimeError, match="open already"), unit_of_work():
            pass
    db.rollback()
    assert db.get(Account, account.id).plan != "Changed outside"
