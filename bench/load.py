"""Load benchmark: the portal under gunicorn (the repo's gunicorn.conf.py), driven by wrk.

    .venv/bin/python bench/load.py [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
        [--no-sqlite] [--connections 32] [--duration 10] [--warmup 3] [--rounds 5]
        [--accounts 1000] [--pages bare,pure,welcome,post,lean,differences]
        [--worker-class sync|gthread] [--workers N] [--threads N] [--connection-close]

For each database (a fresh SQLite file; with --postgres also a database bench_load_<pid> created
on that server and dropped afterwards) it migrates, seeds --accounts handoffs (a third of them
with a customer answer that differs from the promise, so the differences page has work), starts
gunicorn on a free loopback port, signs in --customers customers through their welcome links and
one office user through the login form (real HTTP, CSRF on, PORTAL_ENV=production), then
measures with wrk from a second process (bench/load.lua), each page --warmup seconds (discarded)
and then --duration seconds:

- `/bench/hello`: a bare view inside the portal app (bench/bench_app.py): the reference;
- `/bench/pure/hello`: the same view in a plain Flask app, for comparison only;
- the welcome step page (GET), round the customers (their session cookies brought up to date
  before each round, as a browser keeps the cookie a response sets: see keep_cookies_fresh);
- the confirmation POST of the "Visit schedule" step (CSRF token, customer session cookie and a
  fresh one-time form id per request, so every POST is a real write: a form id claimed and the
  answers appended to the service record); the rows written are counted afterwards;
- the same POST's SQL through the raw driver, behind the portal's session and CSRF check and
  nothing else (`/bench/lean/schedule`, bench/sql_floor.py): for comparison only, what the POST
  would cost without the ORM and the form library;
- the staff differences page (GET), signed in as the office user.

The measured time is split into --rounds rounds that take turns (bare, pure, welcome, ...), so
that a change in the machine's load falls on every page alike; the figures pool the rounds.
It prints requests per second, p50 and p99 latency, errors (socket errors, timeouts and any
status other than the page's normal one), each page's throughput as a share of the bare route's
(and the spread of that share over the rounds), and the gunicorn workers' CPU time per request
with the share it implies (steadier than req/s when other processes compete for the CPUs), and
the whole machine's busy CPU per request ("all ms": workers, wrk, the database server; from
/proc/stat). Then it checks the issue's targets, and for the welcome page and the POST prints
the floor under each: its SQL alone through the raw driver (bench/sql_floor.py), as a share of
what the target allows a request (the bare route's machine CPU divided by the target share).
The gunicorn log is searched for "database is locked" and for logged server errors. wrk runs
on loopback only; every step has a time limit.

wrk is needed: `sudo apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk`.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench import sql_floor  # noqa: E402
from portal import create_app, migrate  # noqa: E402
from portal.auth import create_staff  # noqa: E402
from portal.confirmations import Answer, record_answers  # noqa: E402
from portal.db import get_db, mark_writes  # noqa: E402
from portal.demo import demo_handoff  # noqa: E402
from portal.handoffs import create_handoff  # noqa: E402
from portal.models import CompanySettings, FormSubmission, RecordEntry  # noqa: E402
from portal.onboarding import send_welcome  # noqa: E402

LUA = Path(__file__).resolve().parent / "load.lua"
SECRET_KEY = "bench-secret-key-" + "x" * 40
USER_AGENT = "handoff-bench/1.0"
OFFICE_EMAIL, OFFICE_PASSWORD = "bench-office@example.com", "bench-password-123"
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Saturday"]  # the promise is Friday
TARGETS = {"welcome": 0.50, "post": 0.25}
INFORMATION = ("pure", "lean")  # shown for comparison; no target
P99_LIMIT_MS = 100.0


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    method: str
    path: str
    expect: int
    data: str = ""  # the BENCH_DATA file: clients (cookie, csrf token, fields)


@dataclass
class Result:
    """One page's figures, pooled over its rounds."""

    scenario: Scenario
    requests: int = 0
    seconds: float = 0.0
    errors: int = 0
    unexpected: int = 0
    first_unexpected: int = 0
    socket_errors: int = 0
    samples: list[tuple[float, float]] = field(default_factory=list)  # (latency us, weight)
    round_rps: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    machine_s: float = 0.0
    detail: str = ""

    def add(self, figures: dict[str, Any]) -> None:
        self.requests += figures["requests"]
        self.cpu_s += figures.get("cpu_s", 0.0)
        self.machine_s += figures.get("machine_s", 0.0)
        self.seconds += figures["duration_us"] / 1e6
        self.round_rps.append(figures["requests"] / (figures["duration_us"] / 1e6))
        sockets = sum(figures[k] for k in ("connect", "read", "write", "timeout"))
        self.socket_errors += sockets
        self.unexpected += figures["unexpected"]
        self.first_unexpected = self.first_unexpected or figures["first_unexpected"]
        self.errors += sockets + figures["unexpected"]
        weight = figures["requests"] / len(figures["quantiles_us"])
        self.samples += [(float(q), weight) for q in figures["quantiles_us"]]

    @property
    def cpu_ms(self) -> float:
        """Server CPU per request."""
        return self.cpu_s * 1000 / self.requests if self.requests else 0.0

    @property
    def machine_ms(self) -> float:
        """Every process's CPU per request: the workers', wrk's, the database server's."""
        return self.machine_s * 1000 / self.requests if self.requests else 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, p: float) -> float:
        """From the rounds' latency distributions pooled, each weighted by its request count."""
        ordered = sorted(self.samples)
        total = sum(weight for _, weight in ordered)
        running = 0.0
        for value, weight in ordered:
            running += weight
            if running >= total * p / 100:
                return value / 1000
        return ordered[-1][0] / 1000 if ordered else 0.0


