"""Invoices from the agreed plan: `flask --app wsgi bill --on DATE` (the worker runs it daily).

What a plan's price buys is its cadence (Account.billing_cadence): a month, a quarter, or one
visit. When the company bills is a setting (Settings, "Plan billing"):

- in advance on day N (1-28): monthly periods run from day N to the day before day N of the
  next month, billed on their first day; quarterly periods start on day N of January, April,
  July and October;
- in arrears: calendar months (quarterly: calendar quarters), billed on their last day.

An account's first period is the one holding its first visit. When the visit falls after the
period's start, that period is billed on the later of its usual day and the first visit (in
advance: on the first visit day), and charged for the days from the first visit to the period
end as a share of the period's days ("prorated"), or in full ("full"), as Settings say.

Per-visit plans are billed over the same periods as monthly ones: the price times the agreed
visit days (the visit-day promise as agreed now, e.g. "Monday, Thursday") that fall in the
period, on or after the first visit. Without an agreed visit day there is nothing to count: no
invoice, and a follow-up in the office inbox (once per period). A period with no visit days makes
no invoice either.

Who is billed: signed, not deleted accounts with a price and a first visit on or before the
date. Each invoice is due on its billing date, so the daily autopay run charges a card-autopay
account that day. One invoice per account and period, held by the unique index on
(account_id, period_start): running `bill` twice, or on two workers at once, makes one.

A promotion the office confirmed (PromoCredit) comes off the invoice of the period holding its
month's billing day (in arrears: its first day), as a negative line: "free" is the month's plan
charge, an amount at most that. A credit never makes an invoice negative. One confirmed after
that period was billed comes off the account's next plan invoice; either way the credit keeps
the invoice that took it off, so it is given once, however many runs there are at once.

Accounts are read in chunks of CHUNK by id, each chunk billed in one transaction with a handful
of statements (payments.invoices.create_invoices): no query per account.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import ColumnElement, case, select, update
from sqlalchemy.orm import Session

from portal import follow_ups, record
from portal.company import get_company
from portal.db import table_of, unit_of_work
from portal.models import Account, AccountStatus, Invoice, PromiseItem, PromoCredit, RecordEntry
from portal.money import format_money
from portal.payments.billing import CARD, INVOICE, PaymentsPanel, card_text, is_card_choice
from portal.payments.gateway import payments_mode
from portal.payments.invoices import Line, NewInvoice, create_invoices
from portal.validation import WEEKDAYS, normalise_weekdays

MONTHLY, QUARTERLY, PER_VISIT = "monthly", "quarterly", "per_visit"
ADVANCE, ARREARS = "advance", "arrears"
PRORATED, FULL = "prorated", "full"
CHUNK = 1000
ACTOR = "system:bill"
NOT_BILLED = "plan_not_billed"  # the follow-up kind (portal/follow_ups.py)


@dataclass(frozen=True)
class Rules:
    """The company's billing settings."""

    timing: str = ADVANCE
    day: int = 1
    first_period: str = PRORATED

    @classmethod
    def from_company(cls) -> Rules:
        company = get_company()
        return cls(company.billing_timing, company.billing_day, company.first_period)


