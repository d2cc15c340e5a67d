"""Issue 18's reports on a seeded set with known answers: first-visit feedback by salesperson and
technician, time from sale to acknowledgment, early churn with reasons; page (SVG with the
numbers in text) and CSV."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from portal import first_visit, handback, record, reports
from portal.company import company_today
from portal.db import utcnow
from portal.onboarding import send_welcome


@pytest.fixture
def seeded(db, make_staff, make_account):
    sam = make_staff("sales", name="Sam Seller")
    kim = make_staff("sales", name="Kim Closer")
    theo = make_staff("technician", name="Theo Tech")
    office = make_staff("office", name="Olive Office")
    yesterday = company_today() - timedelta(days=1)

    def account(seller, name, days_old, visited=True):
        found = make_account(
            seller, first_visit=yesterday if visited else company_today() + timedelta(days=9)
        )
        found.customer.name = name
        found.created_at = utcnow() - timedelta(days=days_old)
        send_welcome(db, found, "system")
        db.commit()
        return found

    sam_yes, sam_not_quite, sam_silent = account(sam, "A", 2), account(sam, "B", 4), account(sam, "C", 0)
    kim_yes = account(kim, "D", 1)
    for worked in (sam_yes, sam_not_quite):  # Theo worked these first visits
        record.append(db, worked, event="note", actor=f"staff:{theo.id}", note="Visited")
    db.commit()
    rows = {a.id: first_visit.ask(db, a) for a in (sam_yes, sam_not_quite, sam_silent, kim_yes)}
    db.commit()
    first_visit.answer(db, rows[sam_yes.id], "yes", "")
    first_visit.answer(db, rows[sam_not_quite.id], "not_quite", "Gate left open")
    first_visit.answer(db, rows[kim_yes.id], "yes", "")
    for acknowledged in (sam_yes, sam_not_quite, kim_yes):  # 2, 4 and 1 days after the sale
        handback.acknowledge(db, acknowledged, office)
    db.commit()

    churned_kim = account(kim, "E", 30, visited=False)
    long_ago = account(sam, "F", 120, visited=False)
    churned_sam = account(sam, "G", 10, visited=False)
    handback.cancel(db, churned_kim, office, "Moved away")
    handback.cancel(db, long_ago, office, "Retired the pool")
    handback.cancel(db, churned_sam, office, "=Price too high")
    db.commit()
    return office


def test_feedback_counts_by_salesperson_and_technician(db, seeded):
    by_person = {
        c.label: (c.yes, c.not_quite, c.no_answer)
        for c in reports.first_visit_feedback(db, seeded, "salesperson")
    }
    assert by_person == {"Sam Seller": (1, 1, 1), "Kim Closer": (1, 0, 0)}
    by_tech = {
        c.label: (c.yes, c.not_quite, c.no_answer)
        for c in reports.first_visit_feedback(db, seeded, "technician")
    }
    assert by_tech == {"Theo Tech": (1, 1, 0), "Not recorded": (1, 0, 1)}


def test_median_days_from_sale_to_acknowledgment(db, seeded):
    overall, by_person = reports.days_to_acknowledge(db, seeded)
    assert overall is not None and (overall.days, overall.count) == (2.0, 3)
    assert [(m.label, m.days, m.count) for m in by_person] == [("Sam Seller", 3.0, 2), ("Kim Closer", 1.0, 1)]


def test_early_churn_lists_cancellations_within_90_days_with_reasons(db, seeded):
    churned, by_person = reports.early_churn(db, seeded)
    assert [(c.customer, c.salesperson, c.days, c.reason) for c in churned] == [
        ("G", "Sam Seller", 10, "=Price too high"),
        ("E", "Kim Closer", 30, "Moved away"),
    ]
    assert by_person == [("Kim Closer", 1), ("Sam Seller", 1)]


def test_the_reports_page_and_csv_show_each_section(client, staff, seeded):
    staff.login(seeded)
    page = client.get("/staff/reports").get_data(as_text=True)
    feedback = page.split("By salesperson</h2>", 1)[1].split("</section>", 1)[0]
    assert "<svg" in feedback and "50.0 % yes" in feedback and "100.0 % yes" in feedback
    assert "<td>1</td><td>1</td><td>1</td><td>3</td>" in feedback  # Sam: yes, not quite, no answer, asked
    technician = page.split("By technician</h2>", 1)[1].split("</section>", 1)[0]
    assert "Theo Tech" in technician and "Not recorded" in technician
    acknowledged = page.split("Time from sale to acknowledgment", 1)[1].split("</section>", 1)[0]
    assert "2.0 days" in acknowledged and "3.0 days (2)" in acknowledged and "<svg" in acknowledged
    churn = page.split("Early churn", 1)[1].split("</section>", 1)[0]
    assert "Moved away" in churn and "=Price too high" in churn and "Retired the pool" not in churn

    rows = list(csv.reader(io.StringIO(client.get("/staff/reports.csv").get_data(as_text=True))))
    assert ["feedback_by_person", "Sam Seller", "2", "1", "50.0"] in rows
    assert ["feedback_by_person_no_answer", "Sam Seller", "1", "", ""] in rows
    assert ["feedback_by_technician", "Theo Tech", "2", "1", "50.0"] in rows
    assert ["time_to_acknowledge", "Everyone", "3", "", "2.0"] in rows
    assert ["time_to_acknowledge", "Sam Seller", "2", "", "3.0"] in rows
    assert ["early_churn", "Kim Closer", "1", "", ""] in rows
    assert ["early_churn_account", "G (Sam Seller)", "10", "", "'=Price too high"] in rows
    assert not any("Retired the pool" in cell for row in rows for cell in row)
