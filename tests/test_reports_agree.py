"""Reports count the same signed accounts as the dashboard and the funnel. An account whose link
went out without a `link_sent` entry (the demo link `make run` prints) used to drop out of the
median: "0.0 days over 1 signed account" beside a funnel of 2 signed."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from portal import links
from portal.db import utcnow
from portal.onboarding import send_welcome
from tests.conftest import sign_as_shown


def test_time_to_sign_covers_every_signed_account_the_dashboard_counts(
    client, db, staff, make_staff, make_account
):
    emailed = make_account(customer_name="Ann Emailed", customer_email="ann@example.com")
    demo_link = make_account(customer_name="Dana Demo", customer_email="dana@example.com")
    waiting = make_account(customer_name="Will Waiting", customer_email="will@example.com")
    send_welcome(db, emailed, "system")
    send_welcome(db, waiting, "system")
    links.issue_welcome_link(demo_link)  # what `flask demo-info` does: no link_sent entry
    demo_link.created_at = utcnow() - timedelta(days=4)  # handed off four days before signing
    db.commit()
    sign_as_shown(db, emailed, "Ann Emailed")
    sign_as_shown(db, demo_link, "Dana Demo")
    db.commit()

    staff.login(make_staff("admin"))
    dashboard = client.get("/staff/").get_data(as_text=True)
    assert '<span class="tile-number">2</span> <span class="tile-label">Signed</span>' in dashboard
    report = client.get("/staff/reports").get_data(as_text=True)
    assert "over 2 signed accounts" in report
    assert "2.0 days" in report  # the median of 0.0 (signed at once) and 4.0 (from the handoff)
    rows = list(csv.reader(io.StringIO(client.get("/staff/reports.csv").get_data(as_text=True))))
    assert ["funnel", "Signed", "2", "", ""] in rows
    assert ["time_to_sign", "median_days", "2", "", "2.0"] in rows
