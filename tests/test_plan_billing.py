"""Plan billing (`flask bill`): periods and proration, in advance and in arrears, quarterly and
per-visit plans, one invoice per period however often and however concurrently it runs,
promotions the office confirms, and the plan's cadence at every door (form, API, CSV)."""

from __future__ import annotations

import csv
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from portal import api_tokens, follow_ups, record
from portal.db import get_db
from portal.handoffs import Promise
from portal.models import Account, CompanySettings, Customer, Invoice, OutboxEmail, PromoCredit, RecordEntry
from portal.payments import plan_billing
from portal.payments.plan_billing import Period, Rules, period_containing, prorated, visit_days_in
from tests.conftest import count_rows, form_fields

ADVANCE_1 = Rules("advance", 1, "prorated")
ADVANCE_28 = Rules("advance", 28, "prorated")
ARREARS = Rules("arrears", 1, "prorated")


# --- Periods (no database) -----------------------------------------------------------------


@pytest.mark.parametrize(
    "day, cadence, rules, start, end",
    [
        # Month ends: January's 31st, February's 28th and the leap year's 29th (2028).
        (date(2027, 1, 31), "monthly", ADVANCE_1, date(2027, 1, 1), date(2027, 1, 31)),
        (date(2027, 2, 28), "monthly", ARREARS, date(2027, 2, 1), date(2027, 2, 28)),
        (date(2028, 2, 29), "monthly", ARREARS, date(2028, 2, 1), date(2028, 2, 29)),
        (date(2028, 2, 28), "monthly", ADVANCE_28, date(2028, 2, 28), date(2028, 3, 27)),
        (date(2028, 2, 27), "monthly", ADVANCE_28, date(2028, 1, 28), date(2028, 2, 27)),
        (date(2027, 1, 31), "monthly", ADVANCE_28, date(2027, 1, 28), date(2027, 2, 27)),
        (date(2026, 12, 31), "monthly", ADVANCE_28, date(2026, 12, 28), date(2027, 1, 27)),
        # Quarters: calendar quarters, starting on the billing day in advance.
        (date(2027, 5, 10), "quarterly", ADVANCE_1, date(2027, 4, 1), date(2027, 6, 30)),
        (date(2027, 1, 10), "quarterly", Rules("advance", 15), date(2026, 10, 15), date(2027, 1, 14)),
        (date(2027, 12, 31), "quarterly", ARREARS, date(2027, 10, 1), date(2027, 12, 31)),
        (date(2028, 2, 29), "quarterly", ARREARS, date(2028, 1, 1), date(2028, 3, 31)),
        # Per-visit plans are billed over the monthly periods.
        (date(2028, 2, 10), "per_visit", ARREARS, date(2028, 2, 1), date(2028, 2, 29)),
    ],
)
def test_periods_across_month_ends_quarters_and_leap_years(day, cadence, rules, start, end):
    assert period_containing(day, cadence, rules) == Period(start, end)


@pytest.mark.parametrize(
    "cents, first_visit, period, expected",
    [
        (31000, date(2027, 1, 31), Period(date(2027, 1, 1), date(2027, 1, 31)), 1000),  # 1 of 31 days
        (29000, date(2028, 2, 15), Period(date(2028, 2, 1), date(2028, 2, 29)), 15000),  # 15 of 29 (leap)
        (28000, date(2027, 2, 15), Period(date(2027, 2, 1), date(2027, 2, 28)), 14000),  # 14 of 28
        (16500, date(2027, 1, 1), Period(date(2027, 1, 1), date(2027, 1, 31)), 16500),  # on the first day
        (10000, date(2027, 1, 2), Period(date(2027, 1, 1), date(2027, 1, 3)), 6667),  # 2 of 3, half up
    ],
)
def test_proration_counts_the_days_from_the_first_visit(cents, first_visit, period, expected):
    assert prorated(cents, first_visit, period) == expected


def test_per_visit_counts_the_agreed_weekdays_from_the_first_visit():
    february = Period(date(2028, 2, 1), date(2028, 2, 29))
    mondays_and_thursdays = plan_billing.weekday_numbers("Mon and Thu")
    assert visit_days_in(february, mondays_and_thursdays, date(2028, 1, 1)) == 8
    assert visit_days_in(february, mondays_and_thursdays, date(2028, 2, 15)) == 4  # 17, 21, 24, 28
    assert visit_days_in(february, plan_billing.weekday_numbers("no day named"), date(2028, 1, 1)) == 0


