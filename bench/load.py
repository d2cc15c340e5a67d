"""Load benchmark: the portal's pages against the peer, under gunicorn (the repo's
gunicorn.conf.py), driven by wrk.

    .venv/bin/python bench/load.py [--postgres postgresql://postgres@127.0.0.1:5432/DBNAME]
        [--no-sqlite] [--connections 32] [--duration 10] [--warmup 3] [--rounds 5]
        [--accounts 1000] [--pages welcome,step,post,differences]
        [--worker-class sync|gthread] [--workers N] [--threads N] [--connection-close]

For each database (a fresh SQLite file; with --postgres also a database bench_load_<pid> created
on that server and dropped afterwards) it migrates, seeds --accounts handoffs (a third of them
with a customer answer that differs from the promise, so the differences page has work), starts
one gunicorn serving the portal and the bench routes (bench/bench_app.py) on a free loopback
port, signs in --customers customers through their welcome links and one office user through the
login form (real HTTP, CSRF on, PORTAL_ENV=production), opens the peer page of the same
customers' accounts, and measures with wrk from a second process (bench/load.lua), each page
--warmup seconds (discarded) and then --duration seconds:

- `/bench/hello`: a bare view inside the portal app, for scale;
- the peer read: GET `/bench/peer/accounts/<id>`, plain Flask + SQLAlchemy ORM + Flask-WTF on
  the same database (bench/bench_app.py), round the customers' accounts;
- the peer write: that page's POST (CSRF token, "that's right"), which inserts one row per item
  of the account, commits and redirects;
- the welcome page and the "Visit schedule" step page (GET), round the customers (their session
  cookies brought up to date before each round, as a browser keeps the cookie a response sets:
  see keep_cookies_fresh);
- the confirmation POST of the "Visit schedule" step (CSRF token, customer session cookie and a
  fresh one-time form id per request, so every POST is a real write: a form id claimed and the
  answers appended to the service record);
- the staff differences page (GET, its first page of 25 rows), signed in as the office user.

The measured time is split into --rounds rounds that take turns, so that a change in the
machine's load falls on every page alike; the figures pool the rounds. It prints requests per
second, p50 and p99 latency, errors (socket errors, timeouts and any status other than the
page's normal one), each page's throughput as a ratio to the peer read's or the peer write's
(and the spread of that ratio over the rounds), and the gunicorn workers' CPU time per request.
Each target row says met or MISSED (TARGETS); the gunicorn log is searched for "database is
locked" and logged server errors, and the rows written are counted against the POSTs sent.
A missed target does not fail the run (exit 0): the figures are for reading. wrk runs on
loopback only; every step has a time limit.

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

from bench.bench_app import PeerAnswer, create_peer_tables  # noqa: E402
from portal import create_app, migrate  # noqa: E402
from portal.auth import create_staff  # noqa: E402
from portal.confirmations import Answer, record_answers  # noqa: E402
from portal.db import get_db  # noqa: E402
from portal.demo import demo_handoff  # noqa: E402
from portal.handoffs import create_handoff  # noqa: E402
from portal.models import CompanySettings, FormSubmission, RecordEntry  # noqa: E402
from portal.onboarding import send_welcome  # noqa: E402

BARE = "/bench/hello"
LUA = Path(__file__).resolve().parent / "load.lua"
SECRET_KEY = "bench-secret-key-" + "x" * 40
RECORD_KEY = "bench-record-key-" + "y" * 40  # production refuses to start without its own
USER_AGENT = "handoff-bench/1.0"
OFFICE_EMAIL, OFFICE_PASSWORD = "bench-office@example.com", "bench-password-123"
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Saturday"]  # the promise is Friday
PEER_READ, PEER_WRITE = "peer_read", "peer_write"
REFERENCES = ("bare", PEER_READ, PEER_WRITE)  # measured whatever --pages says
PAGES = ("welcome", "step", "post", "differences")
# Issue 15: each page's requests/s at least this multiple of its peer's, in the same run.
TARGETS = {
    "welcome": (PEER_READ, 1.2),
    "step": (PEER_READ, 1.2),
    "post": (PEER_WRITE, 1.0),
    "differences": (PEER_READ, 0.5),
}


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
    sent: int = 0  # warm-up included, to set against the rows written
    detail: str = ""

    def add(self, figures: dict[str, Any]) -> None:
        self.requests += figures["requests"]
        self.cpu_s += figures.get("cpu_s", 0.0)
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
    return (
        "postgresql+psycopg://" + url.removeprefix("postgresql://")
        if url.startswith("postgresql://")
        else url
    )


def server_env(database_url: str, workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PORTAL_ENV": "production",
        "SECRET_KEY": SECRET_KEY,
        "RECORD_KEY": RECORD_KEY,
        "SESSION_COOKIE_SECURE": "0",  # plain HTTP on loopback
        "DATABASE_URL": database_url,
        "PORTAL_INSTANCE_PATH": str(workdir / "instance"),
        "MAIL_BACKEND": "file",
        "MAIL_OUTBOX_DIR": str(workdir / "outbox"),
        "RATELIMIT_STORAGE_URI": "memory://",
        "PUBLIC_BASE_URL": "http://127.0.0.1",
    }


@dataclass(frozen=True)
class Seeded:
    links: list[str]  # the customers' welcome link paths
    account_ids: list[int]  # their accounts, which the peer pages show


def seed(database_url: str, workdir: Path, accounts: int, customers: int) -> Seeded:
    """Migrate, add the peer's table, and seed in this process (one writer: no lock to take)."""
    os.environ.update(
        {
            k: v
            for k, v in server_env(database_url, workdir).items()
            if k in ("PORTAL_INSTANCE_PATH", "PORTAL_ENV", "SECRET_KEY", "RECORD_KEY")
        }
    )
    app = create_app(
        {"DATABASE_URL": database_url, "SECRET_KEY": SECRET_KEY, "PUBLIC_BASE_URL": "http://127.0.0.1"}
    )
    migrate.upgrade(app)
    create_peer_tables(app.extensions["portal.engine"])
    links: list[str] = []
    account_ids: list[int] = []
    with app.app_context():
        session = get_db()
        session.add(
            CompanySettings(
                name="Bench Pool Care",
                phone="+1 480 555 0100",
                email="hello@bench.example",
                brand_color="#0b5cab",
                readiness_checklist=["Pets secured", "Gate unlocked"],
            )
        )
        create_staff(session, OFFICE_EMAIL, OFFICE_PASSWORD, "office", "Bench Office")
        sales = [
            create_staff(session, f"sales{n}@example.com", OFFICE_PASSWORD, "sales", f"Sales {n}")
            for n in range(5)
        ]
        session.commit()
        for n in range(accounts):
            data = replace(
                demo_handoff(),
                customer_name=f"Customer {n}",
                customer_email=f"customer{n}@example.com",
                service_address=f"{100 + n} W Palm Ln, Phoenix, AZ 85007",
                first_visit=date.today() + timedelta(days=1 + n % 60),
            )
            account = create_handoff(session, data, sales[n % len(sales)])
            sent = send_welcome(session, account, "system")
            if n < customers:
                links.append(urlsplit(sent.url).path)
                account_ids.append(account.id)
            elif n % 3 == 0:  # customers who answered differently: the differences page lists them
                visit = next(item for item in account.items if item.kind == "visit_day")
                record_answers(
                    session, account, [Answer(visit, "changed", DAYS[n % 5], "Works better with my schedule")]
                )
            if n % 100 == 99:
                session.commit()
        session.commit()
        if session.get_bind().dialect.name == "postgresql":
            # As autovacuum would soon after such a load (it might otherwise do it mid-run and
            # change the plans while they are measured): the planner's statistics.
            session.execute(text("ANALYZE"))
            session.commit()
    app.extensions["portal.engine"].dispose()
    return Seeded(links, account_ids)


