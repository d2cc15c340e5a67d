"""The load benchmark's reference pages (bench/bench_app.py) work against the test app's
database, so the ratios bench/load.py prints are against a peer that does its job."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from bench.bench_app import (
    HELLO,
    PEER_EXTENSION,
    PeerAnswer,
    add_bench_routes,
    create_peer_tables,
    drop_peer_tables,
)
from tests.conftest import count_rows, form_fields


@pytest.fixture
def bench(app: Flask) -> Iterator[Flask]:
    """The test app with the benchmark's routes, and the peer's table (dropped afterwards: the
    PostgreSQL test database must keep the portal's tables only)."""
    add_bench_routes(app)
    engine = app.extensions["portal.engine"]
    create_peer_tables(engine)
    yield app
    app.extensions[PEER_EXTENSION].extensions["peer.engine"].dispose()
    drop_peer_tables(engine)


def test_the_peer_page_shows_an_account_and_records_its_answers(  # type: ignore[no-untyped-def]
    bench, client, db: Session, make_account
) -> None:
    account = make_account(customer_name="Petra Peer")
    url = f"/bench/peer/accounts/{account.id}"
    assert client.get("/bench/hello").get_data(as_text=True) == HELLO

    page = client.get(url)
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "Welcome, Petra Peer" in body
    assert all(item.promised_value in body for item in account.items)

    before = count_rows(db, PeerAnswer)
    posted = client.post(
        url, data={**form_fields(body), "answer": "no", "comment": "Thursdays suit us better"}
    )
    assert posted.status_code == 302 and posted.headers["Location"].endswith(url)
    assert count_rows(db, PeerAnswer) == before + len(account.items)

    again = client.get(url).get_data(as_text=True)
    assert "Your answers so far" in again and "Thursdays suit us better" in again
    assert client.get(f"/bench/peer/accounts/{account.id + 1000}").status_code == 404


def test_a_refused_peer_post_shows_why_and_inserts_nothing(  # type: ignore[no-untyped-def]
    bench, client, db: Session, make_account
) -> None:
    account = make_account()
    url = f"/bench/peer/accounts/{account.id}"
    hidden = form_fields(client.get(url).get_data(as_text=True))
    before = count_rows(db, PeerAnswer)

    unanswered = client.post(url, data={**hidden, "comment": "no answer chosen"})
    assert unanswered.status_code == 400
    assert "This field is required." in unanswered.get_data(as_text=True)
    assert client.post(url, data={"answer": "yes"}).status_code == 400  # no CSRF token
    assert count_rows(db, PeerAnswer) == before