# --- Billing a day ---------------------------------------------------------------------------


def company(db, **rules: Any) -> None:
    db.add(CompanySettings(name="Blue Lagoon", currency="USD", timezone="America/Phoenix", **rules))
    db.commit()


def signed_account(db, make_account, *, first_visit: date, promises: list[Promise] | None = None, **fields):
    """An account whose customer signed, with the plan given (a test shortcut for signing)."""
    if promises is not None:
        fields["promises"] = promises
    account = make_account(first_visit=first_visit, **fields)
    account.status = "signed"
    account.signed_at = datetime(2026, 12, 1, tzinfo=timezone.utc)
    db.commit()
    return account


def bill(runner, day: date) -> str:
    result = runner.invoke(args=["bill", "--on", day.isoformat()])
    assert result.exit_code == 0, result.output
    return result.output


def invoices_of(db, account: Account) -> list[Invoice]:
    db.commit()
    db.expire_all()
    return list(db.scalars(select(Invoice).where(Invoice.account_id == account.id).order_by(Invoice.id)))


def lines_of(invoice: Invoice) -> list[tuple[str, int]]:
    return [(line.description, line.amount_cents) for line in invoice.lines]


def test_in_advance_a_first_visit_on_the_billing_day_is_billed_in_full_that_day(db, make_account, runner):
    company(db, billing_timing="advance", billing_day=1)
    account = signed_account(db, make_account, first_visit=date(2027, 1, 1), price_cents=16500)
    assert "0 invoice(s) created" in bill(runner, date(2026, 12, 31))
    assert "1 invoice(s) created" in bill(runner, date(2027, 1, 1))
    [invoice] = invoices_of(db, account)
    assert (invoice.period_start, invoice.period_end) == (date(2027, 1, 1), date(2027, 1, 31))
    assert (invoice.total_cents, invoice.due_date, invoice.status) == (16500, date(2027, 1, 1), "open")
    assert lines_of(invoice) == [("Weekly full service, Jan 1 – Jan 31, 2027", 16500)]
    bill(runner, date(2027, 1, 2))
    assert len(invoices_of(db, account)) == 1
    bill(runner, date(2027, 2, 1))
    second = invoices_of(db, account)[1]
    assert (second.period_start, second.period_end, second.total_cents) == (
        date(2027, 2, 1),
        date(2027, 2, 28),
        16500,
    )


@pytest.mark.parametrize("first_period, total", [("prorated", 11710), ("full", 16500)])
def test_in_advance_a_first_visit_after_the_billing_day_is_billed_on_the_visit(
    db, make_account, runner, first_period, total
):
    company(db, billing_timing="advance", billing_day=1, first_period=first_period)
    account = signed_account(db, make_account, first_visit=date(2027, 1, 10), price_cents=16500)
    bill(runner, date(2027, 1, 1))  # the period's billing day, before the service starts
    assert invoices_of(db, account) == []
    bill(runner, date(2027, 1, 10))
    [invoice] = invoices_of(db, account)
    assert (invoice.period_start, invoice.period_end, invoice.due_date) == (
        date(2027, 1, 1),
        date(2027, 1, 31),
        date(2027, 1, 10),
    )
    assert invoice.total_cents == total  # 22 of 31 days of 165.00 = 117.10
    if first_period == "prorated":
        assert "22 of 31 days" in invoice.lines[0].description


def test_in_arrears_the_month_is_billed_on_its_last_day_leap_february_prorated(db, make_account, runner):
    company(db, billing_timing="arrears")
    account = signed_account(db, make_account, first_visit=date(2028, 2, 15), price_cents=29000)
    for day in (date(2028, 2, 15), date(2028, 2, 28)):
        bill(runner, day)
    assert invoices_of(db, account) == []
    bill(runner, date(2028, 2, 29))
    [invoice] = invoices_of(db, account)
    assert (invoice.period_start, invoice.period_end, invoice.due_date) == (
        date(2028, 2, 1),
        date(2028, 2, 29),
        date(2028, 2, 29),
    )
    assert invoice.total_cents == 15000  # 15 of 29 days
    bill(runner, date(2028, 3, 31))
    assert invoices_of(db, account)[1].total_cents == 29000