def count_writes(database_url: str) -> dict[type, int]:
    """Rows in the tables the POSTs write: one-time form ids and record entries (the
    confirmation POST), the peer's answers (the peer write)."""
    engine = create_engine(_driver(database_url))
    with engine.connect() as conn:
        counts = {
            model: conn.scalar(select(func.count()).select_from(model)) or 0
            for model in (FormSubmission, RecordEntry, PeerAnswer)
        }
    engine.dispose()
    return counts


# -- gunicorn -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gunicorn(
    env: dict[str, str], port: int, log: Path, args: argparse.Namespace
) -> Iterator[tuple[str, int]]:
    command = [str(Path(sys.executable).with_name("gunicorn")), "-c", str(ROOT / "gunicorn.conf.py")]
    if args.worker_class:
        command += ["--worker-class", args.worker_class]
    if args.workers:
        command += ["--workers", str(args.workers)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    command.append("bench.bench_app:create_bench_app()")
    with log.open("w") as log_file:
        server = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**env, "BIND": f"127.0.0.1:{port}"},
        )
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


def fetch(
    port: int,
    method: str,
    path: str,
    cookies: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> Page:
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
        return Page(response.status, response.read().decode(), jar, response.headers.get("Location", ""))
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
        lines.append(
            "\t".join(
                [
                    f"session={step.cookies['session']}",
                    hidden_fields(step.body)["csrf_token"],
                    urlencode(answers),
                ]
            )
        )
    data.write_text("\n".join(lines) + "\n")


def open_peer_pages(port: int, account_ids: list[int], data: Path) -> None:
    """Open each account's peer page; keep its session cookie (the CSRF token lives there), the
    token, the answer "that's right", and the page's path."""
    lines = []
    for account_id in account_ids:
        path = f"/bench/peer/accounts/{account_id}"
        page = fetch(port, "GET", path)
        assert page.status == 200 and 'name="answer"' in page.body, (path, page.status)
        lines.append(
            "\t".join(
                [
                    f"peer_session={page.cookies['peer_session']}",
                    hidden_fields(page.body)["csrf_token"],
                    "answer=yes",
                    path,
                ]
            )
        )
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


def run_wrk(
    port: int, scenario: Scenario, seconds: int, run_label: str, args: argparse.Namespace
) -> dict[str, Any]:
    env = {
        **os.environ,
        "BENCH_METHOD": scenario.method,
        "BENCH_PATH": scenario.path,
        "BENCH_EXPECT": str(scenario.expect),
        "BENCH_DATA": scenario.data,
        "BENCH_RUN": run_label,
        "BENCH_UA": USER_AGENT,
        "BENCH_CLOSE": "1" if args.connection_close else "0",
    }
    command = [
        "wrk",
        f"-t{args.wrk_threads}",
        f"-c{args.connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}{scenario.path}",
    ]
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
        fetch(port, "GET", BARE)
        quick = quick + 1 if time.monotonic() - started < 0.05 else 0


def bench_database(name: str, database_url: str, workdir: Path, args: argparse.Namespace) -> bool:
    started = time.monotonic()
    seeded = seed(database_url, workdir, args.accounts, args.customers)
    seed_seconds = time.monotonic() - started
    port, log = free_port(), workdir / "gunicorn.log"
    customers, office, peers = workdir / "customers.tsv", workdir / "office.tsv", workdir / "peer.tsv"
    load_before = os.getloadavg()[0]
    with gunicorn(server_env(database_url, workdir), port, log, args) as (how, master):
        sign_in_customers(port, seeded.links, customers)
        sign_in_office(port, office)
        open_peer_pages(port, seeded.account_ids, peers)
        scenarios = [
            s
            for s in [
                Scenario("bare", "bare route /bench/hello", "GET", BARE, 200),
                # The per-client path in peer.tsv replaces this one.
                Scenario(
                    PEER_READ, "peer read (reference)", "GET", "/bench/peer/accounts/1", 200, str(peers)
                ),
                Scenario(
                    PEER_WRITE, "peer write (reference)", "POST", "/bench/peer/accounts/1", 302, str(peers)
                ),
                Scenario("welcome", "welcome page GET", "GET", "/welcome/step/welcome", 200, str(customers)),
                Scenario(
                    "step", "step page GET (schedule)", "GET", "/welcome/step/schedule", 200, str(customers)
                ),
                Scenario(
                    "post",
                    "confirmation POST (schedule)",
                    "POST",
                    "/welcome/step/schedule",
                    302,
                    str(customers),
                ),
                Scenario(
                    "differences", "staff differences page GET", "GET", "/staff/differences", 200, str(office)
                ),
            ]
            if s.key in args.pages or s.key in REFERENCES
        ]
        results = {s.key: Result(s) for s in scenarios}
        writes_before = count_writes(database_url)
        for scenario in scenarios:  # warm-up: discarded
            results[scenario.key].sent += run_wrk(
                port, scenario, args.warmup, f"w{name[:2]}{scenario.key}", args
            )["requests"]
        # The measured time is split into rounds that take turns, so a change in the machine's
        # load (other processes) falls on every page alike rather than on one of them.
        seconds = max(1, round(args.duration / args.rounds))
        for number in range(args.rounds):
            for scenario in scenarios:
                label = f"m{name[:2]}{number}{scenario.key}"
                if scenario.data == str(customers):
                    keep_cookies_fresh(port, customers)
                cpu = server_cpu_seconds(master)
                figures = run_wrk(port, scenario, seconds, label, args)
                figures["cpu_s"] = server_cpu_seconds(master) - cpu  # the drain included: small
                results[scenario.key].add(figures)
                results[scenario.key].sent += figures["requests"]
        writes_after = count_writes(database_url)
    written = {model: writes_after[model] - writes_before[model] for model in writes_after}
    # wrk counts the answers it read; the requests in flight when it stops are served too.
    in_flight = f"up to {args.connections * (args.rounds + 1)} more left in flight by wrk"
    if "post" in results:
        results["post"].detail = (
            f"{results['post'].sent} POSTs answered (warm-up included), {in_flight}: "
            f"{written[FormSubmission]} one-time form ids claimed, "
            f"{written[RecordEntry]} record entries written"
        )
    results[PEER_WRITE].detail = (
        f"{results[PEER_WRITE].sent} POSTs answered (warm-up included), "
        f"{in_flight}: {written[PeerAnswer]} rows inserted"
    )
    server_log = log.read_text()
    locked = server_log.count("database is locked")
    server_errors = len(
        re.findall(r"database error \(request|unhandled error \(request|Traceback", server_log)
    )
    loads = (load_before, os.getloadavg()[0])
    return report(name, how, results, locked, server_errors, seed_seconds, loads, args)


def ratio(page: Result, reference: Result) -> tuple[float, list[float]]:
    """The page's requests/s over the reference's, pooled and per round (same round: the two
    ran a few seconds apart)."""
    pooled = page.rps / reference.rps if reference.rps else 0.0
    return pooled, [
        mine / theirs for mine, theirs in zip(page.round_rps, reference.round_rps, strict=True) if theirs
    ]


def report(
    name: str,
    how: str,
    results: dict[str, Result],
    locked: int,
    server_errors: int,
    seeded: float,
    loads: tuple[float, float],
    args: argparse.Namespace,
) -> bool:
    """Print the table; True when every target is met."""
    print(f"\n== {name}: gunicorn {how}")
    print(
        f"   wrk -t{args.wrk_threads} -c{args.connections} on loopback; per page {args.warmup} s "
        f"warm-up, then {args.rounds} rounds of {max(1, round(args.duration / args.rounds))} s "
        f"taking turns{'; Connection: close' if args.connection_close else ''}"
    )
    print(
        f"   {args.accounts} accounts seeded in {seeded:.0f} s; {args.customers} customers and one "
        f"office user signed in; load average {loads[0]:.1f} before, {loads[1]:.1f} after "
        f"({os.cpu_count()} CPUs)"
    )
    print(
        f"   {'page':<32}{'req/s':>7}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}{'CPU ms':>8}"
        f"{'vs peer':>9}{'rounds':>12}  target"
    )
    ok = True
    for r in results.values():
        verdict = ""
        shown, spread = "", ""
        target = TARGETS.get(r.scenario.key)
        if target is not None:
            reference, wanted = target
            pooled, per_round = ratio(r, results[reference])
            met = pooled >= wanted
            ok &= met
            shown = f"{pooled:.2f}x"
            spread = f"{min(per_round):.2f}-{max(per_round):.2f}" if per_round else ""
            which = "read" if reference == PEER_READ else "write"
            verdict = f">= {wanted:.1f}x peer {which}: {'met' if met else 'MISSED'}"
        ok &= r.errors == 0
        print(
            f"   {r.scenario.label:<32}{r.rps:>7.0f}{r.percentile_ms(50):>8.1f}"
            f"{r.percentile_ms(99):>8.1f}{r.errors:>7}{r.cpu_ms:>8.2f}{shown:>9}{spread:>12}  "
            f"{verdict}".rstrip()
        )
        if r.errors:
            print(
                f"      errors: {r.unexpected} answers other than {r.scenario.expect} (first: "
                f"{r.first_unexpected}), {r.socket_errors} socket errors or timeouts"
            )
        if r.detail:
            print(f"      {r.detail}")
    print(f'   server log: {locked} "database is locked", {server_errors} logged server errors')
    ok &= locked == 0 and server_errors == 0
    print(f"   targets (ratios, no errors, no lock errors): {'all met' if ok else 'NOT all met'}")
    return ok


def _pages(value: str) -> set[str]:
    pages = set(value.split(","))
    if pages - set(PAGES):
        raise argparse.ArgumentTypeError(f"pages are among {', '.join(PAGES)}")
    return pages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="also measure on this PostgreSQL server (a scratch database is made)",
    )
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="split each page's measured time into this many interleaved rounds",
    )
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=64)
    parser.add_argument(
        "--worker-class",
        choices=["sync", "gthread"],
        help="override gunicorn.conf.py (for comparing configurations)",
    )
    parser.add_argument("--workers", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument(
        "--pages",
        default=",".join(PAGES),
        type=_pages,
        help="which of the portal's pages to measure (the bare route and the peer pages always are)",
    )
    parser.add_argument(
        "--connection-close",
        action="store_true",
        help="a new connection per request, as behind a default reverse proxy",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print(
            "wrk is not installed: `sudo apt-get install -y wrk` (Debian/Ubuntu) or "
            "`brew install wrk` (macOS), then run this again.",
            file=sys.stderr,
        )
        return 2
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        if not args.no_sqlite:
            workdir = Path(tmp) / "sqlite"
            workdir.mkdir()
            with sqlite_database(workdir) as url:
                verdicts.append(("SQLite", bench_database("SQLite", url, workdir, args)))
        if args.postgres:
            workdir = Path(tmp) / "postgres"
            workdir.mkdir()
            with postgres_database(args.postgres) as url:
                verdicts.append(("PostgreSQL", bench_database("PostgreSQL", url, workdir, args)))
    # A missed target is a finding, not a failed run: the exit status says the run completed.
    print(
        "\n" + "; ".join(f"{name}: targets {'all met' if met else 'NOT all met'}" for name, met in verdicts)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
