"""The accounts list: search, filters, order, keyset pages, the capped count, the access policy,
and the dashboard's pipeline counts that the database keeps."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import event, func, insert, select

from portal import account_list, keyset, pipeline
from portal.models import Account, AccountCount, Customer, StaffUser
from portal.onboarding import send_welcome
from portal.payments.invoices import Line, create_invoice

TODAY = date.today()
ROW = re.compile(r'<a href="/staff/accounts/(\d+)">([^<]+)</a>')


def names(page: str) -> list[str]:
    return [name for _, name in ROW.findall(page)]


def listed(client, **args) -> list[str]:
    response = client.get("/staff/accounts", query_string=args)
    assert response.status_code == 200
    return names(response.get_data(as_text=True))


@pytest.fixture
def office(staff, make_staff):
    user = make_staff("office")
    staff.login(user)
    return user


# --- Search -------------------------------------------------------------------------------


def test_search_ignores_case_and_accents(client, office, make_account):
    make_account(customer_name="José Núñez", customer_email="jn@example.com")
    make_account(customer_name="Dana Reyes", customer_email="dana@example.com")
    for typed in ("jose", "JOSE", "José", "nunez", "jose nunez", "NÚÑEZ"):
        assert listed(client, q=typed) == ["José Núñez"], typed
    assert listed(client, q="jose reyes") == []  # every word must be found


@pytest.mark.parametrize(
    "typed", ["480-555-0134", "(480) 555 0134", "4805550134", "+1 480 555 0134", "+14805550134", "555-0134"]
)
def test_phone_search_ignores_formatting(client, office, make_account, typed):
    make_account(customer_name="Dana Reyes", customer_phone="+1 480 555 0134")
    make_account(
        customer_name="Pat Other", customer_email="pat@example.com", customer_phone="+1 602 555 0199"
    )
    assert listed(client, q=typed) == ["Dana Reyes"]


def test_search_by_email_address_and_invoice_number(client, db, office, make_account):
    dana = make_account(
        customer_name="Dana Reyes",
        customer_email="dana.reyes@example.com",
        service_address="1820 W Palm Ln, Phoenix, AZ 85007",
    )
    make_account(
        customer_name="Pat Other",
        customer_email="pat@example.org",
        service_address="77 E Cactus Rd, Tempe, AZ 85281",
    )
    invoice, _ = create_invoice(db, dana, [Line("Weekly service", 16500)], TODAY, "staff:1")
    db.commit()
    assert listed(client, q="dana.reyes@example.com") == ["Dana Reyes"]
    assert listed(client, q="example.org") == ["Pat Other"]
    assert listed(client, q="palm ln") == ["Dana Reyes"]
    assert listed(client, q="cactus tempe") == ["Pat Other"]
    assert invoice.number.startswith("INV-")
    assert listed(client, q=invoice.number) == ["Dana Reyes"]
    assert listed(client, q=invoice.number.lower()) == ["Dana Reyes"]


def test_search_follows_every_change(client, db, office, make_account):
    account = make_account(customer_name="Dana Reyes", customer_email="dana@example.com")
    account.customer.name = "Dana Müller"
    account.customer.phone = "(602) 555-7788"
    account.service_address = "5 N Saguaro Dr, Mesa, AZ 85201"
    db.commit()
    assert listed(client, q="reyes") == []
    assert listed(client, q="muller") == ["Dana Müller"]
    assert listed(client, q="602 555 7788") == ["Dana Müller"]
    assert listed(client, q="saguaro") == ["Dana Müller"]
    assert listed(client, q="palm") == []


def test_search_text_is_never_query_syntax(client, office, make_account):
    make_account(customer_name="Dana Reyes")
    for typed in ('"', "dana OR", "NEAR(dana)", "dana*", "%", "_", "d'ana", "-dana", "^dana", "a" * 300):
        response = client.get("/staff/accounts", query_string={"q": typed})
        assert response.status_code == 200, typed
    assert listed(client, q="dana*") == ["Dana Reyes"]
    page = client.get("/staff/accounts", query_string={"q": "a" * 300}).get_data(as_text=True)
    assert "Keep the search under 100 characters." in page


# --- Filters and order ----------------------------------------------------------------------


@pytest.fixture
def three(db, make_staff, make_account):
    sam, kim = make_staff("sales", name="Sam"), make_staff("sales", name="Kim")
    ann = make_account(
        sam,
        customer_name="Ann Early",
        customer_email="ann@example.com",
        first_visit=TODAY + timedelta(days=2),
    )
    bob = make_account(
        kim,
        customer_name="Bob Middle",
        customer_email="bob@example.com",
        first_visit=TODAY + timedelta(days=10),
    )
    cy = make_account(
        sam, customer_name="Cy Late", customer_email="cy@example.com", first_visit=TODAY + timedelta(days=30)
    )
    send_welcome(db, bob, "system")
    db.commit()
    return {"sam": sam, "kim": kim, "ann": ann, "bob": bob, "cy": cy}


def test_filters_by_status_salesperson_and_first_visit_window(client, office, three):
    assert listed(client, status="link_sent") == ["Bob Middle"]
    assert listed(client, status="draft") == ["Ann Early", "Cy Late"]
    assert listed(client, salesperson=three["sam"].id) == ["Ann Early", "Cy Late"]
    assert listed(
        client,
        visit_from=(TODAY + timedelta(days=5)).isoformat(),
        visit_to=(TODAY + timedelta(days=20)).isoformat(),
    ) == ["Bob Middle"]
    assert listed(
        client, visit_from=(TODAY + timedelta(days=5)).isoformat(), salesperson=three["sam"].id
    ) == ["Cy Late"]
    # Nonsense is ignored, with a message for the date, rather than failing the page.
    response = client.get("/staff/accounts?status=nope&salesperson=x&visit_from=31-31-2026&sort=zzz")
    assert response.status_code == 200
    assert names(response.get_data(as_text=True)) == ["Ann Early", "Bob Middle", "Cy Late"]
    assert "Not a valid date value." in response.get_data(as_text=True)


def test_sort_orders(client, db, office, three):
    three["ann"].created_at = datetime.now(timezone.utc) - timedelta(days=1)
    three["cy"].created_at = datetime.now(timezone.utc) - timedelta(days=3)
    db.commit()
    assert listed(client) == ["Ann Early", "Bob Middle", "Cy Late"]
    assert listed(client, sort="first_visit") == ["Ann Early", "Bob Middle", "Cy Late"]
    assert listed(client, sort="created") == ["Bob Middle", "Ann Early", "Cy Late"]


# --- Keyset pages ----------------------------------------------------------------------------


def _walk(db, user, per_page, sort="name", between=None):
    """Every page from the first, as a reader clicking "Next" would; `between(n)` runs after page n."""
    seen, cursor, pages = [], None, 0
    while True:
        page = account_list.list_accounts(
            db, user, account_list.AccountFilter(sort=sort, after=cursor), per_page=per_page
        )
        seen += [account.customer.name for account in page.rows]
        pages += 1
        if between:
            between(pages)
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


def test_keyset_pages_show_no_row_twice_and_none_missing_when_rows_are_added(db, make_staff, make_account):
    office = make_staff("office")
    seller = make_staff("sales")
    for name in ("Ada", "Ben", "Cat", "Dan", "Eve", "Fay", "Gus"):
        make_account(seller, customer_name=name, customer_email=f"{name.lower()}@example.com")

    def add_some(after_page):
        if after_page == 1:  # one before the reader's place, one after it
            make_account(seller, customer_name="Abe", customer_email="abe@example.com")
            make_account(seller, customer_name="Cop", customer_email="cop@example.com")

    seen = _walk(db, office, 3, between=add_some)
    assert seen == ["Ada", "Ben", "Cat", "Cop", "Dan", "Eve", "Fay", "Gus"]


@pytest.mark.parametrize("sort", sorted(account_list.SORTS))
def test_walking_the_pages_gives_every_account_once_in_order(db, make_staff, make_account, sort):
    office = make_staff("office")
    seller = make_staff("sales")
    made = []
    for n, name in enumerate(["Kay", "Al", "Bo", "Jo", "Ed", "Di", "Cy"]):
        account = make_account(
            seller,
            customer_name=name,
            customer_email=f"{name.lower()}@example.com",
            first_visit=TODAY + timedelta(days=n % 3),
        )
        account.created_at = datetime.now(timezone.utc) - timedelta(hours=n % 2)  # ties on purpose
        made.append(account)
    made[1].first_visit = made[4].first_visit = None  # no first visit: these come last
    db.commit()
    everything = account_list.list_accounts(db, office, account_list.AccountFilter(sort=sort)).rows
    assert len(everything) == 7
    for per_page in (1, 2, 3):
        assert _walk(db, office, per_page, sort) == [a.customer.name for a in everything]
    if sort == "first_visit":
        assert {a.customer.name for a in everything[-2:]} == {"Al", "Ed"}


def test_next_link_carries_the_last_rows_key_and_a_bad_cursor_shows_the_first_page(
    client, db, office, make_staff, make_account
):
    seller = make_staff("sales")
    for n in range(account_list.PER_PAGE + 2):
        make_account(seller, customer_name=f"Customer {n:03}", customer_email=f"c{n}@example.com")
    first = client.get("/staff/accounts?status=draft").get_data(as_text=True)
    assert len(names(first)) == account_list.PER_PAGE
    link = re.search(r'href="(/staff/accounts\?[^"]*after=[^"]+)" rel="next"', first).group(1)
    assert "status=draft" in link
    second = client.get(link.replace("&amp;", "&")).get_data(as_text=True)
    assert names(second) == ["Customer 050", "Customer 051"]
    assert 'rel="next"' not in second and "First page" in second
    for bad in ("garbage", "W10", keyset.encode(["x"]), keyset.encode([1, 2]), "%" * 50):
        assert names(
            client.get("/staff/accounts", query_string={"after": bad}).get_data(as_text=True)
        ) == names(first), bad


# --- The capped count --------------------------------------------------------------------------


def test_count_says_1000_plus_past_the_cap(client, db, office, make_account):
    make_account(customer_name="Dana Reyes")
    assert "(1 in all)" in client.get("/staff/accounts").get_data(as_text=True)
    # 1,000 more accounts, inserted in bulk (a handoff each would take minutes).
    first = (db.scalar(select(func.max(Customer.id))) or 0) + 1
    db.execute(
        insert(Customer),
        [
            {"id": first + n, "name": f"Bulk {n:04}", "email": f"b{n}@example.com", "phone": ""}
            for n in range(1000)
        ],
    )
    db.execute(
        insert(Account),
        [
            {
                "customer_id": first + n,
                "service_address": "1 Bulk St",
                "plan": "Weekly",
                "price_cents": 100,
                "status": "draft",
            }
            for n in range(1000)
        ],
    )
    db.commit()
    page = client.get("/staff/accounts").get_data(as_text=True)
    assert "(1,000+ in all)" in page
    assert "(1 found)" in client.get("/staff/accounts?q=dana").get_data(as_text=True)
    assert "(1,000 found)" in client.get("/staff/accounts?q=bulk").get_data(as_text=True)  # exactly the cap


# --- Access -----------------------------------------------------------------------------------


def test_sales_see_only_their_own_accounts_in_list_search_and_filters(client, staff, three):
    staff.login(three["sam"])
    assert listed(client) == ["Ann Early", "Cy Late"]
    assert listed(client, q="bob") == []
    # Naming another seller changes nothing: their accounts stay out of reach.
    assert listed(client, salesperson=three["kim"].id) == ["Ann Early", "Cy Late"]
    page = client.get("/staff/accounts").get_data(as_text=True)
    assert 'name="salesperson"' not in page


def test_deleted_accounts_are_not_listed(client, db, office, three):
    three["bob"].deleted_at = datetime.now(timezone.utc)
    db.commit()
    assert listed(client) == ["Ann Early", "Cy Late"]
    assert listed(client, q="bob") == []


def test_technicians_may_not_list_accounts(client, staff, make_staff):
    staff.login(make_staff("technician"))
    assert client.get("/staff/accounts").status_code == 403


# --- Bounded work ------------------------------------------------------------------------------


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


def test_the_list_takes_the_same_queries_at_2_and_14_accounts(
    app, client, db, office, make_staff, make_account
):
    sellers = [make_staff("sales", name=f"S{n}") for n in range(3)]
    urls = (
        "/staff/accounts",
        "/staff/accounts?q=customer",
        "/staff/accounts?sort=first_visit",
        "/staff/accounts?sort=created&status=link_sent",
        "/staff/",
    )

    def add(start, n):
        for i in range(start, start + n):
            account = make_account(
                sellers[i % 3], customer_name=f"Customer {i}", customer_email=f"c{i}@example.com"
            )
            send_welcome(db, account, "system")
        db.commit()

    add(0, 2)
    small = {url: _count_queries(app, client, url) for url in urls}
    add(2, 12)
    large = {url: _count_queries(app, client, url) for url in urls}
    assert large == small, (small, large)


# --- The pipeline counts the database keeps ------------------------------------------------------


def _plain_counts(db, salesperson_id=None):
    query = select(Account.status, func.count()).where(Account.deleted_at.is_(None)).group_by(Account.status)
    if salesperson_id is not None:
        query = query.where(Account.salesperson_id == salesperson_id)
    return {status: n for status, n in db.execute(query).all()}


def test_pipeline_counts_follow_every_change_like_a_plain_count(db, make_staff, make_account):
    sam, kim = make_staff("sales", name="Sam"), make_staff("sales", name="Kim")
    office = make_staff("office")
    accounts = [make_account(sam if n % 2 else kim, customer_email=f"p{n}@example.com") for n in range(6)]
    now = datetime.now(timezone.utc)

    def check():
        db.commit()
        for user, own in ((office, None), (sam, sam.id), (kim, kim.id)):
            counted = pipeline.pipeline(db, user, now).by_status
            assert {s: n for s, n in counted.items() if n} == _plain_counts(db, own)

    check()
    send_welcome(db, accounts[0], "system")
    send_welcome(db, accounts[1], "system")
    check()
    accounts[1].status = "signed"
    accounts[2].salesperson_id = sam.id  # moves between salespeople
    check()
    accounts[3].deleted_at = now  # leaves every count
    accounts[4].salesperson_id = None
    check()
    accounts[3].deleted_at = None
    accounts[4].status, accounts[4].salesperson_id = "opened", kim.id
    check()
    before = set(
        db.execute(
            select(AccountCount.salesperson_id, AccountCount.status, AccountCount.accounts).where(
                AccountCount.accounts > 0
            )
        ).all()
    )
    pipeline.recount(db)
    db.commit()
    after = set(
        db.execute(select(AccountCount.salesperson_id, AccountCount.status, AccountCount.accounts)).all()
    )
    assert after == before


def test_pipeline_counts_on_the_dashboard_are_scoped(client, staff, db, three):
    staff.login(three["kim"])
    page = client.get("/staff/").get_data(as_text=True)
    assert '<span class="tile-number">1</span> <span class="tile-label">Link sent</span>' in page
    assert '<span class="tile-number">0</span> <span class="tile-label">Draft</span>' in page
    assert db.scalar(select(func.count()).select_from(StaffUser)) >= 2
