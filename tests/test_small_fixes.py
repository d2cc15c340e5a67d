"""Small things staff met on every page: the new-invoice form starts from the plan's price, and
there is a favicon (no 404 for /favicon.ico, a <link rel=icon> in every layout)."""

from __future__ import annotations

from datetime import datetime
from io import BytesIO
from zoneinfo import ZoneInfo

from PIL import Image
from sqlalchemy import select

from portal.models import Invoice
from tests.conftest import count_rows
from tests.test_fuzz import fresh_ids, page_form


def test_the_new_invoice_form_starts_with_the_plan_and_its_price(client, db, staff, make_staff, make_account):
    account = make_account(plan="Weekly full service", price_cents=16550)
    staff.login(make_staff("office"))
    page = client.get(f"/pay/staff/accounts/{account.id}/invoices/new").get_data(as_text=True)
    month = datetime.now(ZoneInfo("America/Phoenix")).strftime("%B %Y")  # the company's today
    assert f'name="lines-0-detail" type="text" value="Weekly full service, {month}"' in page
    assert 'name="lines-0-amount" placeholder="165.00" type="text" value="165.50"' in page
    assert 'name="lines-1-amount" placeholder="165.00" type="text" value=""' in page

    # Submitted as it comes, it bills the plan's price.
    assert count_rows(db, Invoice) == 0
    response = client.post(
        f"/pay/staff/accounts/{account.id}/invoices/new", data=fresh_ids(page_form(page, ""))
    )
    assert response.status_code == 302
    invoice = db.scalars(select(Invoice)).one()
    assert invoice.total_cents == 16550
    assert invoice.lines[0].description.startswith("Weekly full service, ")


def test_favicon_ico_is_served_and_every_layout_links_an_icon(client, staff, make_staff):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    body = response.data
    response.close()
    with Image.open(BytesIO(body)) as icon:
        assert icon.format == "ICO"
    link = '<link rel="icon" href="/static/favicon.ico"'
    assert link in client.get("/").get_data(as_text=True)
    assert link in client.get("/staff/login").get_data(as_text=True)  # the staff layout
    assert link in client.get("/welcome/t/not-a-token").get_data(as_text=True)  # the customer layout
