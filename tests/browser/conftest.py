"""Browser fixtures: the app served on a real port, and Debian's Chromium driven by Playwright.

The browser tests run once, on SQLite; without /usr/bin/chromium they skip and say why
(`.ci/run` installs the Debian package `chromium`)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


class QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler without the access log line per request (errors are still logged)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def skip_reason() -> str | None:
    if os.environ.get("PORTAL_TEST_BACKEND", "sqlite") == "postgres":
        return "browser tests run once, on SQLite (PORTAL_TEST_BACKEND=postgres)"
    if not CHROMIUM.exists():
        return "Debian chromium not installed at /usr/bin/chromium; .ci/run installs it"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip before any fixture runs (no database, no server) when the browser tests cannot run."""
    reason = skip_reason()
    if reason is None:
        return
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One Chromium for the module; each test opens its own contexts (cookies, JS on or off)."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The test's app on 127.0.0.1 and a free port, in a daemon thread; its base URL.

    PUBLIC_BASE_URL points at it, so links in emails queued from now on open this server."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    url = f"http://127.0.0.1:{server.server_port}"
    app.config["PUBLIC_BASE_URL"] = url
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """tests/artifacts/ (ignored by git): screenshots and the page weights."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def page_weights(artifacts: Path) -> Iterator[list[str]]:
    """Lines of the page-weight table; written to tests/artifacts/page-weights.txt and printed."""
    lines: list[str] = []
    yield lines
    if lines:
        header = (
            f"{'page':<28} {'status':>6} {'document':>9} {'assets':>7} {'total':>8}  "
            "(bytes incl. headers, cache off; assets = app.css + brand.css)"
        )
        text = "\n".join([header, *lines]) + "\n"
        (artifacts / "page-weights.txt").write_text(text)
        print("\n" + text)
