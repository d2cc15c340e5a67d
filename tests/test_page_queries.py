"""Bounded work on the pages the load benchmark measures (issue 15): the customer's step pages
and the office's differences page take the same number of queries however many promises an
account has or however many accounts differ (no query per item or per row)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import event

from portal import confirmations, differences
from portal.db import unit_of_work
from portal.handoffs import Promise
from portal.onboarding import send_welcome
from tests.test_welcome import answer_all, open_link, token_of


def _statements(app, work):
    statements: list[str] = []
    engine = app.extensions["portal.engine"]
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        work()
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    return len(statements)


def _promises(n: int) -> list[Promise]:
    """n promises of each step's kinds, labelled so the page shows each one."""
    promises = [Promise("visit_day", "Friday"), Promise("billing", "Card autopay")]
    for i in range(n):
        promises += [
            Promise("gate_access", f"Gate {i}, code 44{i:02}", label=f"Gate {i}"),
            Promise("safety", f"Safety note {i}", label=f"Safety {i}"),
            Promise("equipment", f"Equipment promise {i}", label=f"Equipment {i}"),
        ]
    return promises


STEPS = ("welcome", "schedule", "access", "promises", "billing")


@pytest.mark.parametrize("step", STEPS)
def test_a_step_page_and_its_answer_take_the_same_queries_at_2_and_14_promises(app, db, make_account, step):
    counts = []
    for n in (2, 14):
        account = make_account(
            customer_email=f"many{n}@example.com", customer_name=f"Many {n}", promises=_promises(n)
        )
        path = "/welcome/t/" + token_of(send_welcome(db, account, "system").url)
        db.commit()
        client = app.test_client()
        open_link(client, path)
        url = f"/welcome/step/{step}"
        pages: list[str] = []

        def show(url: str = url, client=client, pages=pages) -> None:
            response = client.get(url)
            assert response.status_code == 200, response.status_code
            pages.append(response.get_data(as_text=True))

        shown = _statements(app, show)
        page = pages[0]
        assert page.count('class="answer') == (0 if step == "welcome" else len(_items_of(account, step)))

        def answer(url: str = url, client=client, page=page) -> None:
            response = client.post(url, data=answer_all(page))
            assert response.status_code == 302, response.get_data(as_text=True)

        answered = _statements(app, answer)
        db.expire_all()
        progress = confirmations.progress(db, account)
        step_status = progress.get(step)
        assert step_status is not None and step_status.done
        counts.append((shown, answered))
    assert counts[0] == counts[1], counts


def _items_of(account, step):
    return [item for item in account.items if item.kind in confirmations.STEP_BY_NAME[step].kinds]


def test_the_differences_page_takes_the_same_queries_at_2_and_14_accounts(
    app, client, db, staff, make_staff, make_account
):
    office = make_staff("office")
    sellers = [make_staff("sales", name=f"Seller {n}") for n in range(3)]
    staff.login(office)
    counts = []
    made = 0
    for n in (2, 14):
        while made < n:
            account = make_account(
                sellers[made % 3],
                customer_name=f"Differs {made}",
                customer_email=f"d{made}@example.com",
                first_visit=date.today() + timedelta(days=2 + made),
            )
            send_welcome(db, account, "system")
            gate, equipment = (
                next(i for i in account.items if i.kind == kind) for kind in ("gate_access", "equipment")
            )
            confirmations.record_answers(
                db,
                account,
                [
                    confirmations.Answer(gate, "changed", f"Back gate {made}", "new code"),
                    confirmations.Answer(equipment, "disputed", None, "I was told otherwise"),
                ],
            )
            db.commit()
            made += 1
            # Every other one assigned to a colleague: rows name their assignee and their seller.
            if made % 2:
                with unit_of_work(db):
                    differences.assign(db, gate.id, office, sellers[made % 3], "call them")
        pages: list[str] = []

        def show(pages=pages) -> None:
            response = client.get("/staff/differences")
            assert response.status_code == 200
            pages.append(response.get_data(as_text=True))

        counts.append(_statements(app, show))
        assert pages[0].count('class="card difference"') == min(2 * n, differences.PER_PAGE)
        assert "assigned to Seller" in pages[0] and "Promised by Seller" in pages[0]
    assert counts[0] == counts[1], counts
