"""The portal as served in production, plus the two reference routes the load benchmark needs.

    gunicorn -c gunicorn.conf.py bench.bench_app:app      (bench/load.py starts it)

- `/bench/hello`: a bare view inside the portal app, so every request-wide hook the portal
  pages pay for (request id, security headers, rate-limit check) is in the reference too.
  The ratios in bench/load.py are against this route.
- `/bench/pure/hello`: the same view in a plain `Flask(__name__)` with nothing registered,
  mounted beside the portal; it shows what those hooks cost, for comparison with
  ../shared/PERFORMANCE.md.

Nothing here is imported by the portal itself.
"""
from __future__ import annotations

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from portal import create_app

HELLO = "Hello, World!"

app = create_app()


@app.get("/bench/hello")
def hello() -> str:
    return HELLO


pure = Flask(__name__)


@pure.get("/hello")
def pure_hello() -> str:
    return HELLO


app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/bench/pure": pure})  # type: ignore[method-assign]
