"""Where a page's time goes: the load benchmark's pages, in process, through the test client.

    .venv/bin/python bench/profile_pages.py [--postgres URL] [--pages bare,welcome,post,differences]
        [--requests 300] [--batches 10] [--accounts 300] [--profile DIR]

It seeds a database as bench/load.py does, signs in a customer and the office user through the
pages, then requests each page --requests times, in --batches turns with the other pages, and
prints the CPU milliseconds per request of its quickest batch (time.process_time, this process
only), that as a multiple of the bare route's, and the SQL statements per request. With --profile, it
writes a pyinstrument HTML profile per page into DIR (pip install pyinstrument). The quick loop
for working on a page's cost; bench/load.py is the measurement that counts.
"""

from __future__ import annotations

import argparse
import itertools
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import event  # noqa: E402

from bench import load  # noqa: E402
from bench.bench_app import PEER_EXTENSION, add_bench_routes  # noqa: E402
from portal import create_app  # noqa: E402


def _hidden(body: str) -> dict[str, str]:
    return dict(
        re.findall(r'<input[^>]*name="([^"]+)"[^>]*type="hidden"[^>]*value="([^"]*)"', body)
        + re.findall(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', body)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", metavar="URL")
    parser.add_argument("--pages", default="bare,peer,welcome,schedule,post,differences")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--customers", type=int, default=32, help="the posts go round them")
    parser.add_argument("--batches", type=int, default=10, help="turns the pages take")
    parser.add_argument("--profile", metavar="DIR")
    parser.add_argument("--show-sql", action="store_true", help="print one request's statements per page")
    parser.add_argument(
        "--cprofile", type=int, metavar="N", help="print each page's top N functions by own time"
    )
    args = parser.parse_args()

    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="handoff-prof-")))
        database = stack.enter_context(
            load.postgres_database(args.postgres) if args.postgres else load.sqlite_database(workdir)
        )
        seeded = load.seed(database, workdir, args.accounts, customers=args.customers)
        links = seeded.links
        app = create_app(
            {
                "DATABASE_URL": database,
                "SECRET_KEY": load.SECRET_KEY,
                "PUBLIC_BASE_URL": "http://127.0.0.1",
                "SESSION_COOKIE_SECURE": False,
                "RATELIMIT_ENABLED": False,
            }
        )
        add_bench_routes(app)

        statements = [0]
        shown: list[str] = []
        engine = app.extensions["portal.engine"]

        def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            statements[0] += 1
            shown.append(" ".join(statement.split())[:300])

        event.listen(engine, "before_cursor_execute", count)
        peer_engine = app.extensions[PEER_EXTENSION].extensions["peer.engine"]
        event.listen(peer_engine, "before_cursor_execute", count)

        # The posts go round several customers (as in bench/load.py), so no one account's
        # record grows to thousands of entries during the run.
        posting = []
        for link in links:
            client = app.test_client()
            assert client.get(link).status_code == 302
            page = client.get("/welcome/step/schedule").get_data(as_text=True)
            posting.append(
                (client, _hidden(page), {name: "yes" for name in re.findall(r'name="(i\d+_answer)"', page)})
            )
        customer = posting[0][0]
        turn = itertools.count()
        office = app.test_client()
        login = _hidden(office.get("/staff/login").get_data(as_text=True))
        signed_in = office.post(
            "/staff/login", data={**login, "email": load.OFFICE_EMAIL, "password": load.OFFICE_PASSWORD}
        )
        assert signed_in.status_code == 302, signed_in.status_code

        def post() -> Any:
            # A fresh one-time form id per post (as bench/load.lua does), so each one writes.
            client, fields, answers = posting[next(turn) % len(posting)]
            return client.post(
                "/welcome/step/schedule", data={**fields, **answers, "form_id": secrets.token_urlsafe(18)}
            )

        peer_turn = itertools.count()

        def peer() -> Any:
            # The peer read, round the customers' accounts (as bench/load.py's peer row).
            account_id = seeded.account_ids[next(peer_turn) % len(seeded.account_ids)]
            return customer.get(f"/bench/peer/accounts/{account_id}")

        pages: dict[str, tuple[Callable[[], Any], int]] = {
            "bare": (lambda: customer.get("/bench/hello"), 200),
            "peer": (peer, 200),
            "welcome": (lambda: customer.get("/welcome/step/welcome"), 200),
            "schedule": (lambda: customer.get("/welcome/step/schedule"), 200),
            "post": (post, 302),
            "differences": (lambda: office.get("/staff/differences"), 200),
        }
        names = args.pages.split(",")
        for name in names:
            request, expect = pages[name]
            for _ in range(20):
                response = request()
                assert response.status_code == expect, (
                    name,
                    response.status_code,
                    response.get_data(as_text=True)[:3000],
                )
        if args.show_sql:
            for name in names:
                shown.clear()
                pages[name][0]()
                print(f"-- {name}: {len(shown)} statements")
                for line in shown:
                    print("   ", line)
        # Pages take turns in batches and each keeps its quickest batch: on a shared machine
        # the CPU's speed drifts from second to second, and the least disturbed batch is the
        # one to compare.
        best = {name: float("inf") for name in names}
        sql = {name: 0.0 for name in names}
        batch = max(1, args.requests // args.batches)
        for _ in range(args.batches):
            for name in names:
                request, _expect = pages[name]
                statements[0] = 0
                shown.clear()
                started = time.process_time()
                for _ in range(batch):
                    request()
                best[name] = min(best[name], (time.process_time() - started) * 1000 / batch)
                sql[name] = statements[0] / batch
        print(f"{'page':<12} {'CPU ms':>8} {'x bare':>7} {'SQL/req':>8}")
        for name in names:
            ratio = f"{best[name] / best['bare']:>7.2f}" if "bare" in best else f"{'':>7}"
            print(f"{name:<12} {best[name]:>8.2f} {ratio} {sql[name]:>8.1f}")
        if args.profile:
            from pyinstrument import Profiler

            Path(args.profile).mkdir(parents=True, exist_ok=True)
            for name in names:
                request, _expect = pages[name]
                profiler = Profiler(interval=0.0002)
                profiler.start()
                for _ in range(args.requests):
                    request()
                profiler.stop()
                (Path(args.profile) / f"{name}.html").write_text(profiler.output_html())
                (Path(args.profile) / f"{name}.txt").write_text(
                    profiler.output_text(unicode=False, show_all=False)
                )
        if args.cprofile:
            import cProfile
            import pstats

            for name in names:
                request, _expect = pages[name]
                cprofiler = cProfile.Profile()
                cprofiler.enable()
                for _ in range(args.requests):
                    request()
                cprofiler.disable()
                print(f"\n-- {name}: {args.requests} requests, top {args.cprofile} by own time")
                pstats.Stats(cprofiler).sort_stats("tottime").print_stats(args.cprofile)
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
