"""gunicorn settings: `gunicorn -c gunicorn.conf.py wsgi:app` (what `make serve` runs).

Every setting can be overridden from the environment (or with a gunicorn flag after `-c`):
BIND (or HOST/PORT), WEB_CONCURRENCY (workers), GUNICORN_WORKER_CLASS, GUNICORN_THREADS,
GUNICORN_TIMEOUT, GUNICORN_ACCESSLOG ("-" for stdout), FORWARDED_ALLOW_IPS.

Why sync workers, one per core (WEB_CONCURRENCY defaults to the CPU count): measured with
`bench/load.py --accounts 300 --pages bare,welcome,post [--worker-class/--workers/--threads]` on
this repo's 2-core machine, wrk -t2 -c32 on the same machine, 5 x 2 s rounds taking turns per
page. Other processes shared the machine (load average 3 to 9), so compare rows within a column
with care. req/s (p99 ms):

    SQLite                        bare route    welcome GET   confirmation POST
    sync, 2 workers               857 (59)      131 (299)      70 (661)
    sync, 4 workers               808 (59)      109 (422)      66 (901)
    gthread 2 x 4, keep-alive    1118 (142)     145 (591)      53 (1645)
    gthread 2 x 4, Connection: close
                                 1115 (127)     173 (464)      52 (1379)
    gthread 4 x 2, keep-alive    1207 (540)     146 (866)      54 (1821)
    PostgreSQL (same host)
    sync, 2 workers              1060 (65)       82 (495)      42 (976)
    sync, 4 workers              1047 (55)      101 (420)      55 (818)

The CPU is the limit: a page costs 3-37 ms of worker CPU in every configuration (the bench
prints it; 9-42 ms when the table above was measured, before the pages were made cheaper), so
threads or processes beyond the cores only queue. gthread gains on the bare
route (connection reuse) and loses on writes and tails: its threads queue for the SQLite write
lock and the GIL, and its p99 is 2-3 times worse. sync x 2 gave the best POST on SQLite and the
lowest p99 overall; on PostgreSQL 4 workers did a little better (a worker waits while the
database works), so with PostgreSQL, above all on another host, set WEB_CONCURRENCY to twice
the cores. sync workers need a buffering reverse proxy in front (nginx's default) so that slow
clients cannot hold them.
"""
from __future__ import annotations

import os


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


bind = os.environ.get("BIND") or (
    f"{os.environ.get('HOST', '127.0.0.1')}:{_int('PORT', 8000)}"
)
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
# The CPUs this process may run on (a container's cpuset), not all the host's.
workers = _int("WEB_CONCURRENCY", len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 2)
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
