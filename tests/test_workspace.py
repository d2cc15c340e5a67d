"""Staff workspace: dashboard, differences and their resolution, brief, day list, reports."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import event, func, insert, select

from portal import confirmations, differences, record
from portal.models import Account, Customer, OutboxEmail, RecordEntry
from portal.onboarding import send_welcome
from tests.conftest import count_rows, form_fields

TODAY = date.today()


def answer(db, account, kind, outcome, value=None, comment=""):
    item = next(i for i in account.items if i.kind == kind)
    confirmations.record_answers(db, account, [confirmations.Answer(item, outcome, value, comment)])
    db.commit()
    return item


@pytest.fixture
def seeded(db, make_staff, make_account):
    """Three accounts: one with a change and a dispute, one clean, one another seller's change."""
    sam, kim = make_staff("sales", name="Sam"), make_staff("sales", name="Kim")
    soon = make_account(
        sam, customer_name="Ann Soon", customer_email="ann@example.com", first_visit=TODAY + timedelta(days=2)
    )
    clean = make_account(
        sam,
        customer_name="Carl Clean",
        customer_email="carl@example.com",
        first_visit=TODAY + timedelta(days=3),
    )
    later = make_account(
        kim,
        customer_name="Lee Later",
        customer_email="lee@example.com",
        first_visit=TODAY + timedelta(days=20),
    )
    for account in (soon, clean, later):
        send_welcome(db, account, "system")
    db.commit()
    gate = answer(db, soon, "gate_access", "changed", "Front gate, code 7788", "new code")
    salt = answer(db, soon, "equipment", "disputed", None, "I was promised a new salt cell")
    answer(db, clean, "gate_access", "confirmed", clean.items[2].promised_value)
    visit = answer(db, later, "visit_day", "changed", "Monday", "work travel")
    return {
        "sam": sam,
        "kim": kim,
        "soon": soon,
        "clean": clean,
        "later": later,
        "gate": gate,
        "salt": salt,
        "visit": visit,
    }


def login(staff, make_staff, role="office"):
    user = make_staff(role)
    staff.login(user)
    return user


def test_dashboard_counts_the_pipeline_and_lists_urgent_accounts_first(client, staff, make_staff, seeded, db):
    login(staff, make_staff)
    page = client.get("/staff/").get_data(as_text=True)
    assert '<span class="tile-number">3</span> <span class="tile-label">In progress</span>' in page
    attention = page.split("Needs attention", 1)[1].split("Latest handoffs", 1)[0]
    assert attention.index("Ann Soon") < attention.index("Lee Later")
    assert "Carl Clean" not in attention


def test_dashboard_counts_expired_and_unopened_links(app, client, staff, make_staff, db, make_account):
    account = make_account()
    send_welcome(db, account, "system")
    account.link_sent_at = datetime.now(timezone.utc) - timedelta(days=20)
    db.commit()
    login(staff, make_staff)
    page = client.get("/staff/").get_data(as_text=True)
    assert '<span class="tile-number">1</span> <span class="tile-label">Link expired</span>' in page
    assert (
        '<span class="tile-number">1</span> <span class="tile-label">Not opened after 3 days</span>' in page
    )


def test_differences_show_promised_and_confirmed_side_by_side(client, staff, make_staff, seeded):
    login(staff, make_staff)
    page = client.get("/staff/differences").get_data(as_text=True)
    assert 'Inbox: open <span class="muted">(3 in all)</span>' in page
    assert "<del>Side</del>" in page and "<ins>Front</ins>" in page
    # Gate codes are masked in the inbox: the decision page shows them on request.
    assert "7788" not in page and "code \N{BULLET}\N{BULLET}\N{BULLET}\N{BULLET}" in page
    assert "I was promised a new salt cell" in page and "Promised by Sam" in page
    assert page.index("Ann Soon") < page.index("Lee Later")  # soonest first visit on top
    assert "Carl Clean" not in page