def test_a_quarterly_plan_is_billed_once_a_quarter(db, make_account, runner):
    company(db, billing_timing="advance", billing_day=1)
    account = signed_account(
        db, make_account, first_visit=date(2027, 4, 1), price_cents=45000, billing_cadence="quarterly"
    )
    for day in (date(2027, 4, 1), date(2027, 5, 1), date(2027, 6, 1), date(2027, 7, 1)):
        bill(runner, day)
    invoices = invoices_of(db, account)
    assert [(i.period_start, i.period_end, i.total_cents) for i in invoices] == [
        (date(2027, 4, 1), date(2027, 6, 30), 45000),
        (date(2027, 7, 1), date(2027, 9, 30), 45000),
    ]


def test_a_per_visit_plan_bills_the_agreed_visit_days_of_the_month(db, make_account, runner):
    company(db, billing_timing="arrears")
    account = signed_account(
        db,
        make_account,
        first_visit=date(2028, 1, 3),
        price_cents=4000,
        billing_cadence="per_visit",
        visits_per_week=2,
        promises=[Promise("visit_day", "Monday, Thursday"), Promise("billing", "Invoice by email")],
    )
    no_days = signed_account(
        db,
        make_account,
        first_visit=date(2028, 1, 3),
        price_cents=4000,
        billing_cadence="per_visit",
        promises=[Promise("billing", "Invoice by email")],
    )
    output = bill(runner, date(2028, 2, 29))
    [invoice] = invoices_of(db, account)
    assert invoice.total_cents == 8 * 4000
    assert "8 visits" in invoice.lines[0].description
    assert invoices_of(db, no_days) == [] and "1 per-visit plan(s) without visits" in output
    [follow_up] = follow_ups.open_for(db, no_days)
    assert follow_up.kind == "plan_not_billed" and "no visit day is agreed" in follow_up.summary
    bill(runner, date(2028, 2, 29))  # again: the same follow-up, not a second one
    assert len(follow_ups.open_for(db, no_days)) == 1 and follow_ups.open_for(db, account) == []


def test_unsigned_deleted_and_unpriced_accounts_are_not_billed(db, make_account, runner):
    company(db, billing_timing="advance", billing_day=1)
    unsigned = make_account(first_visit=date(2027, 1, 1))
    deleted = signed_account(db, make_account, first_visit=date(2027, 1, 1))
    deleted.deleted_at = datetime(2026, 12, 20, tzinfo=timezone.utc)
    no_visit = signed_account(db, make_account, first_visit=None)
    free = signed_account(db, make_account, first_visit=date(2027, 1, 1))
    db.execute(Account.__table__.update().where(Account.id == free.id).values(price_cents=0))
    db.commit()
    billed = signed_account(db, make_account, first_visit=date(2027, 1, 1))
    bill(runner, date(2027, 1, 1))
    for account in (unsigned, deleted, no_visit, free):
        assert invoices_of(db, account) == []
    assert len(invoices_of(db, billed)) == 1


def test_billing_twice_makes_one_invoice_one_email_one_entry_and_the_chain_holds(db, make_account, runner):
    company(db, billing_timing="advance", billing_day=1)
    accounts = [signed_account(db, make_account, first_visit=date(2027, 1, 1)) for _ in range(3)]
    first = bill(runner, date(2027, 1, 1))
    second = bill(runner, date(2027, 1, 1))
    assert "3 invoice(s) created" in first
    assert "0 invoice(s) created, 3 already invoiced" in second
    for account in accounts:
        [invoice] = invoices_of(db, account)
        created = db.scalars(
            select(RecordEntry).where(
                RecordEntry.account_id == account.id, RecordEntry.event == "invoice_created"
            )
        ).all()
        assert len(created) == 1 and created[0].details["invoice_id"] == invoice.id
        assert created[0].details["period_start"] == "2027-01-01"
        assert record.verify_chain(db, account.id) is None
    assert count_rows(db, OutboxEmail) == len(accounts) + 0  # invoice emails only (no welcome sent)
    assert runner.invoke(args=["verify-record"]).exit_code == 0


