"""CSV exports neutralise spreadsheet formulas (OWASP CSV injection): a text cell that starts
with `=`, `+`, `-`, `@`, tab or CR is written with a leading `'`; numbers stay numbers."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest

from portal import confirmations
from portal.onboarding import send_welcome

HYPERLINK = '=HYPERLINK("http://x","y")'


def _dispute(db, account, comment):
    item = next(i for i in account.items if i.kind == "equipment")
    confirmations.record_answers(db, account, [confirmations.Answer(item, "disputed", None, comment)])
    db.commit()


def _differences(client):
    body = client.get("/staff/differences.csv").get_data(as_text=True)
    return list(csv.DictReader(io.StringIO(body)))


@pytest.fixture
def office(staff, make_staff):
    staff.login(make_staff("office"))


def test_a_customers_formula_comment_reaches_the_export_as_text(client, db, make_account, office):
    account = make_account()
    send_welcome(db, account, "system")
    db.commit()
    _dispute(db, account, HYPERLINK)
    rows = _differences(client)
    assert [row["customer_comment"] for row in rows] == ["'" + HYPERLINK]


@pytest.mark.parametrize("first", ["=", "+", "-", "@", "\t", "\r"])
def test_each_dangerous_first_character_gets_a_leading_quote(client, db, make_account, office, first):
    comment = f"{first}1+2 was promised"
    account = make_account(customer_name=f"{first}Dana".strip())
    send_welcome(db, account, "system")
    db.commit()
    _dispute(db, account, comment)
    row = _differences(client)[0]
    assert row["customer_comment"] == "'" + comment
    if first.strip():
        assert row["customer"] == f"'{first}Dana"


def test_text_that_only_looks_like_a_negative_amount_is_prefixed_too(client, db, make_account, office):
    account = make_account()
    send_welcome(db, account, "system")
    db.commit()
    _dispute(db, account, "-20.00")
    assert _differences(client)[0]["customer_comment"] == "'-20.00"


def test_harmless_text_and_dates_are_written_unchanged(client, db, make_account, office):
    visit = date.today() + timedelta(days=5)
    account = make_account(customer_name="Dana = Reyes", first_visit=visit)
    send_welcome(db, account, "system")
    db.commit()
    _dispute(db, account, "I was told 1 + 1 = 2 visits")
    row = _differences(client)[0]
    assert (row["customer"], row["customer_comment"], row["first_visit"]) == (
        "Dana = Reyes",
        "I was told 1 + 1 = 2 visits",
        visit.isoformat(),
    )


def test_reports_export_prefixes_text_but_keeps_numbers(client, db, make_staff, make_account, staff):
    seller = make_staff("sales", name="@SUM(A1:A9)")
    account = make_account(seller)
    send_welcome(db, account, "system")
    db.commit()
    _dispute(db, account, "not what I was told")
    staff.login(make_staff("admin"))
    rows = list(csv.reader(io.StringIO(client.get("/staff/reports.csv").get_data(as_text=True))))
    person = next(r for r in rows if r[0] == "by_person")
    assert person[1] == "'@SUM(A1:A9)"
    assert person[2:] == ["1", "1", "100.0"]