@pytest.mark.parametrize(
    "query, present, absent",
    [
        ("kind=equipment", ["salt cell"], ["Lee Later", "7788"]),
        ("kind=visit_day", ["Lee Later"], ["Ann Soon"]),
        ("salesperson={kim}", ["Lee Later"], ["Ann Soon"]),
        ("visit_to={in_a_week}", ["Ann Soon"], ["Lee Later"]),
        ("visit_from={in_a_week}", ["Lee Later"], ["Ann Soon"]),
        (
            "status=resolved",
            ["No resolved differences, change requests or follow-ups match"],
            ["Ann Soon", "Lee Later"],
        ),
    ],
)
def test_each_filter(client, staff, make_staff, seeded, query, present, absent):
    login(staff, make_staff)
    query = query.format(kim=seeded["kim"].id, in_a_week=(TODAY + timedelta(days=7)).isoformat())
    page = client.get(f"/staff/differences?{query}").get_data(as_text=True)
    for text in present:
        assert text in page, text
    for text in absent:
        assert text not in page.split("<h1>", 1)[1], text


def _resolve(client, item_id, action, **extra):
    """As a browser: follow the row's Resolve link from the list, then post the form."""
    page = client.get("/staff/differences").get_data(as_text=True)
    link = re.search(rf'href="(/staff/differences/{item_id}/resolve\?[^"]*)"', page)
    assert link is not None, page
    fields = form_fields(client.get(html.unescape(link.group(1))).get_data(as_text=True))
    return client.post(f"/staff/differences/{item_id}/resolve", data={**fields, "action": action, **extra})


def test_each_row_opens_its_own_resolve_page_and_links_its_account(client, staff, make_staff, seeded):
    login(staff, make_staff)
    page = client.get("/staff/differences").get_data(as_text=True)
    assert '/resolve"' not in page  # no form on the list posts a resolution: they open per row
    for key in ("gate", "salt", "visit"):
        item = seeded[key]
        whole_row = next(
            chunk
            for chunk in page.split('<li class="card difference">')
            if f"/staff/differences/{item.id}/resolve" in chunk
        )
        assert f'href="/staff/accounts/{item.account_id}"' in whole_row
        resolve = client.get(f"/staff/differences/{item.id}/resolve").get_data(as_text=True)
        assert item.label in resolve and 'name="note"' in resolve and 'name="assignee"' in resolve
        # A dispute without a new value cannot be accepted as it stands.
        assert ('value="accept"' in resolve) == (key != "salt")


def test_accepting_the_customers_version_writes_an_entry_and_leaves_the_open_list(
    client, staff, make_staff, seeded, db
):
    user = login(staff, make_staff)
    response = _resolve(client, seeded["gate"].id, "accept")
    assert response.status_code == 302
    entry = db.scalars(select(RecordEntry).where(RecordEntry.event == "resolved")).one()
    assert entry.actor == f"staff:{user.id}" and entry.outcome == "resolved"
    assert entry.confirmed_value == "Front gate, code 7788"
    assert entry.details["resolution"] == "accepted"
    state = {s.item.id: s for s in record.item_states(db, db.get(Account, seeded["soon"].id))}
    assert state[seeded["gate"].id].current_value == "Front gate, code 7788"
    open_page = client.get("/staff/differences").get_data(as_text=True)
    assert "7788" not in open_page
    resolved = client.get("/staff/differences?status=resolved").get_data(as_text=True)
    assert "accepted" in resolved and "Front gate, code \N{BULLET}" in resolved and "7788" not in resolved
    assert record.verify_chain(db, seeded["soon"].id) is None


def test_keeping_the_promise_needs_a_note(client, staff, make_staff, seeded, db):
    login(staff, make_staff)
    before = count_rows(db, RecordEntry)
    refused = _resolve(client, seeded["salt"].id, "keep", note="")
    assert refused.status_code == 400 and count_rows(db, RecordEntry) == before
    assert "Say how the customer was contacted" in refused.get_data(as_text=True)
    _resolve(client, seeded["salt"].id, "keep", note="Called Ann: a check, as sold")
    entry = db.scalars(select(RecordEntry).where(RecordEntry.event == "resolved")).one()
    assert entry.confirmed_value == seeded["salt"].promised_value
    assert entry.note == "Called Ann: a check, as sold"


def test_a_dispute_cannot_be_accepted_without_a_value(client, staff, make_staff, seeded, db):
    login(staff, make_staff)
    before = count_rows(db, RecordEntry)
    refused = _resolve(client, seeded["salt"].id, "accept")
    assert refused.status_code == 400 and "Not a valid choice" in refused.get_data(as_text=True)
    assert count_rows(db, RecordEntry) == before