def test_two_billers_at_once_make_one_invoice_per_account(app, db, make_account):
    company(db, billing_timing="advance", billing_day=1)
    accounts = [signed_account(db, make_account, first_visit=date(2027, 1, 1)) for _ in range(4)]
    db.commit()
    reports = run_billers(app, date(2027, 1, 1))
    assert sum(report.created for report in reports) == len(accounts)
    assert sum(report.already for report in reports) == len(accounts)
    for account in accounts:
        assert len(invoices_of(db, account)) == 1
        assert record.verify_chain(db, account.id) is None


def run_billers(app, day: date) -> list[plan_billing.BillReport]:
    from tests.conftest import run_at_once

    def work() -> plan_billing.BillReport:
        try:
            return plan_billing.bill(day, chunk=2)
        finally:
            get_db().close()

    return run_at_once(app, 2, work)


def test_billing_a_day_takes_the_same_statements_for_2_and_20_accounts(app, db, make_account):
    company(db, billing_timing="advance", billing_day=1)

    def statements_to_bill(count: int, day: date) -> int:
        for _ in range(count):
            signed_account(db, make_account, first_visit=day)
        db.commit()
        seen: list[str] = []
        engine = app.extensions["portal.engine"]

        def count_statement(*_args: Any) -> None:
            seen.append("statement")

        event.listen(engine, "before_cursor_execute", count_statement)
        try:
            with app.app_context():
                report = plan_billing.bill(day, chunk=100)
                get_db().close()
        finally:
            event.remove(engine, "before_cursor_execute", count_statement)
        assert report.created >= count  # the accounts of the first call are billed again a month on
        return len(seen)

    assert statements_to_bill(2, date(2027, 1, 1)) == statements_to_bill(20, date(2027, 2, 1))


# --- Promotions --------------------------------------------------------------------------------

PROMO = Promise("custom", "December is free (promo FALL26)", "Promotion")


@pytest.fixture
def office(staff, make_staff):
    user = make_staff("office")
    staff.login(user)
    return user


def confirm(client, account: Account, **data: str):
    path = f"/pay/staff/accounts/{account.id}/promotions/new"
    fields = form_fields(client.get(path).get_data(as_text=True))
    return client.post(path, data={**fields, **data})


def test_a_promotion_comes_off_its_month_once_and_only_after_the_office_confirms(
    client, db, make_account, runner, office
):
    company(db, billing_timing="advance", billing_day=1)
    account = signed_account(
        db, make_account, first_visit=date(2026, 11, 1), promises=[PROMO, Promise("visit_day", "Friday")]
    )
    unconfirmed = signed_account(db, make_account, first_visit=date(2026, 11, 1), promises=[PROMO])
    bill(runner, date(2026, 11, 1))
    page = client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    assert "December is free (promo FALL26)" in page and "Not confirmed yet" in page

    response = confirm(client, account, month="2026-12", free="y", code="fall26", source=PROMO.value)
    assert response.status_code == 302, response.get_data(as_text=True)
    [entry] = db.scalars(
        select(RecordEntry).where(
            RecordEntry.account_id == account.id, RecordEntry.event == "promo_confirmed"
        )
    ).all()
    assert (
        entry.confirmed_value == "Promotion FALL26: December 2026 free"
        and entry.actor == f"staff:{office.id}"
    )

    bill(runner, date(2026, 12, 1))
    bill(runner, date(2026, 12, 1))
    bill(runner, date(2027, 1, 1))
    november, december, january = invoices_of(db, account)
    assert november.total_cents == january.total_cents == 16500
    assert lines_of(december)[1] == ("Promotion FALL26: December 2026 free", -16500)
    assert december.total_cents == 0
    assert [i.total_cents for i in invoices_of(db, unconfirmed)] == [16500, 16500, 16500]


