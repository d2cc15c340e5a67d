"""The portal as served in production, plus the two reference routes the load benchmark needs.

    gunicorn -c gunicorn.conf.py bench.bench_app:app      (bench/load.py starts it)

- `/bench/hello`: a bare view inside the portal app, so every request-wide hook the portal
  pages pay for (request id, security headers, rate-limit check) is in the reference too.
  The ratios in bench/load.py are against this route.
- `/bench/pure/hello`: the same view in a plain `Flask(__name__)` with nothing registered,
  mounted beside the portal; it shows what those hooks cost, for comparison with
  ../shared/PERFORMANCE.md.
- `POST /bench/lean/schedule`: the confirmation POST's SQL through the raw driver, behind the
  portal's session and CSRF check and nothing else (bench/sql_floor.py): what the POST would
  cost without the ORM and the form library. For information, like the plain hello.

Nothing here is imported by the portal itself.
"""
from __future__ import annotations

from flask import Flask, redirect, session, url_for
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Response as BaseResponse

from bench import sql_floor
from portal import create_app
from portal.db import get_engine

HELLO = "Hello, World!"
LEAN_STATEMENTS = "bench.lean_statements"

app = create_app()


@app.get("/bench/hello")
def hello() -> str:
    return HELLO


pure = Flask(__name__)


@pure.get("/hello")
def pure_hello() -> str:
    return HELLO


app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/bench/pure": pure})  # type: ignore[method-assign]


@app.post("/bench/lean/schedule")
def lean_schedule() -> BaseResponse:
    """The schedule step's answers with the raw driver (see bench/sql_floor.py)."""
    engine = get_engine()
    statements = app.extensions.get(LEAN_STATEMENTS)
    if statements is None:
        statements = app.extensions[LEAN_STATEMENTS] = sql_floor.Statements(engine.dialect)
    with sql_floor.raw_cursor(engine) as cursor:
        sql_floor.answer_schedule(cursor, statements, session["customer"]["a"])
    return redirect(url_for("welcome.step", name="payment"))
