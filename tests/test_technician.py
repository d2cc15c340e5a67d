"""The technician's day list and brief as a technician (and the policy) meets them: which day the
list lands on, the days around it, what each row says, the tap links, and who sees what.
The one-page print is proven in tests/browser/test_technician.py."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from html import unescape

import pytest
from sqlalchemy import event

from portal import brief, confirmations
from portal.company import company_today
from portal.db import utcnow
from portal.models import Account, CompanySettings, RecordEntry
from portal.onboarding import send_welcome
from tests.conftest import count_rows, form_fields

BASE = date(2030, 3, 4)  # a Monday far from today: these tests pass `today` themselves

MASKED = "\N{BULLET}\N{BULLET}\N{BULLET}\N{BULLET}"  # a code as staff screens show it before "Show code"


def answer(db, account, kind, outcome, value=None, comment=""):
    item = next(i for i in account.items if i.kind == kind)
    confirmations.record_answers(db, account, [confirmations.Answer(item, outcome, value, comment)])
    db.commit()
    return item


def _rows(page: str) -> dict[str, str]:
    """Each day-list row's text by customer name."""
    rows = re.findall(r'<li class="card visit">(.*?)</li>\s*(?=<li class="card visit">|</ol>)', page, re.S)
    return {re.search(r'/brief">([^<]+)</a>', row).group(1): row for row in rows}


def _text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


@pytest.fixture
def days(db, make_staff, make_account):
    """Visits on BASE, BASE+3 (two) and BASE+10, sold by Sam; one of Kim's on BASE+1."""
    sam, kim = make_staff("sales", name="Sam"), make_staff("sales", name="Kim")
    made = {
        "first": make_account(
            sam,
            customer_name="Ann First",
            customer_email="ann@example.com",
            service_address="1 Alpha Rd",
            first_visit=BASE,
        ),
        "mid_a": make_account(
            sam,
            customer_name="Bo Mid",
            customer_email="bo@example.com",
            service_address="2 Beta Rd",
            first_visit=BASE + timedelta(days=3),
            customer_phone="(480) 555-0111",
        ),
        "mid_b": make_account(
            sam,
            customer_name="Cy Mid",
            customer_email="cy@example.com",
            service_address="3 Gamma Rd",
            first_visit=BASE + timedelta(days=3),
        ),
        "last": make_account(
            sam,
            customer_name="Di Last",
            customer_email="di@example.com",
            service_address="4 Delta Rd",
            first_visit=BASE + timedelta(days=10),
        ),
        "kims": make_account(
            kim,
            customer_name="Kay Kims",
            customer_email="kay@example.com",
            service_address="5 Kim Rd",
            first_visit=BASE + timedelta(days=1),
        ),
    }
    for account in made.values():
        send_welcome(db, account, "system")
    db.commit()
    return {"sam": sam, "kim": kim, **made}


# -- the landing day ------------------------------------------------------------------------------


def test_the_list_lands_on_today_when_today_has_visits(db, make_staff, days):
    tech = make_staff("technician")
    assert brief.landing_day(db, tech, BASE) == BASE
    assert brief.day_page(db, tech, None, BASE).day == BASE


def test_the_list_lands_on_the_next_day_with_visits(db, make_staff, days):
    tech = make_staff("technician")
    assert brief.landing_day(db, tech, BASE + timedelta(days=2)) == BASE + timedelta(days=3)
    page = brief.day_page(db, tech, None, BASE + timedelta(days=4))
    assert page.day == BASE + timedelta(days=10)
    assert [v.account.customer.name for v in page.visits] == ["Di Last"]


def test_with_no_visits_ahead_the_list_stays_on_today_and_says_so(client, staff, db, make_staff, days):
    tech = make_staff("technician")
    after = BASE + timedelta(days=11)
    page = brief.day_page(db, tech, None, after)
    assert (page.day, page.visits, page.next, page.previous) == (after, [], None, BASE + timedelta(days=10))
    staff.login(tech)
    body = client.get("/staff/day?date=" + after.isoformat()).get_data(as_text=True)
    assert "No first visits on this day." in body and "No later visits" in body