def test_a_promotion_amount_never_takes_an_invoice_below_zero(db, make_account, runner):
    company(db, billing_timing="arrears")
    account = signed_account(db, make_account, first_visit=date(2027, 1, 1), price_cents=16500)
    db.add_all(
        [
            PromoCredit(account_id=account.id, month=date(2027, 1, 1), amount_cents=5000, code="A"),
            PromoCredit(account_id=account.id, month=date(2027, 1, 1), amount_cents=50000, code="B"),
        ]
    )
    db.commit()
    bill(runner, date(2027, 1, 31))
    [invoice] = invoices_of(db, account)
    assert [amount for _, amount in lines_of(invoice)] == [16500, -5000, -11500]
    assert invoice.total_cents == 0


def late_entries(db, account: Account) -> list[RecordEntry]:
    db.commit()
    return list(
        db.scalars(
            select(RecordEntry).where(
                RecordEntry.account_id == account.id, RecordEntry.event == "promo_applied_late"
            )
        )
    )


def test_a_promotion_confirmed_after_its_month_was_billed_comes_off_the_next_invoice_once(
    client, db, make_account, runner, office
):
    company(db, billing_timing="advance", billing_day=1)
    account = signed_account(db, make_account, first_visit=date(2026, 11, 1), promises=[PROMO])
    bill(runner, date(2026, 11, 1))
    bill(runner, date(2026, 12, 1))
    december = invoices_of(db, account)[1]
    assert december.total_cents == 16500  # billed before the office confirmed the promotion

    assert confirm(client, account, month="2026-12", amount="40", code="FALL26").status_code == 302
    bill(runner, date(2027, 1, 1))
    bill(runner, date(2027, 1, 1))  # a second run for the day
    bill(runner, date(2027, 2, 1))
    november, december, january, february = invoices_of(db, account)
    assert december.total_cents == 16500 and february.total_cents == 16500
    assert lines_of(january)[1] == (
        f"Promotion FALL26: December 2026 $40.00, confirmed after {december.number} was billed",
        -4000,
    )
    assert january.total_cents == 12500 and january.status == "open"
    [entry] = late_entries(db, account)
    assert entry.confirmed_value == f"Promotion FALL26: December 2026, $40.00 off {january.number}"
    assert december.number in entry.note and entry.actor == "system:bill"
    assert db.scalars(select(PromoCredit.applied_invoice_id)).one() == january.id
    assert record.verify_chain(db, account.id) is None
    page = client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    assert f"$40.00 off {january.number}" in page
    assert f"FALL26: December 2026, $40.00 off (confirmed; credited on {january.number})" in page


def test_a_late_free_month_settles_the_next_invoice_and_a_promotion_not_yet_billed_waits(
    db, make_account, runner
):
    company(db, billing_timing="advance", billing_day=1)
    account = signed_account(db, make_account, first_visit=date(2026, 11, 1))
    before_service = signed_account(db, make_account, first_visit=date(2027, 1, 1))
    bill(runner, date(2026, 11, 1))
    db.add_all(
        [
            PromoCredit(account_id=account.id, month=date(2026, 11, 1), amount_cents=None, code="LATE"),
            # No invoice was ever made for a month before the first visit: nothing to make up.
            PromoCredit(account_id=before_service.id, month=date(2026, 12, 1), amount_cents=None, code="X"),
        ]
    )
    db.commit()
    bill(runner, date(2026, 12, 1))
    bill(runner, date(2027, 1, 1))
    november, december, january = invoices_of(db, account)
    assert (november.total_cents, december.total_cents, january.total_cents) == (16500, 0, 16500)
    assert december.status == "paid"  # credited in full, settled when made
    assert [i.total_cents for i in invoices_of(db, before_service)] == [16500]
    assert late_entries(db, before_service) == [] and len(late_entries(db, account)) == 1


def test_the_upgrade_marks_promotions_already_on_an_invoice_so_none_is_given_again(
    app, db, make_account, runner
):
    from portal import migrate

    company(db, billing_timing="advance", billing_day=1)
    account = signed_account(db, make_account, first_visit=date(2026, 12, 1))
    db.add_all(
        [
            PromoCredit(account_id=account.id, month=date(2026, 12, 1), amount_cents=None, code="FALL26"),
            PromoCredit(account_id=account.id, month=date(2027, 1, 1), amount_cents=2500, code="NEWYEAR"),
        ]
    )
    db.commit()
    bill(runner, date(2026, 12, 1))
    [december] = invoices_of(db, account)
    db.close()
    migrate.downgrade(app, "0023")  # as the data stood before credits kept their invoice
    migrate.upgrade(app)

    applied = dict(db.execute(select(PromoCredit.code, PromoCredit.applied_invoice_id)).all())
    assert applied == {"FALL26": december.id, "NEWYEAR": None}
    bill(runner, date(2027, 1, 1))
    january = invoices_of(db, account)[1]
    assert january.total_cents == 16500 - 2500 and late_entries(db, account) == []