# -- the database -------------------------------------------------------------------------------


@contextmanager
def sqlite_database(workdir: Path) -> Iterator[str]:
    yield f"sqlite:///{workdir / 'bench.sqlite3'}"


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    name = f"bench_load_{os.getpid()}"
    admin = create_engine(_driver(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _driver(url: str) -> str:
    return "postgresql+psycopg://" + url.removeprefix("postgresql://") \
        if url.startswith("postgresql://") else url


def server_env(database_url: str, workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PORTAL_ENV": "production",
        "SECRET_KEY": SECRET_KEY,
        "SESSION_COOKIE_SECURE": "0",  # plain HTTP on loopback
        "DATABASE_URL": database_url,
        "PORTAL_INSTANCE_PATH": str(workdir / "instance"),
        "MAIL_BACKEND": "file",
        "MAIL_OUTBOX_DIR": str(workdir / "outbox"),
        "RATELIMIT_STORAGE_URI": "memory://",
        "PUBLIC_BASE_URL": "http://127.0.0.1",
    }


def seed(database_url: str, workdir: Path, accounts: int, customers: int) -> list[str]:
    """Migrate and seed in this process; returns the customers' welcome link paths."""
    os.environ.update({k: v for k, v in server_env(database_url, workdir).items()
                       if k in ("PORTAL_INSTANCE_PATH", "PORTAL_ENV", "SECRET_KEY")})
    app = create_app({"DATABASE_URL": database_url, "SECRET_KEY": SECRET_KEY,
                      "PUBLIC_BASE_URL": "http://127.0.0.1"})
    migrate.upgrade(app)
    links: list[str] = []
    with app.app_context():
        mark_writes()
        session = get_db()
        session.add(CompanySettings(name="Bench Pool Care", phone="+1 480 555 0100",
                                    email="hello@bench.example", brand_color="#0b5cab",
                                    readiness_checklist=["Pets secured", "Gate unlocked"]))
        create_staff(session, OFFICE_EMAIL, OFFICE_PASSWORD, "office", "Bench Office")
        sales = [create_staff(session, f"sales{n}@example.com", OFFICE_PASSWORD, "sales",
                              f"Sales {n}") for n in range(5)]
        session.commit()
        for n in range(accounts):
            data = replace(demo_handoff(), customer_name=f"Customer {n}",
                           customer_email=f"customer{n}@example.com",
                           service_address=f"{100 + n} W Palm Ln, Phoenix, AZ 85007",
                           first_visit=date.today() + timedelta(days=1 + n % 60))
            account = create_handoff(session, data, sales[n % len(sales)])
            sent = send_welcome(session, account, "system")
            if n < customers:
                links.append(urlsplit(sent.url).path)
            elif n % 3 == 0:  # customers who answered differently: the differences page lists them
                visit = next(item for item in account.items if item.kind == "visit_day")
                record_answers(session, account, [Answer(visit, "changed", DAYS[n % 5],
                                                         "Works better with my schedule")])
            if n % 100 == 99:
                session.commit()
        session.commit()
        if session.get_bind().dialect.name == "postgresql":
            # As autovacuum would soon after such a load (it might otherwise do it mid-run and
            # change the plans while they are measured): the planner's statistics.
            session.execute(text("ANALYZE"))
            session.commit()
    app.extensions["portal.engine"].dispose()
    return links


def count_writes(database_url: str) -> tuple[int, int]:
    engine = create_engine(_driver(database_url))
    with engine.connect() as conn:
        counts = (conn.scalar(select(func.count()).select_from(FormSubmission)) or 0,
                  conn.scalar(select(func.count()).select_from(RecordEntry)) or 0)
    engine.dispose()
    return counts


# -- gunicorn -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gunicorn(env: dict[str, str], port: int, log: Path,
             args: argparse.Namespace) -> Iterator[tuple[str, int]]:
    command = [str(Path(sys.executable).with_name("gunicorn")), "-c", str(ROOT / "gunicorn.conf.py")]
    if args.worker_class:
        command += ["--worker-class", args.worker_class]
    if args.workers:
        command += ["--workers", str(args.workers)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    command.append("bench.bench_app:app")
    with log.open("w") as log_file:
        server = subprocess.Popen(command, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                                  env={**env, "BIND": f"127.0.0.1:{port}"})
    try:
        _wait_healthy(port, server)
        yield " ".join(command[1:]), server.pid
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def server_cpu_seconds(master: int) -> float:
    """CPU time used so far by gunicorn's workers: the live ones, plus the ones the master has
    already reaped (recycled after max_requests). Other processes on the machine do not count,
    so CPU per request is steadier than requests per second on a busy machine."""
    def times(stat: str) -> list[int]:
        return [int(v) for v in stat.rsplit(")", 1)[1].split()[11:15]]  # utime stime cutime cstime

    total = sum(times(Path(f"/proc/{master}/stat").read_text())[2:])
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == master:
            total += sum(times(stat)[:2])
    return total / os.sysconf("SC_CLK_TCK")


def _wait_healthy(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with {server.returncode}; see its log")
        try:
            if fetch(port, "GET", "/healthz").status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("gunicorn did not answer /healthz within 30 s")


@dataclass
class Page:
    status: int
    body: str
    cookies: dict[str, str]
    location: str


def fetch(port: int, method: str, path: str, cookies: dict[str, str] | None = None,
          form: dict[str, str] | None = None) -> Page:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"User-Agent": USER_AGENT}
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    body = urlencode(form) if form is not None else None
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        jar: dict[str, str] = dict(cookies or {})
        for header in response.headers.get_all("Set-Cookie") or []:
            jar.update({k: m.value for k, m in SimpleCookie(header).items()})
        return Page(response.status, response.read().decode(), jar,
                    response.headers.get("Location", ""))
    finally:
        conn.close()


def hidden_fields(page: str) -> dict[str, str]:
    return dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*type="hidden"[^>]*value="([^"]*)"', page))


