"""Model-level guarantees other features lean on."""

from __future__ import annotations

import pytest
from sqlalchemy.orm.exc import StaleDataError

from portal.models import Account


def test_second_of_two_concurrent_saves_is_refused(app, db, make_account):
    account = make_account()
    other = app.extensions["portal.sessionmaker"]()
    try:
        mine = db.get(Account, account.id)
        theirs = other.get(Account, account.id)
        other.commit()  # their page is rendered; the edit comes back in a later request
        mine.plan = "Bi-weekly"
        db.commit()
        theirs.plan = "Monthly"
        with pytest.raises(StaleDataError):
            other.commit()
        other.rollback()
    finally:
        other.close()
    db.expire_all()
    assert db.get(Account, account.id).plan == "Bi-weekly"


def test_timestamps_are_timezone_aware_utc(db, make_account):
    account = make_account()
    db.expire_all()
    stored = db.get(Account, account.id)
    assert stored.created_at.tzinfo is not None
    assert stored.created_at.utcoffset().total_seconds() == 0