def run_billers_on(app, days: list[date]) -> list[plan_billing.BillReport]:
    """Each thread bills its own day, all released at once."""
    from tests.conftest import run_at_once

    todo = list(days)

    def work() -> plan_billing.BillReport:
        try:
            return plan_billing.bill(todo.pop(), chunk=2)
        finally:
            get_db().close()

    return run_at_once(app, len(days), work)


@pytest.mark.parametrize(
    "days",
    [[date(2027, 1, 1), date(2027, 1, 1)], [date(2027, 1, 1), date(2027, 2, 1)]],
    ids=["same-day", "two-days"],
)
def test_billers_at_once_give_a_late_promotion_once(app, db, make_account, runner, days):
    company(db, billing_timing="advance", billing_day=1)
    accounts = [signed_account(db, make_account, first_visit=date(2026, 12, 1)) for _ in range(3)]
    bill(runner, date(2026, 12, 1))
    db.add_all(
        [PromoCredit(account_id=a.id, month=date(2026, 12, 1), amount_cents=2500, code="L") for a in accounts]
    )
    db.commit()
    run_billers_on(app, days)
    for account in accounts:
        made = invoices_of(db, account)
        assert len(made) == 1 + len(set(days))
        credited = [invoice for invoice in made if any(amount < 0 for _, amount in lines_of(invoice))]
        assert [invoice.total_cents for invoice in credited] == [14000]
        [entry] = late_entries(db, account)
        assert entry.details["invoice_id"] == credited[0].id
        assert record.verify_chain(db, account.id) is None
    applied = db.scalars(select(PromoCredit.applied_invoice_id).order_by(PromoCredit.id)).all()
    assert None not in applied and len(set(applied)) == len(accounts)


@pytest.mark.parametrize(
    "data, field_error",
    [
        ({"month": "December", "free": "y", "code": "FALL26"}, "YYYY-MM"),
        ({"month": "2026-12", "code": "FALL26"}, "Tick free, or enter an amount off."),
        ({"month": "2026-12", "free": "y", "amount": "10", "code": "FALL26"}, "not both"),
        ({"month": "2026-12", "amount": "-5", "code": "FALL26"}, "cannot be negative"),
        ({"month": "2026-12", "amount": "0", "code": "FALL26"}, "above zero"),
        ({"month": "2026-12", "free": "y", "code": ""}, "Enter the promo code"),
        ({"month": "2026-12", "free": "y", "code": "FALL 26\r\nX"}, "line break"),
        ({"month": "2031-12", "free": "y", "code": "FALL26"}, "two years ahead"),
    ],
)
def test_bad_promotion_input_is_refused_next_to_the_field_and_changes_nothing(
    client, db, make_account, office, data, field_error
):
    account = signed_account(db, make_account, first_visit=date(2026, 11, 1), promises=[PROMO])
    before = (count_rows(db, PromoCredit), count_rows(db, RecordEntry))
    response = confirm(client, account, **data)
    assert response.status_code == 400
    assert field_error in response.get_data(as_text=True)
    db.commit()
    assert (count_rows(db, PromoCredit), count_rows(db, RecordEntry)) == before


def test_the_same_code_for_the_same_month_is_confirmed_once(client, db, make_account, office):
    account = signed_account(db, make_account, first_visit=date(2026, 11, 1), promises=[PROMO])
    assert confirm(client, account, month="2026-12", free="y", code="FALL26").status_code == 302
    again = confirm(client, account, month="2026-12", amount="20", code="fall26")
    assert again.status_code == 400 and "confirmed for December 2026 already" in again.get_data(as_text=True)
    db.commit()
    assert count_rows(db, PromoCredit) == 1


