"""Each account's technician: the office sets or clears it on the account page (the record says
so), a technician's day list leads with their own visits, the brief names the technician, and
the reports by technician go by the assignment before any guess."""

from __future__ import annotations

import re
from datetime import date, timedelta
from html import unescape

import pytest

from portal import first_visit, follow_through, record, reports, technicians
from portal.company import company_today
from portal.models import Account, PromiseTask, RecordEntry
from portal.onboarding import send_welcome
from tests.conftest import count_rows, form_fields

DAY = date(2030, 3, 4)  # far from today: the day list is asked for it by date


def _text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def _fresh(db, account_id: int) -> Account:
    db.expire_all()
    return db.get(Account, account_id)


def _technician_form(page: str, account_id: int) -> dict[str, str]:
    action = f"/staff/accounts/{account_id}/technician"
    start = page.index(f'action="{action}"')
    return form_fields(page[start : page.index("</form>", start)])


def test_the_office_assigns_and_clears_the_technician_and_the_record_says_so(
    client, db, staff, make_staff, make_account
):
    tom = make_staff("technician", name="Tom Tech")
    gone = make_staff("technician", name="Gone Tech")
    gone.active = False
    db.commit()
    account = make_account()
    office = make_staff("office")
    staff.login(office)
    path = f"/staff/accounts/{account.id}"
    page = client.get(path).get_data(as_text=True)
    assert "Tom Tech" in page and "Gone Tech" not in page  # only active technicians are offered

    response = client.post(
        f"{path}/technician", data={**_technician_form(page, account.id), "technician_id": tom.id}
    )
    assert response.status_code == 302
    assert _fresh(db, account.id).technician_id == tom.id
    [entry] = [e for e in record.entries_for(db, account.id) if e.event == "technician_assigned"]
    assert entry.confirmed_value == "Tom Tech" and entry.actor == f"staff:{office.id}"
    shown = _text(client.get(path).get_data(as_text=True))
    assert "Technician: Tom Tech" in shown  # the record's story, in words

    page = client.get(path).get_data(as_text=True)
    cleared = client.post(
        f"{path}/technician", data={**_technician_form(page, account.id), "technician_id": ""}
    )
    assert cleared.status_code == 302
    assert _fresh(db, account.id).technician_id is None
    entries = [e for e in record.entries_for(db, account.id) if e.event == "technician_assigned"]
    assert [e.confirmed_value for e in entries] == ["Tom Tech", technicians.NOBODY_YET]


@pytest.mark.parametrize("who", ["salesperson", "inactive", "unknown", "garbage"])
def test_a_bad_technician_is_refused_with_nothing_changed(client, db, staff, make_staff, make_account, who):
    tom = make_staff("technician", name="Tom Tech")
    inactive = make_staff("technician", name="Ina Tech")
    inactive.active = False
    db.commit()
    account = make_account()
    office = make_staff("office")
    technicians.assign(db, account, tom.id, office)
    db.commit()
    chosen = {
        "salesperson": str(account.salesperson_id),
        "inactive": str(inactive.id),
        "unknown": "999999",
        "garbage": "tom",
    }[who]
    before = count_rows(db, RecordEntry)
    staff.login(office)
    path = f"/staff/accounts/{account.id}"
    page = client.get(path).get_data(as_text=True)
    response = client.post(
        f"{path}/technician", data={**_technician_form(page, account.id), "technician_id": chosen}
    )
    assert response.status_code == 400
    assert technicians.REFUSED in _text(response.get_data(as_text=True))
    assert _fresh(db, account.id).technician_id == tom.id and count_rows(db, RecordEntry) == before


def test_sales_may_not_assign_and_another_salespersons_account_is_404(
    client, db, staff, make_staff, make_account
):
    tom = make_staff("technician", name="Tom Tech")
    sam, kim = make_staff("sales", name="Sam"), make_staff("sales", name="Kim")
    own, other = make_account(sam), make_account(kim)
    before = count_rows(db, RecordEntry)
    staff.login(sam)
    page = client.get(f"/staff/accounts/{own.id}").get_data(as_text=True)
    assert f"/staff/accounts/{own.id}/technician" not in page  # no form offered
    data = {"form_id": "a-fresh-form-id-0123456789", "technician_id": str(tom.id)}
    assert client.post(f"/staff/accounts/{own.id}/technician", data=data).status_code == 403
    assert client.get(f"/staff/accounts/{other.id}").status_code == 404
    assert _fresh(db, own.id).technician_id is None and count_rows(db, RecordEntry) == before