def test_the_page_without_a_date_lands_on_the_companys_today_or_the_next_visit(
    app, client, staff, db, make_staff, make_account
):
    with app.test_request_context():
        today = company_today()
    soon = make_account(
        customer_name="Sue Soon", customer_email="sue@example.com", first_visit=today + timedelta(days=2)
    )
    staff.login(make_staff("technician"))
    page = client.get("/staff/day").get_data(as_text=True)
    assert "Sue Soon" in page and "(today)" not in page
    assert (today + timedelta(days=2)).isoformat() in page
    make_account(customer_name="Tom Today", customer_email="tom@example.com", first_visit=today)
    page = client.get("/staff/day").get_data(as_text=True)
    assert "Tom Today" in page and "(today)" in page and "Sue Soon" not in page
    assert soon.first_visit.isoformat() in page  # the next day with visits is linked


def test_today_is_the_companys_date_not_the_servers(app, db):
    evening_in_phoenix = datetime(2026, 12, 10, 3, 0, tzinfo=timezone.utc)  # 8 pm on the 9th there
    with app.test_request_context():
        assert company_today(evening_in_phoenix) == date(2026, 12, 9)
    db.add(CompanySettings(name="Kiwi Pools", timezone="Pacific/Auckland"))
    db.commit()
    with app.test_request_context():
        assert company_today(evening_in_phoenix) == date(2026, 12, 10)


def test_a_date_that_is_not_understood_falls_back_to_the_landing_day(client, staff, make_staff, days, db):
    staff.login(make_staff("technician"))
    for raw in ("not-a-date", "2030-02-30", "<script>"):
        response = client.get("/staff/day", query_string={"date": raw})
        body = response.get_data(as_text=True)
        assert response.status_code == 200, raw
        assert "That date was not understood" in body and "<script>" not in body.split("<main", 1)[1]


# -- previous and next -----------------------------------------------------------------------------


def _links(body: str) -> dict[str, str]:
    nav = body.split('class="day-nav"', 1)[1].split("</nav>", 1)[0]
    found = {}
    for href, text in re.findall(r'href="([^"]+)"[^>]*>(.*?)</a>', nav, re.S):
        found[_text(text)] = unescape(href)
    return found


def test_previous_and_next_go_to_the_nearest_days_with_visits(client, staff, make_staff, days):
    staff.login(make_staff("technician"))
    middle = BASE + timedelta(days=3)
    links = _links(client.get(f"/staff/day?date={middle}").get_data(as_text=True))
    assert links["← Tue Mar 5 (previous day with visits)"] == f"/staff/day?date={BASE + timedelta(days=1)}"
    assert links["Thu Mar 14 (next day with visits) →"] == f"/staff/day?date={BASE + timedelta(days=10)}"
    assert links["Day before"] == f"/staff/day?date={middle - timedelta(days=1)}"
    assert links["Day after"] == f"/staff/day?date={middle + timedelta(days=1)}"
    # A day without visits in between points both ways too.
    empty = BASE + timedelta(days=5)
    links = _links(client.get(f"/staff/day?date={empty}").get_data(as_text=True))
    assert links["← Thu Mar 7 (previous day with visits)"] == f"/staff/day?date={middle}"
    assert links["Thu Mar 14 (next day with visits) →"] == f"/staff/day?date={BASE + timedelta(days=10)}"


def test_the_first_and_last_days_say_there_is_nothing_further(client, staff, make_staff, days):
    staff.login(make_staff("technician"))
    first = client.get(f"/staff/day?date={BASE}").get_data(as_text=True)
    assert "No earlier visits" in first and "(next day with visits)" in first
    last = client.get(f"/staff/day?date={BASE + timedelta(days=10)}").get_data(as_text=True)
    assert "No later visits" in last and "(previous day with visits)" in last


def test_the_calendars_edges_answer_without_an_error(client, staff, make_staff, days):
    staff.login(make_staff("technician"))
    top = client.get("/staff/day?date=9999-12-31")
    assert top.status_code == 200 and "Day after" not in top.get_data(as_text=True)
    bottom = client.get("/staff/day?date=0001-01-01")
    assert bottom.status_code == 200 and "Day before" not in bottom.get_data(as_text=True)
    assert "Mon Mar 4 2030 (next day with visits) →" in _links(bottom.get_data(as_text=True))


# -- each row ------------------------------------------------------------------------------------