@pytest.mark.csrf
def test_confirming_a_promotion_needs_the_csrf_token(client, db, make_account, office):
    account = signed_account(db, make_account, first_visit=date(2026, 11, 1), promises=[PROMO])
    response = client.post(
        f"/pay/staff/accounts/{account.id}/promotions/new",
        data={"month": "2026-12", "free": "y", "code": "FALL26"},
    )
    assert response.status_code == 400
    db.commit()
    assert count_rows(db, PromoCredit) == 0


@pytest.mark.parametrize(
    "role, status", [("technician", 403), ("sales", 403), ("office", 200), ("admin", 200)]
)
def test_only_office_and_admin_confirm_promotions(client, db, make_account, make_staff, staff, role, status):
    account = signed_account(db, make_account, first_visit=date(2026, 11, 1), promises=[PROMO])
    staff.login(make_staff(role))
    assert client.get(f"/pay/staff/accounts/{account.id}/promotions/new").status_code == status


# --- Settings ----------------------------------------------------------------------------------

SETTINGS = {"name": "Blue Lagoon", "brand_color": "#123456", "currency": "USD", "timezone": "America/Phoenix"}


def test_settings_save_the_billing_rules_and_refuse_a_day_past_28(client, db, staff, make_staff):
    company(db)
    staff.login(make_staff("admin"))
    fields = form_fields(client.get("/staff/settings").get_data(as_text=True))
    good = {**fields, **SETTINGS, "billing_timing": "arrears", "billing_day": "15", "first_period": "full"}
    assert client.post("/staff/settings", data=good).status_code == 302
    db.expire_all()
    saved = db.scalars(select(CompanySettings)).one()
    assert (saved.billing_timing, saved.billing_day, saved.first_period) == ("arrears", 15, "full")
    for bad in ({"billing_day": "31"}, {"billing_timing": "weekly"}, {"first_period": "half"}):
        response = client.post("/staff/settings", data={**good, **bad, "billing_timing": "advance", **bad})
        assert response.status_code == 400
        db.expire_all()
        saved = db.scalars(select(CompanySettings)).one()
        assert (saved.billing_timing, saved.billing_day, saved.first_period) == ("arrears", 15, "full")


# --- The plan's cadence at every door ------------------------------------------------------------


def handoff_counts(db) -> tuple[int, int]:
    db.commit()
    return count_rows(db, Account), count_rows(db, Customer)


def test_the_api_takes_a_cadence_and_refuses_a_bad_one_storing_nothing(client, db, make_staff):
    from tests.test_api import handoff_body

    make_staff("sales", email="sam@example.com")
    token = api_tokens.create_token(db, "crm").plaintext
    db.commit()
    headers = {"Authorization": f"Bearer {token}"}
    before = handoff_counts(db)
    bad = client.post("/api/v1/handoffs", headers=headers, json=handoff_body(billing_cadence="weekly"))
    assert bad.status_code == 400 and "billing_cadence" in bad.get_json()["errors"]
    assert handoff_counts(db) == before
    ok = client.post("/api/v1/handoffs", headers=headers, json=handoff_body(billing_cadence="quarterly"))
    assert ok.status_code == 201, ok.get_json()
    account = db.get(Account, ok.get_json()["id"])
    assert account.billing_cadence == "quarterly"
    assert any(item.promised_value.endswith("$165.00 per quarter") for item in account.items)
    default = client.post("/api/v1/handoffs", headers=headers, json=handoff_body())  # the old body
    assert (
        default.status_code == 201 and db.get(Account, default.get_json()["id"]).billing_cadence == "monthly"
    )


def test_the_csv_import_takes_a_cadence_column_and_refuses_a_bad_one(runner, db, make_staff, tmp_path):
    from tests.test_import import HEADER, row

    make_staff("sales", email="sam@example.com")
    header = [*HEADER, "billing_cadence"]

    def write(path: Path, rows: list[dict[str, str]]) -> Path:
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
        return path

    before = handoff_counts(db)
    bad = runner.invoke(
        args=["import-handoffs", str(write(tmp_path / "bad.csv", [row(1, billing_cadence="fortnightly")]))]
    )
    assert bad.exit_code != 0 and "billing_cadence" in bad.output
    assert handoff_counts(db) == before
    good = write(tmp_path / "good.csv", [row(1, billing_cadence="per visit"), row(2, billing_cadence="")])
    result = runner.invoke(args=["import-handoffs", str(good)])
    assert result.exit_code == 0, result.output
    db.expire_all()
    cadences = sorted(db.scalars(select(Account.billing_cadence)))
    assert cadences == ["monthly", "per_visit"]