def test_assigning_writes_an_entry_but_keeps_the_difference_open(client, staff, make_staff, seeded, db):
    login(staff, make_staff)
    _resolve(client, seeded["gate"].id, "assign", assignee=seeded["kim"].id, note="Kim sold the gate fix")
    entry = db.scalars(select(RecordEntry).where(RecordEntry.event == "assigned")).one()
    assert entry.details["assignee_id"] == seeded["kim"].id and entry.outcome is None
    page = client.get("/staff/differences").get_data(as_text=True)
    assert "assigned to Kim" in page and "code \N{BULLET}" in page and "7788" not in page


def test_assigning_to_someone_not_offered_is_refused_and_writes_nothing(
    client, staff, make_staff, seeded, db
):
    login(staff, make_staff)
    technician = make_staff("technician", name="Tech")
    before = count_rows(db, RecordEntry)
    for assignee in (str(2**63), str(technician.id), "-1"):  # too big for the column; not offered
        response = _resolve(client, seeded["gate"].id, "assign", assignee=assignee)
        assert response.status_code == 400
        assert "Choose who should handle it." in response.get_data(as_text=True)
    assert count_rows(db, RecordEntry) == before


def test_accepting_a_new_start_date_moves_the_first_visit(client, staff, make_staff, db, make_account):
    account = make_account(first_visit=TODAY + timedelta(days=5))
    new_date = (TODAY + timedelta(days=9)).isoformat()
    item = answer(db, account, "start_date", "changed", new_date, "away that week")
    login(staff, make_staff)
    _resolve(client, item.id, "accept")
    db.expire_all()
    assert db.get(Account, account.id).first_visit.isoformat() == new_date
    day = client.get(f"/staff/day?date={new_date}").get_data(as_text=True)
    assert account.service_address in day


def test_csv_export_has_the_filtered_rows(client, staff, make_staff, seeded):
    login(staff, make_staff)
    body = client.get("/staff/differences.csv?kind=gate_access").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(body)))
    assert len(rows) == 1
    assert (
        rows[0]["customer"] == "Ann Soon"
        and rows[0]["customer_value"] == "Front gate, code \N{BULLET}\N{BULLET}\N{BULLET}\N{BULLET}"
    )
    assert rows[0]["status"] == "open" and rows[0]["promised_by"] == "Sam"
    soon = seeded["soon"]
    assert (rows[0]["salesperson"], rows[0]["service_address"], rows[0]["first_visit"]) == (
        "Sam",
        soon.service_address,
        soon.first_visit.isoformat(),
    )
    every = list(csv.DictReader(io.StringIO(client.get("/staff/differences.csv").get_data(as_text=True))))
    assert sorted(r["customer"] for r in every) == ["Ann Soon", "Ann Soon", "Lee Later"]
    assert sorted(r["salesperson"] for r in every) == ["Kim", "Sam", "Sam"]


def _next_link(page):
    import re

    found = re.search(r'href="(/staff/differences\?[^"]*after=[^"]+)" rel="next"', page)
    return found.group(1).replace("&amp;", "&") if found else None


def test_pagination_by_keyset(client, staff, make_staff, db, make_account):
    accounts = []
    for n in range(27):
        account = make_account(
            customer_name=f"Customer {n:02}",
            customer_email=f"c{n}@example.com",
            first_visit=TODAY + timedelta(days=1 + n),
        )
        answer(db, account, "visit_day", "changed", "Monday", "x")
        accounts.append(account)
    login(staff, make_staff)
    first = client.get("/staff/differences?status=open").get_data(as_text=True)
    assert "(27 in all)" in first and first.count('class="card difference"') == 25
    assert "Customer 24" in first and "Customer 25" not in first
    link = _next_link(first)
    assert "status=open" in link
    # Meanwhile a more urgent difference arrives: it belongs on page 1 and does not push
    # page 1's last row onto page 2 (as an OFFSET would).
    urgent = make_account(customer_name="Urgent Ursula", customer_email="u@example.com", first_visit=TODAY)
    answer(db, urgent, "visit_day", "changed", "Monday", "x")
    second = client.get(link).get_data(as_text=True)
    assert second.count('class="card difference"') == 2
    assert "Customer 25" in second and "Customer 26" in second and "Customer 24" not in second
    assert _next_link(second) is None and "First page" in second