def test_each_row_shows_safety_gate_and_what_is_undecided(client, staff, make_staff, days, db):
    answer(db, days["mid_a"], "gate_access", "changed", "Front gate, code 7788", "new code")
    answer(db, days["mid_a"], "equipment", "disputed", None, "I was promised a new salt cell")
    answer(db, days["mid_b"], "gate_access", "confirmed", "Side gate, code 4412")
    staff.login(make_staff("technician"))
    rows = _rows(client.get(f"/staff/day?date={BASE + timedelta(days=3)}").get_data(as_text=True))
    assert list(rows) == ["Bo Mid", "Cy Mid"]  # by address
    bo, cy = _text(rows["Bo Mid"]), _text(rows["Cy Mid"])
    assert "⚠ 2 undecided" in bo
    assert (
        # Codes stay masked until someone asks to see them (the brief's "Show code").
        f"Gate access Undecided promised “Side gate, code {MASKED}”, customer says "
        f"“Front gate, code {MASKED}” (new code)"
    ) in bo
    assert (
        "Also not decided yet Equipment Undecided promised “Salt cell check before summer”, "
        "the customer disputes it (I was promised a new salt cell)"
    ) in bo
    assert "Safety Toddler at home: always re-latch the gate" in bo
    assert "undecided" not in cy.lower()
    assert f"Safety Toddler at home: always re-latch the gate Gate access Side gate, code {MASKED}" in cy


def test_a_decided_difference_leaves_the_row_with_the_agreed_value(client, staff, make_staff, days, db):
    gate = answer(db, days["mid_a"], "gate_access", "changed", "Front gate, code 7788", "new code")
    staff.login(make_staff("office"))
    fields = form_fields(client.get(f"/staff/differences/{gate.id}/resolve").get_data(as_text=True))
    resolved = client.post(f"/staff/differences/{gate.id}/resolve", data={**fields, "action": "accept"})
    assert resolved.status_code == 302
    staff.logout()
    staff.login(make_staff("technician"))
    body = client.get(f"/staff/day?date={BASE + timedelta(days=3)}").get_data(as_text=True)
    row = _text(_rows(body)["Bo Mid"])
    assert f"Gate access Front gate, code {MASKED}" in row and "Undecided" not in row and "4412" not in row


def test_rows_link_to_the_phone_the_map_and_the_brief(client, staff, make_staff, days):
    staff.login(make_staff("technician"))
    rows = _rows(client.get(f"/staff/day?date={BASE + timedelta(days=3)}").get_data(as_text=True))
    bo = rows["Bo Mid"]
    assert 'href="tel:4805550111"' in bo and "Call (480) 555-0111" in bo
    assert 'href="https://www.google.com/maps/search/?api=1&amp;query=2%20Beta%20Rd"' in bo
    assert f'href="/staff/accounts/{days["mid_a"].id}/brief"' in bo
    assert 'href="tel:+14805550134"' in rows["Cy Mid"]  # the demo's "+1 480 555 0134"


def test_a_row_without_a_phone_has_no_call_link(client, staff, make_staff, make_account, db):
    make_account(
        customer_name="No Phone", customer_email="np@example.com", customer_phone="", first_visit=BASE
    )
    staff.login(make_staff("technician"))
    row = _rows(client.get(f"/staff/day?date={BASE}").get_data(as_text=True))["No Phone"]
    assert "tel:" not in row and "Call" not in row


@pytest.mark.parametrize(
    "phone, uri",
    [
        ("+1 480 555 0134", "tel:+14805550134"),
        ("(480) 555-0134", "tel:4805550134"),
        ("480.555.0134", "tel:4805550134"),
        (" +44 20 7946 0958 ", "tel:+442079460958"),
        ("call the office", ""),
        ("", ""),
    ],
)
def test_tel_links_keep_only_what_a_dialler_needs(phone, uri):
    assert brief.tel_uri(phone) == uri


def test_map_links_carry_the_whole_address_encoded():
    assert brief.map_url("12 Elm St #4, Mesa & Co, AZ") == (
        "https://www.google.com/maps/search/?api=1&query=12%20Elm%20St%20%234%2C%20Mesa%20%26%20Co%2C%20AZ"
    )


def test_customer_text_is_escaped_on_the_row_and_in_the_links(client, staff, make_staff, make_account, db):
    account = make_account(
        customer_name="<b>Bold</b>",
        customer_email="b@example.com",
        service_address='9 "Quote" <script>alert(1)</script> Rd',
        first_visit=BASE,
    )
    answer(db, account, "safety", "changed", "<img src=x onerror=alert(1)>", "")
    staff.login(make_staff("technician"))
    body = client.get(f"/staff/day?date={BASE}").get_data(as_text=True)
    main = body.split("<main", 1)[1]
    assert "<script>" not in main and "<img" not in main and "<b>Bold" not in main
    assert "&lt;b&gt;Bold&lt;/b&gt;" in main and "&lt;img src=x onerror=alert(1)&gt;" in main