@pytest.fixture
def day(db, make_staff, make_account):
    """Three first visits on DAY: Alpha's is Tia's, Beta's Tom's, Gamma's nobody's yet."""
    tia, tom = make_staff("technician", name="Tia Tech"), make_staff("technician", name="Tom Tech")
    office = make_staff("office", name="Olive Office")
    made = {}
    for name, address in (("Alpha", "1 Alpha Rd"), ("Beta", "2 Beta Rd"), ("Gamma", "3 Gamma Rd")):
        made[name] = make_account(
            customer_name=f"{name} Customer",
            customer_email=f"{name.lower()}@example.com",
            service_address=address,
            first_visit=DAY,
        )
    technicians.assign(db, made["Alpha"], tia.id, office)
    technicians.assign(db, made["Beta"], tom.id, office)
    db.commit()
    return {"tia": tia, "tom": tom, "office": office, **made}


def _order(page: str) -> list[str]:
    """The headings and the customers of the day list, in page order."""
    return re.findall(r'class="day-group">([^<]+)<|/brief">(\w+) Customer</a>', page)


def test_a_technicians_own_visits_lead_the_day_list_each_naming_its_technician(client, staff, day):
    url = f"/staff/day?date={DAY.isoformat()}"
    staff.login(day["tom"])
    page = client.get(url).get_data(as_text=True)
    assert [a or b for a, b in _order(page)] == ["Your visits", "Beta", "Other visits", "Alpha", "Gamma"]
    text = _text(page)
    assert text.count("Technician: Tom Tech") == 1 and "Technician: Tia Tech" in text
    assert "No technician yet" in text

    staff.logout()
    staff.login(day["tia"])
    page = client.get(url).get_data(as_text=True)
    assert [a or b for a, b in _order(page)] == ["Your visits", "Alpha", "Other visits", "Beta", "Gamma"]

    staff.logout()
    staff.login(day["office"])
    page = client.get(url).get_data(as_text=True)
    assert [a or b for a, b in _order(page)] == ["Alpha", "Beta", "Gamma"]  # one list, by address
    text = _text(page)
    assert "Technician: Tia Tech" in text and "Technician: Tom Tech" in text and "No technician yet" in text


def test_the_brief_names_the_assigned_technician(client, staff, day):
    staff.login(day["tom"])
    assert "Technician: Tom Tech" in _text(
        client.get(f"/staff/accounts/{day['Beta'].id}/brief").get_data(as_text=True)
    )
    gamma = _text(client.get(f"/staff/accounts/{day['Gamma'].id}/brief").get_data(as_text=True))
    assert "Technician: nobody yet" in gamma


def test_feedback_by_technician_goes_by_the_assignment_before_the_last_writer(db, make_staff, make_account):
    theo, tom = make_staff("technician", name="Theo Tech"), make_staff("technician", name="Tom Tech")
    office = make_staff("office")
    yesterday = company_today() - timedelta(days=1)
    assigned, guessed, later = (make_account(first_visit=yesterday) for _ in range(3))
    for account in (assigned, guessed, later):
        send_welcome(db, account, "system")
        record.append(db, account, event="note", actor=f"staff:{theo.id}", note="Visited")
    technicians.assign(db, assigned, tom.id, office)
    db.commit()
    rows = [first_visit.ask(db, a) for a in (assigned, guessed, later)]
    db.commit()
    assert [row.technician_id for row in rows] == [tom.id, theo.id, theo.id]
    technicians.assign(db, later, tom.id, office)  # assigned after the email went out
    db.commit()
    by_tech = {c.label: c.no_answer for c in reports.first_visit_feedback(db, office, "technician")}
    assert by_tech == {"Tom Tech": 2, "Theo Tech": 1}


def test_kept_on_time_counts_a_technicians_task_for_the_assigned_technician(db, make_staff, make_account):
    tia, tom = make_staff("technician", name="Tia Tech"), make_staff("technician", name="Tom Tech")
    office = make_staff("office", name="Olive Office")
    visit = company_today() - timedelta(days=1)
    assigned, unassigned = make_account(first_visit=visit), make_account(first_visit=visit)
    technicians.assign(db, assigned, tom.id, office)
    db.commit()

    def first_open_task(account):
        return (
            db.query(PromiseTask).filter_by(account_id=account.id, status="open", owner="technician").first()
        )

    done_for_tom, done_unassigned = first_open_task(assigned), first_open_task(unassigned)
    assert done_for_tom is not None and done_unassigned is not None
    follow_through.mark_done(db, done_for_tom, tia, "", visit)  # Tia stood in on Tom's account
    follow_through.mark_done(db, done_unassigned, tia, "", visit)
    db.commit()
    by_tech = {k.label: k.due for k in follow_through.kept_on_time(db, office, company_today()).by_technician}
    # Tia did both; the assigned account's task is Tom's, only the unassigned one's is Tia's.
    assert by_tech == {"Tia Tech": 1, "Tom Tech": 1}