def sign_in_customers(port: int, links: list[str], data: Path) -> None:
    """Open each welcome link; keep the session cookie, its CSRF token and the schedule step's
    answers ("that's right" to every promise on it)."""
    lines = []
    for link in links:
        opened = fetch(port, "GET", link)
        assert opened.status == 302, (link, opened.status)
        step = fetch(port, "GET", "/welcome/step/schedule", opened.cookies)
        assert step.status == 200, step.status
        answers = {name: "yes" for name in re.findall(r'name="(i\d+_answer)"', step.body)}
        assert answers, "the schedule step has no promise to confirm"
        lines.append("\t".join([f"session={step.cookies['session']}",
                                hidden_fields(step.body)["csrf_token"], urlencode(answers)]))
    data.write_text("\n".join(lines) + "\n")


def keep_cookies_fresh(port: int, data: Path) -> None:
    """Do what a browser does with the cookie a response sets: wrk sends the same cookies all
    run long, and a customer session is re-signed (a new cookie) once it is a minute old, so
    after a minute every request would re-sign it. Before each round, each customer's session
    is brought up to date with one GET, outside the measured time."""
    lines = []
    for line in data.read_text().splitlines():
        cookie, rest = line.split("\t", 1)
        name, value = cookie.split("=", 1)
        page = fetch(port, "GET", "/welcome/step/welcome", {name: value})
        assert page.status == 200, page.status
        lines.append(f"{name}={page.cookies[name]}\t{rest}")
    data.write_text("\n".join(lines) + "\n")