def test_brief_shows_what_was_confirmed_and_marks_the_unresolved(client, staff, make_staff, seeded, db):
    login(staff, make_staff, "technician")
    page = client.post(f"/staff/accounts/{seeded['soon'].id}/brief/show-codes").get_data(as_text=True)
    assert "Not decided yet (2)" in page
    assert "Front gate, code 7788" in page and "Toddler at home: always re-latch the gate" in page
    assert "Friday" in page and "Previous company missed two visits" in page
    assert 'class="brief-line unresolved"' in page


def test_day_list_links_each_first_visit_to_its_brief(client, staff, make_staff, seeded):
    login(staff, make_staff, "technician")
    day = (TODAY + timedelta(days=2)).isoformat()
    page = client.get(f"/staff/day?date={day}").get_data(as_text=True)
    assert f"/staff/accounts/{seeded['soon'].id}/brief" in page and "Lee Later" not in page
    assert client.get("/staff/day?date=not-a-date").status_code == 200


TECHNICIAN_REFUSED = [
    "/staff/differences",
    "/staff/differences.csv",
    "/staff/handoffs/new",
    "/staff/accounts/{soon}",
    "/staff/accounts/{soon}/edit",
    "/staff/reports",
    "/staff/reports.csv",
    "/staff/settings",
]


def test_technicians_read_briefs_and_day_lists_and_nothing_else(client, staff, make_staff, seeded, db):
    login(staff, make_staff, "technician")
    for url in TECHNICIAN_REFUSED:
        assert client.get(url.format(soon=seeded["soon"].id)).status_code == 403, url
    before = count_rows(db, RecordEntry)
    response = client.post(f"/staff/differences/{seeded['gate'].id}/resolve", data={"action": "accept"})
    assert response.status_code == 403 and count_rows(db, RecordEntry) == before
    assert client.get("/staff/").headers["Location"].startswith("/staff/day")


def test_sales_see_the_accounts_they_sold_office_and_admin_see_all(client, staff, make_staff, seeded):
    staff.login(seeded["sam"])
    page = client.get("/staff/differences").get_data(as_text=True)
    assert "Ann Soon" in page and "Lee Later" not in page
    assert client.get(f"/staff/accounts/{seeded['later'].id}").status_code == 404
    assert client.get(f"/staff/accounts/{seeded['later'].id}/brief").status_code == 404
    assert client.get("/staff/reports").status_code == 403
    staff.logout()
    login(staff, make_staff, "admin")
    page = client.get("/staff/differences").get_data(as_text=True)
    assert "Ann Soon" in page and "Lee Later" in page


def test_sales_cannot_resolve_differences_their_own_or_another_sellers(client, staff, seeded, db):
    staff.login(seeded["sam"])
    page = client.get("/staff/differences").get_data(as_text=True)
    assert "Ann Soon" in page and "/resolve" not in page  # their own rows, no resolve forms
    before = count_rows(db, RecordEntry)
    for key in ("gate", "visit"):  # Sam's own difference, then Kim's
        response = client.post(
            f"/staff/differences/{seeded[key].id}/resolve",
            data={"form_id": f"sales-tries-{key}-0123456789", "action": "accept"},
        )
        assert response.status_code == 403
    assert count_rows(db, RecordEntry) == before


def test_reports_show_rates_charts_numbers_and_csv(client, staff, make_staff, seeded):
    login(staff, make_staff, "admin")
    page = client.get("/staff/reports").get_data(as_text=True)
    assert "<svg" in page and "Gate access" in page
    assert "100.0 %" in page.split("by salesperson", 1)[1]  # Kim: one answer, one change
    body = client.get("/staff/reports.csv").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(body)))
    gate = next(r for r in rows if r[0] == "by_kind" and r[1] == "Gate access")
    assert gate[2:] == ["2", "1", "50.0"]
    assert ["funnel", "Link sent", "3", "", ""] in rows


def _count_queries(app, client, url):
    statements: list[str] = []
    engine = app.extensions["portal.engine"]
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        assert client.get(url).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    return len(statements)


