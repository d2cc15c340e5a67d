"""gunicorn settings: `gunicorn -c gunicorn.conf.py wsgi:app` (what `make serve` runs).

Every setting can be overridden from the environment (or with a gunicorn flag after `-c`):
BIND (or HOST/PORT), WEB_CONCURRENCY (workers), GUNICORN_WORKER_CLASS, GUNICORN_THREADS,
GUNICORN_TIMEOUT, GUNICORN_ACCESSLOG ("-" for stdout), FORWARDED_ALLOW_IPS.

Why sync workers, one per core (WEB_CONCURRENCY defaults to the CPU count): measured with
`bench/load.py --pages welcome,post,differences [--workers N | --worker-class gthread --threads 4]`
on this repo's 2-core machine (2026-12-01), wrk -t2 -c32 on the same machine, 5 x 2 s rounds
taking turns per page, one run per line, in this order. The machine's speed drifted during the
runs (the same page cost up to 40 % more worker CPU in the later ones), so compare the shares
of the bare route more than req/s. req/s (p99 ms), share of the bare route's req/s:

    SQLite               bare route      welcome GET        confirmation POST   differences
    sync, 2 workers      3148 (106)      1591 (32)  51 %     510 (90)  16 %     165 (353)  5 %
    sync, 4 workers      2106 (28)        818 (58)  39 %     346 (166) 16 %     124 (381)  6 %
    gthread 2 x 4        2596 (145)      1139 (82)  44 %     298 (550) 11 %     134 (564)  5 %
    PostgreSQL (same host)
    sync, 2 workers      2748 (178)       987 (53)  36 %     294 (178) 11 %      96 (500)  3 %
    sync, 4 workers      2580 (21)        796 (61)  31 %     282 (152) 11 %      93 (432)  4 %
    gthread 2 x 4        2471 (50)        720 (106) 29 %     251 (253) 10 %      87 (737)  4 %

The CPU is the limit: every page costs worker CPU (1-18 ms; the bench prints it), so threads or
processes beyond the cores only queue, and the database (SQLite's write lock, PostgreSQL's own
processes) shares the same cores. gthread loses on writes and tails: its threads queue for the
SQLite write lock and the GIL, and its p99 is 2-6 times worse. An earlier measurement, when the
pages cost several times more, saw 4 workers do a little better on PostgreSQL (a worker waits
while the database works); with today's pages they do not on one host. With PostgreSQL on
another host, each query waits for the network: measure `--workers` there (twice the cores is
the first thing to try). sync workers need a buffering reverse proxy in front (nginx's default)
so that slow clients cannot hold them.
"""

from __future__ import annotations

import os


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


bind = os.environ.get("BIND") or (f"{os.environ.get('HOST', '127.0.0.1')}:{_int('PORT', 8000)}")
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
# The CPUs this process may run on (a container's cpuset), not all the host's.
workers = _int(
    "WEB_CONCURRENCY",
    len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2,
)
threads = _int("GUNICORN_THREADS", 1)

# A request that takes longer than this is stuck (the slowest real work, a Stripe call, has its
# own 10 s timeout): the worker is killed and replaced.
timeout = _int("GUNICORN_TIMEOUT", 30)
# On SIGTERM, workers finish the requests they hold for up to this long.
graceful_timeout = 30
keepalive = 5
# Import the app once in the master and fork the workers from it: a worker (re)starts in
# milliseconds instead of re-importing everything (over a second of CPU on this machine), and a
# broken configuration stops the master at once instead of looping worker boots.
preload_app = True
# Recycle workers now and then (a guard against slow leaks), jittered so they do not all
# restart at once; cheap thanks to preload_app.
max_requests = 20000
max_requests_jitter = 2000
# The worker heartbeat file lives in memory (a slow /tmp disk must not get workers killed).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# gunicorn trusts X-Forwarded-Proto only from these proxies; the app's ProxyFix (TRUST_PROXY)
# does the rest (client address, host).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# The reverse proxy keeps the access log; set GUNICORN_ACCESSLOG=- to have gunicorn keep one.
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
proc_name = "handoff-portal"
# The runtime control socket (gunicorn 27+) is not used; off, so nothing extra listens.
control_socket_disable = True


def post_fork(server, worker):  # type: ignore[no-untyped-def]
    """Each worker opens its own database connections: drop any the master's pool holds
    (create_app opens none, but this keeps it so) without closing them under the parent."""
    app = getattr(server.app, "callable", None)
    engine = getattr(app, "extensions", {}).get("portal.engine")
    if engine is not None:
        engine.dispose(close=False)