def sign_in_office(port: int, data: Path) -> None:
    login = fetch(port, "GET", "/staff/login")
    form = {**hidden_fields(login.body), "email": OFFICE_EMAIL, "password": OFFICE_PASSWORD}
    signed_in = fetch(port, "POST", "/staff/login", login.cookies, form)
    assert signed_in.status == 302, signed_in.status
    page = fetch(port, "GET", "/staff/differences", signed_in.cookies)
    assert page.status == 200 and "Customer " in page.body, page.status
    data.write_text(f"session={signed_in.cookies['session']}\t\t\n")


# -- wrk --------------------------------------------------------------------------------------


def run_wrk(port: int, scenario: Scenario, seconds: int, run_label: str,
            args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "BENCH_METHOD": scenario.method, "BENCH_PATH": scenario.path,
           "BENCH_EXPECT": str(scenario.expect), "BENCH_DATA": scenario.data,
           "BENCH_RUN": run_label, "BENCH_UA": USER_AGENT,
           "BENCH_CLOSE": "1" if args.connection_close else "0"}
    command = ["wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{seconds}s",
               "--timeout", "5s", "-s", str(LUA), f"http://127.0.0.1:{port}{scenario.path}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60)
    drain(port)
    match = re.search(r"^BENCH_JSON (.*)$", done.stdout, re.M)
    if done.returncode != 0 or match is None:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return json.loads(match.group(1))  # type: ignore[no-any-return]


def drain(port: int) -> None:
    """Wait until the server has worked off the requests wrk left queued when it stopped, so
    they do not slow down the next page's run."""
    deadline = time.monotonic() + 60
    quick = 0
    while quick < 3 and time.monotonic() < deadline:
        started = time.monotonic()
        fetch(port, "GET", "/bench/hello")
        quick = quick + 1 if time.monotonic() - started < 0.05 else 0


def bench_database(name: str, database_url: str, workdir: Path, args: argparse.Namespace) -> bool:
    started = time.monotonic()
    links = seed(database_url, workdir, args.accounts, args.customers)
    seeded = time.monotonic() - started
    port, log = free_port(), workdir / "gunicorn.log"
    customers, office = workdir / "customers.tsv", workdir / "office.tsv"
    load_before = os.getloadavg()[0]
    with gunicorn(server_env(database_url, workdir), port, log, args) as (how, master):
        sign_in_customers(port, links, customers)
        sign_in_office(port, office)
        scenarios = [s for s in [
            Scenario("bare", "bare route /bench/hello (reference)", "GET", "/bench/hello", 200),
            Scenario("pure", "plain Flask hello (information)", "GET", "/bench/pure/hello", 200),
            Scenario("welcome", "welcome step page GET", "GET", "/welcome/step/welcome", 200,
                     str(customers)),
            Scenario("post", "confirmation POST (schedule step)", "POST", "/welcome/step/schedule",
                     302, str(customers)),
            Scenario("lean", "lean POST: raw SQL (information)", "POST", "/bench/lean/schedule",
                     302, str(customers)),
            Scenario("differences", "staff differences page GET", "GET", "/staff/differences",
                     200, str(office)),
        ] if s.key in args.pages or s.key == "bare"]
        writes_before = count_writes(database_url)
        for scenario in scenarios:  # warm-up: discarded
            run_wrk(port, scenario, args.warmup, f"w{name[:2]}{scenario.key}", args)
        # The measured time is split into rounds that take turns, so a change in the machine's
        # load (other processes) falls on every page alike rather than on one of them.
        results = {s.key: Result(s) for s in scenarios}
        seconds = max(1, round(args.duration / args.rounds))
        for number in range(args.rounds):
            for scenario in scenarios:
                label = f"m{name[:2]}{number}{scenario.key}"
                if scenario.data == str(customers):
                    keep_cookies_fresh(port, customers)
                cpu, busy = server_cpu_seconds(master), sql_floor.machine_busy_seconds()
                figures = run_wrk(port, scenario, seconds, label, args)
                figures["cpu_s"] = server_cpu_seconds(master) - cpu  # the drain included: small
                if busy is not None:
                    figures["machine_s"] = (sql_floor.machine_busy_seconds() or busy) - busy
                results[scenario.key].add(figures)
        writes_after = count_writes(database_url)
    floors = {key: sql_floor.measure(database_url, "read" if key == "welcome" else "post")
              for key in TARGETS if key in results}
    if "post" in results:
        posts = sum(results[key].requests for key in ("post", "lean") if key in results)
        results["post"].detail = (
            f"{writes_after[0] - writes_before[0]} one-time form ids claimed and "
            f"{writes_after[1] - writes_before[1]} record entries written (warm-up included) for "
            f"{posts} POSTs measured{' (the lean ones included)' if 'lean' in results else ''}")
    server_log = log.read_text()
    locked = server_log.count("database is locked")
    server_errors = len(re.findall(r"database error \(request|unhandled error \(request|Traceback",
                                   server_log))
    loads = (load_before, os.getloadavg()[0])
    ok = report(name, how, list(results.values()), locked, server_errors, seeded, loads, args)
    for key, floor in floors.items():
        if floor is not None:
            report_floor(floor, results["bare"], results[key])
    return ok


def report(name: str, how: str, results: list[Result], locked: int, server_errors: int,
           seeded: float, loads: tuple[float, float], args: argparse.Namespace) -> bool:
    bare = next(r for r in results if r.scenario.key == "bare")
    print(f"\n== {name}: gunicorn {how}")
    print(f"   wrk -t{args.wrk_threads} -c{args.connections} on loopback; per page {args.warmup} s "
          f"warm-up, then {args.rounds} rounds of {max(1, round(args.duration / args.rounds))} s "
          f"taking turns{'; Connection: close' if args.connection_close else ''}")
    print(f"   {args.accounts} accounts seeded in {seeded:.0f} s; {args.customers} customers and one "
          f"office user signed in; load average {loads[0]:.1f} before, {loads[1]:.1f} after "
          f"({os.cpu_count()} CPUs)")
    print(f"   {'page':<36}{'req/s':>7}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}{'vs bare':>8}"
          f"{'rounds':>11}{'CPU ms':>8}{'by CPU':>7}{'all ms':>7}  target")
    ok = True
    for r in results:
        share = r.rps / bare.rps if bare.rps else 0.0
        per_round = [page / ref for page, ref in zip(r.round_rps, bare.round_rps) if ref]
        spread = f"{min(per_round):.0%}-{max(per_round):.0%}" if per_round else ""
        p50, p99 = r.percentile_ms(50), r.percentile_ms(99)
        verdict = []
        target = TARGETS.get(r.scenario.key)
        if target is not None:
            verdict.append(f">= {target:.0%} {'met' if share >= target else 'MISSED'}")
            ok &= share >= target
        if r.scenario.key not in INFORMATION:
            if p99 >= P99_LIMIT_MS:
                verdict.append(f"p99 < {P99_LIMIT_MS:.0f} ms MISSED")
                ok = False
            ok &= r.errors == 0
        by_cpu = bare.cpu_ms / r.cpu_ms if r.cpu_ms else 0.0
        print(f"   {r.scenario.label:<36}{r.rps:>7.0f}{p50:>8.1f}{p99:>8.1f}{r.errors:>7}"
              f"{share:>8.0%}{spread:>11}{r.cpu_ms:>8.2f}{by_cpu:>7.0%}{r.machine_ms:>7.2f}  "
              f"{'; '.join(verdict)}".rstrip())
        if r.errors:
            print(f"      errors: {r.unexpected} answers other than {r.scenario.expect} (first: "
                  f"{r.first_unexpected}), {r.socket_errors} socket errors or timeouts")
        if r.detail:
            print(f"      {r.detail}")
    print(f"   server log: {locked} \"database is locked\", {server_errors} logged server errors")
    ok &= locked == 0 and server_errors == 0
    print(f"   targets: {'all met' if ok else 'NOT all met'}")
    return ok


def report_floor(floor: dict[str, float], bare: Result, page: Result) -> None:
    """How much of a target's budget the page's SQL alone takes (see bench/sql_floor.py). The
    budget: at the target's share of the bare route's throughput, with the cores busy either
    way, a request may cost the bare request's machine CPU divided by that share."""
    target = TARGETS[page.scenario.key]
    budget = bare.machine_ms / target
    print(f"   floor, {page.scenario.label}: its SQL alone (raw driver, one client) "
          f"{floor['machine_ms']:.2f} ms of machine CPU; the {target:.0%} target allows "
          f"{budget:.2f} ms (bare route {bare.machine_ms:.2f} ms / {target:.0%})")
    print(f"      the SQL takes {floor['machine_ms'] / budget:.0%} of the budget, leaving "
          f"{budget - floor['machine_ms']:.2f} ms for HTTP, Flask, session, CSRF, form and page; "
          f"the page used {page.machine_ms:.2f} ms, {page.machine_ms / budget:.1f}x the budget")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", metavar="URL",
                        help="also measure on this PostgreSQL server (a scratch database is made)")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5,
                        help="split each page's measured time into this many interleaved rounds")
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=64)
    parser.add_argument("--worker-class", choices=["sync", "gthread"],
                        help="override gunicorn.conf.py (for comparing configurations)")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--pages", default="bare,pure,welcome,post,lean,differences",
                        type=lambda v: set(v.split(",")),
                        help="which pages to measure (the bare route always is)")
    parser.add_argument("--connection-close", action="store_true",
                        help="a new connection per request, as behind a default reverse proxy")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: `sudo apt-get install -y wrk` (Debian/Ubuntu) or "
              "`brew install wrk` (macOS), then run this again.", file=sys.stderr)
        return 2
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        if not args.no_sqlite:
            workdir = Path(tmp) / "sqlite"
            workdir.mkdir()
            with sqlite_database(workdir) as url:
                ok &= bench_database("SQLite", url, workdir, args)
        if args.postgres:
            workdir = Path(tmp) / "postgres"
            workdir.mkdir()
            with postgres_database(args.postgres) as url:
                ok &= bench_database("PostgreSQL", url, workdir, args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