def test_the_day_list_takes_the_same_number_of_queries_for_2_and_12_visits(
    app, client, staff, make_staff, make_account, db
):
    def add(n):
        for i in range(n):
            account = make_account(
                customer_name=f"C{i}", customer_email=f"c{i}-{n}@example.com", first_visit=BASE
            )
            answer(db, account, "gate_access", "changed", "Other gate", "x")

    def count():
        statements: list[str] = []
        engine = app.extensions["portal.engine"]
        listener = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            body = client.get(f"/staff/day?date={BASE}").get_data(as_text=True)
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        return len(statements), body.count('class="card visit"')

    staff.login(make_staff("technician"))
    add(2)
    small, shown = count()
    add(10)
    large, shown_large = count()
    assert (shown, shown_large) == (2, 12)
    assert large == small


# -- the brief -----------------------------------------------------------------------------------


def test_the_brief_leads_with_safety_and_access_and_flags_the_undecided(client, staff, make_staff, days, db):
    answer(db, days["first"], "gate_access", "changed", "Side gate, code 7781", "")
    staff.login(make_staff("technician"))
    body = client.get(f"/staff/accounts/{days['first'].id}/brief").get_data(as_text=True)
    text = _text(body.split("<main", 1)[1])
    assert text.index("Safety and access") < text.index("The service") < text.index("From the sale")
    assert text.index("Toddler at home") < text.index("Visit day Friday")
    assert "Not decided yet (1): Gate access." in text
    assert f"promised “Side gate, code {MASKED}”, customer says “Side gate, code {MASKED}”" in text
    assert 'href="tel:+14805550134"' in body
    assert 'href="https://www.google.com/maps/search/?api=1&amp;query=1%20Alpha%20Rd"' in body
    assert "The customer has not signed yet" in text


def test_the_brief_and_day_list_load_nothing_from_another_site(client, staff, make_staff, days):
    staff.login(make_staff("technician"))
    for url in (f"/staff/accounts/{days['first'].id}/brief", f"/staff/day?date={BASE}"):
        body = client.get(url).get_data(as_text=True)
        assert not re.search(r'<(?:img|script|link|iframe)[^>]+(?:src|href)="https?://', body), url


# -- who sees what -------------------------------------------------------------------------------


def test_sales_days_and_neighbours_come_from_their_own_accounts_only(client, staff, days):
    staff.login(days["kim"])
    body = client.get(f"/staff/day?date={BASE}").get_data(as_text=True)
    assert "Ann First" not in body and "1 Alpha Rd" not in body
    links = _links(body)
    # Kim's only visit is on BASE+1: Sam's days are no neighbour of hers.
    assert links["Tue Mar 5 (next day with visits) →"] == f"/staff/day?date={BASE + timedelta(days=1)}"
    assert "No earlier visits" in body
    after = _links(client.get(f"/staff/day?date={BASE + timedelta(days=1)}").get_data(as_text=True))
    assert not any("visits)" in text for text in after)
    assert client.get("/staff/day").status_code == 200
    assert client.get(f"/staff/accounts/{days['first'].id}/brief").status_code == 404


def test_a_sellers_landing_day_skips_other_sellers_visits(db, days):
    assert brief.landing_day(db, days["kim"], BASE) == BASE + timedelta(days=1)
    assert brief.landing_day(db, days["sam"], BASE + timedelta(days=1)) == BASE + timedelta(days=3)


def test_a_deleted_account_is_on_no_day_and_no_neighbour(client, staff, make_staff, days, db):
    account = db.get(Account, days["last"].id)
    account.deleted_at = utcnow()
    db.commit()
    staff.login(make_staff("technician"))
    body = client.get(f"/staff/day?date={BASE + timedelta(days=10)}").get_data(as_text=True)
    assert "Di Last" not in body and "No later visits" in body
    middle = client.get(f"/staff/day?date={BASE + timedelta(days=3)}").get_data(as_text=True)
    assert "No later visits" in middle
    assert client.get(f"/staff/accounts/{account.id}/brief").status_code == 404


def test_signed_out_visitors_reach_neither_page_and_nothing_is_written(client, days, db):
    before = count_rows(db, RecordEntry)
    for url in (f"/staff/day?date={BASE}", f"/staff/accounts/{days['first'].id}/brief", "/staff/day"):
        response = client.get(url)
        assert response.status_code == 302 and "/staff/login" in response.headers["Location"], url
        assert "Ann First" not in response.get_data(as_text=True)
    assert count_rows(db, RecordEntry) == before
