"""The staff navigation shows each role exactly what it may use, and whatever it leaves out is
refused when asked for directly."""

from __future__ import annotations

import re

import pytest

from portal.staff.navigation import NAV

# What each role may use, by the product's roles (not read back from the code under test).
EXPECTED = {
    "admin": ["Dashboard", "Accounts", "Inbox", "Day list", "New handoff", "Reports", "Settings", "Staff"],
    "office": ["Dashboard", "Accounts", "Inbox", "Day list", "New handoff", "Reports"],
    "sales": ["Dashboard", "Accounts", "Inbox", "Day list", "New handoff"],
    "technician": ["Day list"],
}


def _nav(page: str) -> list[tuple[str, str]]:
    nav = page.split('<nav class="staff-nav"', 1)[1].split("</nav>", 1)[0]
    links = re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', nav)
    return [(label.strip(), href) for href, label in links if label.strip() != "Password"]


def _built(app, labels: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    """Entries whose page exists in this build (the accounts list may come from another change)."""
    present = {entry.label for entry in NAV if entry.endpoint in app.view_functions}
    return [label for label in labels if label in present]


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_each_role_sees_exactly_its_entries_and_each_one_opens(app, client, staff, make_staff, role):
    staff.login(make_staff(role))
    entries = _nav(client.get("/staff/day").get_data(as_text=True))
    assert [label for label, _ in entries] == _built(app, EXPECTED[role])
    for label, href in entries:
        assert client.get(href).status_code == 200, label


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_every_entry_a_role_does_not_see_is_refused_when_asked_for_directly(
    app, client, staff, make_staff, role
):
    staff.login(make_staff(role))
    hidden = [
        entry for entry in NAV if entry.endpoint in app.view_functions and entry.label not in EXPECTED[role]
    ]
    assert hidden or role == "admin"
    with app.test_request_context():
        from flask import url_for

        urls = {entry.label: url_for(entry.endpoint) for entry in hidden}
    for label, url in urls.items():
        response = client.get(url)
        if label == "Dashboard":
            # The technician's start page is the day list: the dashboard sends them there.
            assert response.status_code == 302 and response.headers["Location"].endswith("/staff/day")
            assert "Onboarding" not in client.get(url, follow_redirects=True).get_data(as_text=True)
        else:
            assert response.status_code in (403, 404), f"{role} reached {label} at {url}"


def test_the_current_page_is_marked_and_signed_out_pages_have_no_navigation(client, staff, make_staff):
    assert 'class="staff-nav"' not in client.get("/staff/login").get_data(as_text=True)
    staff.login(make_staff("office"))
    page = client.get("/staff/differences").get_data(as_text=True)
    assert re.search(r'<a href="/staff/differences" aria-current="page">Inbox</a>', page)
    assert page.count('aria-current="page"') == 1


def test_an_entry_whose_page_is_not_in_this_build_is_left_out(app, client, staff, make_staff):
    """The nav skips endpoints that are not registered instead of failing every page."""
    staff.login(make_staff("admin"))
    # A page that exists goes missing: every page still renders, without its entry.
    app.view_functions.pop("staff.report_page")
    response = client.get("/staff/day")
    assert response.status_code == 200
    assert "Reports" not in [label for label, _ in _nav(response.get_data(as_text=True))]