def test_the_handoff_form_takes_a_cadence_and_refuses_a_bad_one(client, db, staff, make_staff):
    from tests.test_handoff_form import post_new

    staff.login(make_staff("sales"))
    before = handoff_counts(db)
    bad = post_new(client, billing_cadence="yearly")
    assert bad.status_code == 400 and "Choose how the price is billed" in bad.get_data(as_text=True)
    assert handoff_counts(db) == before
    ok = post_new(client, billing_cadence="per_visit", price="40.00")
    assert ok.status_code == 302
    db.expire_all()
    account = db.scalars(select(Account)).one()
    assert account.billing_cadence == "per_visit"
    assert (
        db.scalar(select(func.count()).select_from(Account).where(Account.billing_cadence == "per_visit"))
        == 1
    )


# --- The worker ----------------------------------------------------------------------------------


def test_the_worker_makes_todays_plan_invoices_before_autopay(app, db, make_account):
    import threading
    from datetime import time
    from zoneinfo import ZoneInfo

    from portal.company import company_today
    from portal.worker import bill_plans, build_tasks

    now = datetime(2027, 1, 1, 6, 0, tzinfo=timezone.utc)
    tasks = {
        task.name: task for task in build_tasks(now, 10, time(9), time(10), ZoneInfo("UTC"), bill_at=time(7))
    }
    assert tasks["bill"].due == now.replace(hour=7) < tasks["autopay"].due
    assert "bill" not in {task.name for task in build_tasks(now, 10, time(9), time(10), ZoneInfo("UTC"))}

    company(db, billing_timing="advance", billing_day=1)
    with app.app_context():
        today = company_today()
    account = signed_account(db, make_account, first_visit=today)
    with app.app_context():
        bill_plans(threading.Event())
    [invoice] = invoices_of(db, account)
    assert invoice.due_date == today


def test_a_batched_plan_invoice_is_what_the_single_invoice_path_makes(db, make_account, runner):
    """Differential: `bill`'s batch and `create_invoice` (a batch of one) write the same."""
    from portal.payments.invoices import Line, create_invoice

    company(db, billing_timing="advance", billing_day=1)
    billed = signed_account(db, make_account, first_visit=date(2027, 1, 1))
    single = make_account(first_visit=date(2027, 1, 1))  # not signed: `bill` leaves it alone
    bill(runner, date(2027, 1, 1))
    [batched] = invoices_of(db, billed)
    create_invoice(db, single, [Line(batched.lines[0].description, 16500)], date(2027, 1, 1), "system:bill")
    db.commit()
    [one] = invoices_of(db, single)

    def shape(invoice: Invoice) -> dict[str, Any]:
        entry = db.scalars(
            select(RecordEntry).where(
                RecordEntry.account_id == invoice.account_id, RecordEntry.event == "invoice_created"
            )
        ).one()
        email = db.get(OutboxEmail, entry.details["email_id"])
        return {
            "invoice": (invoice.status, invoice.currency, invoice.total_cents, invoice.due_date),
            "number": invoice.number == f"INV-{invoice.id:06d}",
            "lines": lines_of(invoice),
            "email": (email.kind, email.to_address, email.subject.replace(invoice.number, "N")),
            "entry": (entry.actor, entry.confirmed_value.replace(invoice.number, "N"), sorted(entry.details)),
            "link": invoice.pay_nonce_hash is not None,
        }

    batch_shape, single_shape = shape(batched), shape(one)
    assert batch_shape["entry"][2] == sorted([*single_shape["entry"][2], "period_end", "period_start"])
    batch_shape["entry"] = single_shape["entry"] = None
    assert batch_shape == single_shape
    for account in (billed, single):
        assert record.verify_chain(db, account.id) is None