def test_list_pages_take_a_bounded_number_of_queries(app, client, staff, make_staff, db, make_account):
    login(staff, make_staff)
    sellers = [make_staff("sales", name=f"S{n}") for n in range(3)]

    def add(n):
        for i in range(n):
            account = make_account(sellers[i % 3], customer_name=f"C{i}", customer_email=f"c{i}@example.com")
            send_welcome(db, account, "system")
            answer(db, account, "gate_access", "changed", "Other gate", "x")
            answer(db, account, "equipment", "disputed", None, "no")

    add(2)
    first = db.scalars(select(Account)).first()
    small = {
        url: _count_queries(app, client, url)
        for url in ("/staff/", "/staff/differences", "/staff/differences.csv", f"/staff/accounts/{first.id}")
    }
    add(12)
    large = {url: _count_queries(app, client, url) for url in small}
    assert large == small, (small, large)


def test_two_rows_opened_together_both_take_effect(client, staff, make_staff, seeded, db):
    """Two resolve pages opened at once (two tabs): each form carries its own one-time id."""
    login(staff, make_staff)
    forms = {}
    for item in (seeded["gate"], seeded["visit"]):
        forms[item.id] = {
            **form_fields(client.get(f"/staff/differences/{item.id}/resolve").get_data(as_text=True)),
            "action": "accept",
        }
    forms[seeded["visit"].id]["days"] = "Monday"  # a visit day: the office picks the customer's day
    assert forms[seeded["gate"].id]["form_id"] != forms[seeded["visit"].id]["form_id"]
    for item_id, fields in forms.items():
        assert client.post(f"/staff/differences/{item_id}/resolve", data=fields).status_code == 302
    resolved = db.scalars(select(RecordEntry).where(RecordEntry.event == "resolved")).all()
    assert sorted(e.item_id for e in resolved) == sorted(forms)
    before = count_rows(db, RecordEntry)
    again = client.post(f"/staff/differences/{seeded['gate'].id}/resolve", data=forms[seeded["gate"].id])
    assert again.status_code == 302 and count_rows(db, RecordEntry) == before  # a repeat does nothing


# --- Flat at scale: the dashboard's capped counts, the failed emails, the queue's keyset -------


def _waiting_accounts(db, salesperson, count, sent_days_ago):
    """`count` accounts whose welcome link went out `sent_days_ago` and was never opened,
    inserted in bulk (a handoff each would take minutes)."""
    first = (db.scalar(select(func.max(Customer.id))) or 0) + 1
    db.execute(
        insert(Customer),
        [
            {"id": first + n, "name": f"Bulk {first + n}", "email": f"b{first + n}@example.com"}
            for n in range(count)
        ],
    )
    sent = datetime.now(timezone.utc) - timedelta(days=sent_days_ago)
    db.execute(
        insert(Account),
        [
            {
                "customer_id": first + n,
                "salesperson_id": salesperson.id,
                "service_address": "1 Bulk St",
                "plan": "Weekly",
                "price_cents": 100,
                "status": "link_sent",
                "link_sent_at": sent,
            }
            for n in range(count)
        ],
    )
    db.commit()


def _tiles(page):
    return dict(
        (label, number)
        for number, label in re.findall(
            r'<span class="tile-number">([^<]*)</span> <span class="tile-label">([^<]*)</span>', page
        )
    )


def test_the_dashboards_link_counts_say_1000_plus_past_the_cap_and_stay_scoped(client, staff, make_staff, db):
    sam, kim = make_staff("sales", name="Sam"), make_staff("sales", name="Kim")
    _waiting_accounts(db, sam, 999, sent_days_ago=20)
    _waiting_accounts(db, kim, 1, sent_days_ago=20)
    _waiting_accounts(db, kim, 5, sent_days_ago=1)  # neither expired nor overdue yet
    login(staff, make_staff)
    tiles = _tiles(client.get("/staff/").get_data(as_text=True))
    assert (tiles["Link expired"], tiles["Not opened after 3 days"]) == ("1,000", "1,000")  # the cap
    assert tiles["Link sent"] == "1005"
    _waiting_accounts(db, kim, 1, sent_days_ago=20)
    tiles = _tiles(client.get("/staff/").get_data(as_text=True))
    assert (tiles["Link expired"], tiles["Not opened after 3 days"]) == ("1,000+", "1,000+")
    staff.logout()
    staff.login(kim)
    tiles = _tiles(client.get("/staff/").get_data(as_text=True))
    assert (tiles["Link expired"], tiles["Not opened after 3 days"], tiles["Link sent"]) == ("2", "2", "7")


