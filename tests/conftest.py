"""Fixtures: a migrated database per test (SQLite, or PostgreSQL with TEST_DATABASE_URL),
the app, its client and CLI runner, factories for staff and accounts, and a sign-in helper."""

from __future__ import annotations

import contextvars
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import inspect, text
from sqlalchemy.orm import Session

from portal import create_app, migrate
from portal.auth import create_staff
from portal.db import get_db, make_engine
from portal.demo import demo_handoff
from portal.handoffs import create_handoff
from portal.models import Account, StaffUser

BACKEND = os.environ.get("PORTAL_TEST_BACKEND", "sqlite")
PASSWORD = "correct-horse-battery"

# Every test setting in one place.
TEST_SETTINGS: dict[str, Any] = {
    "TESTING": True,
    "SECRET_KEY": "test-secret-key-not-for-production",
    "RECORD_KEY": "test-record-key-not-for-production",
    "WTF_CSRF_ENABLED": False,
    "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1",
    "RATELIMIT_STORAGE_URI": "memory://",
    "PUBLIC_BASE_URL": "http://localhost",
    "MAIL_BACKEND": "file",
}


def pytest_report_header() -> str:
    return f"handoff portal database backend: {BACKEND}"


@pytest.fixture(scope="session")
def database_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Migrate once per run; each test then starts from a copy (SQLite) or a truncation (PG)."""
    if BACKEND == "postgres":
        url = os.environ.get("TEST_DATABASE_URL")
        if not url:
            pytest.exit("PORTAL_TEST_BACKEND=postgres needs TEST_DATABASE_URL", returncode=2)
        _empty_schema(url)  # the test database is disposable: always migrate from empty
        app = create_app({**TEST_SETTINGS, "DATABASE_URL": url})
        migrate.upgrade(app)
        app.extensions["portal.engine"].dispose()
        return url
    template = tmp_path_factory.mktemp("template") / "template.sqlite3"
    app = create_app({**TEST_SETTINGS, "DATABASE_URL": f"sqlite:///{template}"})
    migrate.upgrade(app)
    # Closing the last connection checkpoints the WAL into the main file, which is then whole.
    app.extensions["portal.engine"].dispose()
    return str(template)


def _empty_schema(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def _truncate_all(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        tables = [t for t in inspect(conn).get_table_names() if t != "alembic_version"]
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def database_url(database_template: str, tmp_path: Path) -> str:
    if BACKEND == "postgres":
        _truncate_all(database_template)
        return database_template
    target = tmp_path / "portal.sqlite3"
    shutil.copyfile(database_template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> dict[str, Any]:
    """Per-test settings; a test may change them before asking for `app`."""
    return {
        **TEST_SETTINGS,
        "DATABASE_URL": database_url,
        "MAIL_OUTBOX_DIR": str(tmp_path / "outbox"),
    }


@pytest.fixture
def app(
    settings: dict[str, Any],
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Flask]:
    if request.node.get_closest_marker("csrf"):
        settings = {**settings, "WTF_CSRF_ENABLED": True}
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    application = create_app(settings)
    yield application
    application.extensions["portal.engine"].dispose()


@pytest.fixture
def db(app: Flask) -> Iterator[Session]:
    """The test's own session, in an app context of its own (services need one)."""
    with app.app_context():
        yield get_db()


class PortalClient(FlaskClient):
    """Requests run as a separate user would make them: the test's own transaction is ended
    first (nothing uncommitted or locked, fresh reads afterwards), and the request gets an
    app context and session of its own rather than the test's (Flask would reuse it)."""

    test_session: Session | None = None

    def open(self, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
        _end_test_transaction(self.test_session)
        return contextvars.Context().run(super().open, *args, **kwargs)


@pytest.fixture
def client(app: Flask, db: Session) -> FlaskClient:
    app.test_client_class = PortalClient
    test_client = app.test_client()
    test_client.test_session = db  # type: ignore[attr-defined]
    return test_client


def _end_test_transaction(session: Session | None) -> None:
    if session is not None:
        session.commit()
        session.expire_all()


class PortalCliRunner(FlaskCliRunner):
    """Commands run like `flask --app wsgi ...` from a shell: their own app context and session."""

    test_session: Session | None = None

    def invoke(self, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def, override]
        _end_test_transaction(self.test_session)
        return contextvars.Context().run(super().invoke, *args, **kwargs)


@pytest.fixture
def runner(app: Flask, db: Session) -> FlaskCliRunner:
    cli_runner = PortalCliRunner(app)
    cli_runner.test_session = db
    return cli_runner


@pytest.fixture
def make_staff(db: Session):  # type: ignore[no-untyped-def]
    def factory(role: str = "office", email: str | None = None, **kwargs: Any) -> StaffUser:
        user = create_staff(
            db,
            email or f"{role}-{uuid.uuid4().hex[:8]}@example.com",
            PASSWORD,
            role,
            kwargs.get("name", role.title()),
        )
        db.commit()
        return user

    return factory


@pytest.fixture
def make_account(db: Session, make_staff):  # type: ignore[no-untyped-def]
    def factory(salesperson: StaffUser | None = None, **changes: Any) -> Account:
        data = demo_handoff()
        for key, value in changes.items():
            setattr(data, key, value)
        account = create_handoff(db, data, salesperson or make_staff("sales"))
        db.commit()
        return account

    return factory


class StaffBrowser:
    """Signs a staff user in through the real login form."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def login(self, user: StaffUser, password: str = PASSWORD, **extra: Any):  # type: ignore[no-untyped-def]
        hidden = form_fields(self.client.get("/staff/login").get_data(as_text=True))
        return self.client.post(
            "/staff/login", data={**hidden, "email": user.email, "password": password, **extra}
        )

    def logout(self):  # type: ignore[no-untyped-def]
        return self.client.post("/staff/logout")


@pytest.fixture
def staff(client: FlaskClient) -> StaffBrowser:
    return StaffBrowser(client)


def sign_as_shown(session: Session, account: Account, name: str) -> None:
    """Sign the agreement as the review step shows it, from a test's own session."""
    from portal import agreement, confirmations

    shown = agreement.agreement_for(session, account)
    evidence = agreement.Evidence(name, "127.0.0.1", "test", account.link_nonce_hash or "", shown.sha256, ())
    confirmations.sign(session, account, evidence)


def count_rows(session: Session, model: type) -> int:
    from sqlalchemy import func, select

    return session.scalar(select(func.count()).select_from(model)) or 0


def form_fields(page: str) -> dict[str, str]:
    """The hidden fields of the first form on a page (csrf_token, form_id, version...)."""
    import re

    return dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*type="hidden"[^>]*value="([^"]*)"', page))


def run_at_once(app: Flask, count: int, work: Any) -> list[Any]:
    """Call `work()` in `count` threads released together, each in a fresh context (Flask keeps
    the app context in a context variable) with an app context of its own; the results in
    completion order. An error in any thread fails the test."""
    import threading

    barrier = threading.Barrier(count)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        with app.app_context():
            try:
                barrier.wait(timeout=10)
                results.append(work())
            except BaseException as error:  # handed to the test thread below
                errors.append(error)

    threads = [threading.Thread(target=contextvars.Context().run, args=(run,)) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results