@dataclass(frozen=True)
class Period:
    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def _month_start(index: int, day: int) -> date:
    """The day `day` of month number `index` (year * 12 + month - 1)."""
    return date(index // 12, index % 12 + 1, day)


def period_containing(day: date, cadence: str, rules: Rules) -> Period:
    """The billing period (of the cadence, under the rules) that holds `day`."""
    months = 3 if cadence == QUARTERLY else 1
    first_day = rules.day if rules.timing == ADVANCE else 1
    index = day.year * 12 + day.month - 1
    if day.day < first_day:
        index -= 1
    index -= index % months
    start = _month_start(index, first_day)
    end = _month_start(index + months, first_day) - timedelta(days=1)
    return Period(start, end)


def billing_date(period: Period, rules: Rules) -> date:
    return period.start if rules.timing == ADVANCE else period.end


def due_on(period: Period, first_visit: date, rules: Rules) -> date | None:
    """When the period is billed for an account first visited on `first_visit`; None when
    the service starts after it."""
    if first_visit > period.end:
        return None
    return max(billing_date(period, rules), first_visit)


def prorated(cents: int, first_visit: date, period: Period) -> int:
    """The share of the period from the first visit to its end, rounded half up to a cent."""
    days = (period.end - max(first_visit, period.start)).days + 1
    return (cents * days * 2 + period.days) // (period.days * 2)


def visit_days_in(period: Period, weekdays: Iterable[int], first_visit: date) -> int:
    wanted = set(weekdays)
    day, count = max(period.start, first_visit), 0
    while day <= period.end:
        count += day.weekday() in wanted
        day += timedelta(days=1)
    return count


def weekday_numbers(agreed: str | None) -> list[int]:
    """'Monday, Thursday' -> [0, 3]; nothing for a value that names no weekday."""
    normal = normalise_weekdays(agreed or "")
    return [WEEKDAYS.index(name) for name in normal.split(", ")] if normal else []


@dataclass(frozen=True)
class Billable:
    """What billing reads about an account (the agreed visit days and billing choice included)."""

    account: Account
    visit_days: list[int] = field(default_factory=list)
    billing: str | None = None


@dataclass(frozen=True)
class Credit:
    month: date
    amount_cents: int | None
    code: str
    id: int | None = None
    # Confirmed after its own period was billed (that invoice's number): it comes off the next.
    late_after: str | None = None


def plan_lines(
    billable: Billable, period: Period, rules: Rules, credits: Sequence[Credit], currency: str
) -> list[Line]:
    """The invoice's lines for the period: the plan charge, then each promotion as a credit.
    Empty when there is nothing to charge (a per-visit plan without visit days in it)."""
    return priced(billable, period, rules, credits, currency)[0]


def priced(
    billable: Billable, period: Period, rules: Rules, credits: Sequence[Credit], currency: str
) -> tuple[list[Line], list[tuple[Credit, int]]]:
    """`plan_lines`, and the amount each credit took off (0 when nothing was left)."""
    account = billable.account
    assert account.first_visit is not None
    first = account.first_visit > period.start
    span = f"{period.start:%b} {period.start.day} – {period.end:%b} {period.end.day}, {period.end.year}"
    price = format_money(account.price_cents, currency)
    if account.billing_cadence == PER_VISIT:
        visits = visit_days_in(period, billable.visit_days, account.first_visit)
        if visits == 0:
            return [], []
        charge = visits * account.price_cents
        month_charge = charge
        text = f"{account.plan}, {span}: {visits} visit{'s' if visits != 1 else ''} × {price}"
    else:
        full = account.price_cents
        month_charge = full if account.billing_cadence == MONTHLY else (full + 1) // 3
        if first and rules.first_period == PRORATED:
            charge = prorated(full, account.first_visit, period)
            days = (period.end - account.first_visit).days + 1
            text = f"{account.plan}, {span} (from the first visit: {days} of {period.days} days)"
        else:
            charge = full
            text = f"{account.plan}, {span}"
    lines = [Line(text, charge)]
    taken = []
    left = charge
    for credit in credits:
        amount = max(0, min(left, month_charge if credit.amount_cents is None else credit.amount_cents))
        taken.append((credit, amount))
        if amount == 0:
            continue
        left -= amount
        what = "free" if credit.amount_cents is None else format_money(credit.amount_cents, currency)
        late = f", confirmed after {credit.late_after} was billed" if credit.late_after else ""
        lines.append(Line(f"Promotion {credit.code}: {credit.month:%B %Y} {what}{late}", -amount))
    return lines, taken


def credit_period(month: date, cadence: str, rules: Rules) -> Period:
    """The period a promotion for `month` comes off: the one holding the month's billing day."""
    return period_containing(month.replace(day=rules.day if rules.timing == ADVANCE else 1), cadence, rules)


# --- The run -------------------------------------------------------------------------------


@dataclass
class BillReport:
    day: date
    created: int = 0
    already: int = 0  # invoiced for that period before (another run, or another worker now)
    nothing_to_bill: int = 0  # per-visit plans without visit days in the period


def bill(day: date, *, chunk: int = CHUNK, rules: Rules | None = None) -> BillReport:
    """Make every plan invoice due on `day`, a chunk of accounts per transaction."""
    rules = rules or Rules.from_company()
    report = BillReport(day)
    after = 0
    while True:
        try:
            with unit_of_work() as session:
                accounts = _due_accounts(session, day, rules, after, chunk)
                if not accounts:
                    break
                made = _bill_chunk(session, day, rules, accounts)
        except CreditTaken:
            # Another run credited a late promotion on its invoice first: the chunk is rolled
            # back and billed again, and reads that promotion as applied this time.
            continue
        after = accounts[-1].id
        report.created += made.created
        report.already += made.already
        report.nothing_to_bill += made.nothing_to_bill
    return report


class CreditTaken(Exception):
    """A promotion this run put on an invoice was applied by another run meanwhile."""


def _billing_day_filter(day: date, rules: Rules) -> ColumnElement[bool] | None:
    """Only accounts something can be due for on `day`: on a billing day every account (None),
    else only those first visited that day (an advance first period billed on its first visit)."""
    last = calendar.monthrange(day.year, day.month)[1]
    billing_day = day.day == rules.day if rules.timing == ADVANCE else day.day == last
    return None if billing_day else Account.first_visit == day


def _due_accounts(session: Session, day: date, rules: Rules, after: int, chunk: int) -> list[Account]:
    condition = _billing_day_filter(day, rules)
    query = (
        select(Account)
        .where(
            Account.id > after,
            Account.status == AccountStatus.SIGNED.value,
            Account.deleted_at.is_(None),
            Account.price_cents > 0,
            Account.first_visit.is_not(None),
            Account.first_visit <= day,
        )
        .order_by(Account.id)
        .limit(chunk)
    )
    if condition is not None:
        query = query.where(condition)
    return list(session.scalars(query).unique())


def _agreed(session: Session, account_ids: list[int]) -> dict[int, dict[str, str]]:
    """Each account's agreed visit days and billing choice, as agreed now, in one query."""
    rows = session.execute(
        select(
            PromiseItem.account_id, PromiseItem.kind, PromiseItem.promised_value, RecordEntry.confirmed_value
        )
        .outerjoin(RecordEntry, RecordEntry.id == PromiseItem.latest_entry_id)
        .where(
            PromiseItem.account_id.in_(account_ids),
            PromiseItem.kind.in_(("visit_day", "billing")),
            PromiseItem.withdrawn_at.is_(None),
        )
        .order_by(PromiseItem.position)
    )
    agreed: dict[int, dict[str, str]] = defaultdict(dict)
    for account_id, kind, promised, confirmed in rows:
        agreed[account_id].setdefault(kind, confirmed if confirmed is not None else promised)
    return agreed


def _credits(session: Session, accounts: list[Account], day: date, rules: Rules) -> dict[int, list[Credit]]:
    """The promotions still to give, by account, in two queries: those of the period billed on
    `day`, and those whose own period was billed before they were confirmed (named by that
    invoice), for the next invoice."""
    rows = list(
        session.scalars(
            select(PromoCredit)
            .where(
                PromoCredit.account_id.in_([account.id for account in accounts]),
                PromoCredit.applied_invoice_id.is_(None),
            )
            .order_by(PromoCredit.id)
        )
    )
    cadence = {account.id: account.billing_cadence for account in accounts}
    starts = {row.id: credit_period(row.month, cadence[row.account_id], rules).start for row in rows}
    current = {account_id: period_containing(day, kind, rules).start for account_id, kind in cadence.items()}
    earlier = [row for row in rows if starts[row.id] < current[row.account_id]]
    billed: dict[tuple[int, date | None], str] = {}
    if earlier:
        billed = {
            (account_id, start): number
            for account_id, start, number in session.execute(
                select(Invoice.account_id, Invoice.period_start, Invoice.number).where(
                    Invoice.account_id.in_({row.account_id for row in earlier}),
                    Invoice.period_start.in_({starts[row.id] for row in earlier}),
                )
            )
        }
    found: dict[int, list[Credit]] = defaultdict(list)
    for row in rows:
        start = starts[row.id]
        if start == current[row.account_id]:
            found[row.account_id].append(Credit(row.month, row.amount_cents, row.code, row.id))
        elif start < current[row.account_id] and (row.account_id, start) in billed:
            late_after = billed[row.account_id, start]
            found[row.account_id].append(Credit(row.month, row.amount_cents, row.code, row.id, late_after))
    return found


def _bill_chunk(session: Session, day: date, rules: Rules, accounts: list[Account]) -> BillReport:
    """Bill the chunk; its counts. Raises CreditTaken (the caller rolls back and tries again)."""
    report = BillReport(day)
    ids = [account.id for account in accounts]
    agreed, credits = _agreed(session, ids), _credits(session, accounts, day, rules)
    currency = (get_company().currency or "USD").upper()
    mode = payments_mode()
    wanted = []
    applying: dict[int, list[tuple[Credit, int]]] = {}
    for account in accounts:
        assert account.first_visit is not None
        period = period_containing(day, account.billing_cadence, rules)
        if due_on(period, account.first_visit, rules) != day:
            continue
        values = agreed.get(account.id, {})
        choice = values.get("billing")
        billable = Billable(
            account,
            weekday_numbers(values.get("visit_day")),
            None if choice is None else CARD if is_card_choice(choice) else INVOICE,
        )
        # The period's own promotions first, then the late ones, oldest first.
        ordered = sorted(credits.get(account.id, []), key=lambda credit: credit.late_after is not None)
        lines, taken = priced(billable, period, rules, ordered, currency)
        if not lines:
            report.nothing_to_bill += 1
            if not billable.visit_days:
                # Nothing says which days to count: the office agrees a visit day, or invoices
                # the period by hand.
                follow_ups.raise_follow_up(
                    session,
                    account,
                    NOT_BILLED,
                    f"Per-visit plan not billed for {period.start:%b %-d} – {period.end:%b %-d, %Y}: "
                    "no visit day is agreed",
                    key=period.start.isoformat(),
                    actor=ACTOR,
                )
            continue
        # A period's own promotion is spent on its invoice even when nothing was left to take
        # off; a late one waits for an invoice it can take something off.
        applying[account.id] = [(c, amount) for c, amount in taken if c.late_after is None or amount > 0]
        panel = PaymentsPanel(billable.billing, card_text(account), 0, mode)
        wanted.append(
            NewInvoice(
                account,
                lines,
                due_date=day,
                autopay_card=panel.card if panel.autopay else None,
                period=(period.start, period.end),
            )
        )
    created = create_invoices(session, wanted, ACTOR)
    report.created += len(created)
    report.already += len(wanted) - len(created)
    _apply_credits(session, [(made.invoice, applying.get(made.invoice.account_id, [])) for made in created])
    return report


def _apply_credits(session: Session, applied: list[tuple[Invoice, list[tuple[Credit, int]]]]) -> None:
    """Mark each credit with the invoice that took it off, in one statement that only takes
    credits no other run has applied (raising CreditTaken otherwise), and record each late one."""
    given = {credit.id: invoice.id for invoice, taken in applied for credit, _ in taken if credit.id}
    if not given:
        return
    table = table_of(PromoCredit)
    marked = session.connection().execute(
        update(table)
        .where(table.c.id.in_(list(given)), table.c.applied_invoice_id.is_(None))
        .values(applied_invoice_id=case(given, value=table.c.id))
    )
    if marked.rowcount != len(given):
        raise CreditTaken
    record.append_many(
        session,
        [
            (
                invoice.account_id,
                [
                    record.Change(
                        event="promo_applied_late",
                        actor=ACTOR,
                        confirmed_value=(
                            f"Promotion {credit.code}: {credit.month:%B %Y}, "
                            f"{format_money(amount, invoice.currency)} off {invoice.number}"
                        ),
                        note=(
                            f"Confirmed after {credit.late_after} was billed for {credit.month:%B %Y}: "
                            f"credited on {invoice.number} instead."
                        ),
                        details={
                            "promo_credit_id": credit.id,
                            "month": credit.month.isoformat(),
                            "code": credit.code,
                            "amount_cents": amount,
                            "invoice_id": invoice.id,
                            "number": invoice.number,
                            "billed_invoice": credit.late_after,
                        },
                    )
                    for credit, amount in taken
                    if credit.late_after
                ],
            )
            for invoice, taken in applied
            if any(credit.late_after for credit, _ in taken)
        ],
    )


# --- Promotions ----------------------------------------------------------------------------


def promotions_in_sale(account: Account) -> list[str]:
    """The sale's words that mention a promotion ("December is free (promo FALL26)"), for the
    office to confirm as credits on the account page."""
    return [item.promised_value for item in account.items if "promo" in item.promised_value.lower()]


class PromotionTaken(ValueError):
    """That code is confirmed for that month already."""


def confirm_promotion(
    session: Session,
    account: Account,
    *,
    month: date,
    amount_cents: int | None,
    code: str,
    source_text: str,
    actor: str,
    staff_id: int | None,
) -> PromoCredit:
    """The office confirms a promotion from the sale as a credit: a row `bill` applies to the
    period holding `month`, and a `promo_confirmed` record entry. Once per code and month (the
    unique constraint; a second confirmation raises PromotionTaken). The caller commits."""
    month = month.replace(day=1)
    exists = session.scalar(
        select(PromoCredit.id).where(
            PromoCredit.account_id == account.id, PromoCredit.month == month, PromoCredit.code == code
        )
    )
    if exists is not None:
        raise PromotionTaken(code)
    credit = PromoCredit(
        account_id=account.id,
        month=month,
        amount_cents=amount_cents,
        code=code,
        source_text=source_text,
        confirmed_by_id=staff_id,
    )
    session.add(credit)
    session.flush()  # a concurrent confirmation of the same code and month fails here
    what = "free" if amount_cents is None else f"{format_money(amount_cents)} off"
    record.append(
        session,
        account,
        event="promo_confirmed",
        actor=actor,
        confirmed_value=f"Promotion {code}: {month:%B %Y} {what}",
        note=source_text,
        details={
            "promo_credit_id": credit.id,
            "month": month.isoformat(),
            "amount_cents": amount_cents,
            "code": code,
        },
    )
    return credit


def promotions_of(session: Session, account: Account) -> list[PromoCredit]:
    return list(
        session.scalars(
            select(PromoCredit).where(PromoCredit.account_id == account.id).order_by(PromoCredit.month)
        )
    )