def test_the_dashboard_lists_the_latest_failed_emails_among_many_sent(
    client, staff, make_staff, db, make_account
):
    accounts = [make_account(customer_name=f"Mail {n}", customer_email=f"m{n}@example.com") for n in range(4)]
    for account in accounts:
        send_welcome(db, account, "system")
    db.commit()
    emails = {e.account_id: e for e in db.scalars(select(OutboxEmail).where(OutboxEmail.kind == "welcome"))}
    for n, account in enumerate(accounts):
        emails[account.id].status = "failed" if n in (1, 2, 3) else "sent"
        emails[account.id].last_error = f"550 mailbox {n} unavailable"
    accounts[3].deleted_at = datetime.now(timezone.utc)
    db.commit()
    login(staff, make_staff)
    page = client.get("/staff/").get_data(as_text=True)
    shown = page.split("Emails that could not be delivered", 1)[1]
    assert shown.index("Mail 2") < shown.index("Mail 1")  # the latest first
    assert "550 mailbox 2 unavailable" in shown and "Mail 0" not in shown and "Mail 3" not in shown


def _item_ids(page):
    return [int(n) for n in re.findall(r'href="/staff/differences/(\d+)/resolve', page)]


def test_differences_pages_show_no_row_twice_and_none_missing_when_rows_are_added_or_resolved(
    client, staff, make_staff, db, make_account
):
    def differing(name, first_visit):
        account = make_account(
            customer_name=name, customer_email=f"{name.split()[-1]}@example.com", first_visit=first_visit
        )
        return answer(db, account, "visit_day", "changed", "Monday", "x").id

    dated = [differing(f"Customer {n:02}", TODAY + timedelta(days=1 + n)) for n in range(26)]
    undated = [differing(f"Nodate {n}", None) for n in range(2)]  # no first visit: these come last
    login(staff, make_staff)
    first = client.get("/staff/differences").get_data(as_text=True)
    assert _item_ids(first) == dated[:25]
    # Between pages: one more urgent (belongs before the cursor), one later, one with no first
    # visit, and a row of the next page resolved (it leaves the open list).
    differing("Early Ed", TODAY)
    later = differing("Later Liz", TODAY + timedelta(days=60))
    no_date = differing("Nodate late", None)
    differences.keep_promise(db, undated[0], make_staff("office"), "Called them: keeping Tuesday")
    db.commit()
    rest, link = [], _next_link(first)
    while link:
        page = client.get(link).get_data(as_text=True)
        rest += _item_ids(page)
        link = _next_link(page)
    assert rest == [dated[25], later, undated[1], no_date]


def _inbox_rows(page):
    return [
        ("difference" if kind == "differences" else "change", int(n))
        for kind, n in re.findall(r'href="/staff/(differences|changes)/(\d+)(?:/resolve)?\?', page)
    ]


def test_inbox_pages_of_differences_and_requests_show_no_row_twice_and_none_missing(
    client, staff, make_staff, db, make_account
):
    from portal import decisions

    def both(name, first_visit):  # an account with a difference and a change request
        account = make_account(
            customer_name=name, customer_email=f"{name.split()[-1]}@example.com", first_visit=first_visit
        )
        item = answer(db, account, "visit_day", "changed", "Monday", "x")
        change = decisions.open_request(db, account, None, f"{name} asks", None)
        db.commit()
        return account, [("difference", item.id), ("change", change.id)]

    made = [both(f"Customer {n:02}", TODAY + timedelta(days=1 + n)) for n in range(13)]
    undated, undated_rows = both("Nodate one", None)
    login(staff, make_staff)
    first = client.get("/staff/differences").get_data(as_text=True)
    expected = [row for _, rows in made for row in rows]
    assert _inbox_rows(first) == expected[:25]  # the page ends between an account's two rows
    # Between pages: a request of the account the page ended in (after the cursor), one of an
    # account already shown (before it), and one of the account without a visit.
    cut = made[12][0]
    after_cut = decisions.open_request(db, cut, None, "One more", None).id
    decisions.open_request(db, made[0][0], None, "Too late for page 1", None)
    no_visit = decisions.open_request(db, undated, None, "Also undated", None).id
    db.commit()
    rest, link = [], _next_link(first)
    while link:
        page = client.get(link).get_data(as_text=True)
        rest += _inbox_rows(page)
        link = _next_link(page)
    assert rest == [expected[25], ("change", after_cut), *undated_rows, ("change", no_visit)]
