"""Migrations build the schema from empty on the database under test, and take it down again."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import load_only

from portal import create_app, migrate
from portal.db import Base, make_engine
from portal.models import StaffUser
from portal.search import is_database_only
from tests.conftest import BACKEND, TEST_SETTINGS
from tests.record_tampering import sha256_chain


@pytest.fixture
def empty_database_url(tmp_path, database_template) -> Iterator[str]:
    if BACKEND != "postgres":
        yield f"sqlite:///{tmp_path}/empty.sqlite3"
        return
    server = make_url(database_template.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"handoff_migration_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _tables(url: str) -> set[str]:
    """The tables, but for the search index the database keeps outside the models."""
    engine = make_engine(url)
    try:
        return {name for name in inspect(engine).get_table_names() if not is_database_only(name)}
    finally:
        engine.dispose()


def test_migrations_build_every_model_table_from_empty_and_tear_it_down(
    empty_database_url, tmp_path, monkeypatch
):
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app({**TEST_SETTINGS, "DATABASE_URL": empty_database_url})
    assert _tables(empty_database_url) == set()

    migrate.upgrade(app)
    tables = _tables(empty_database_url)
    assert set(Base.metadata.tables) | {"alembic_version"} == tables

    migrate.downgrade(app, "base")
    assert _tables(empty_database_url) == {"alembic_version"}
    migrate.upgrade(app)  # and back up again, triggers included
    engine = make_engine(empty_database_url)
    with engine.connect() as conn:
        if BACKEND == "postgres":
            triggers = (
                conn.execute(
                    text(
                        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'record_entries'::regclass "
                        "AND NOT tgisinternal"
                    )
                )
                .scalars()
                .all()
            )
        else:
            triggers = (
                conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars().all()
            )
    engine.dispose()
    app.extensions["portal.engine"].dispose()
    assert triggers


def test_models_and_migrations_agree(database_template, tmp_path, monkeypatch):
    """A model change without its migration fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    url = database_template if BACKEND == "postgres" else f"sqlite:///{database_template}"
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, _type, _parents: not is_database_only(name),
                },
            ),
            Base.metadata,
        )
    engine.dispose()
    assert diff == []


def _lift_update_guard(conn) -> None:
    if BACKEND == "postgres":
        conn.execute(text("ALTER TABLE record_entries DISABLE TRIGGER record_entries_append_only"))
    else:
        conn.execute(text("DROP TRIGGER record_entries_no_update"))


def test_0004_re_signs_an_existing_record_with_the_record_key_and_refuses_a_broken_one(
    empty_database_url, tmp_path, monkeypatch
):
    from portal import record
    from portal.demo import demo_handoff
    from portal.handoffs import create_handoff

    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app({**TEST_SETTINGS, "DATABASE_URL": empty_database_url})
    migrate.upgrade(app)
    with app.app_context():
        session = app.extensions["portal.sessionmaker"]()
        ids = [create_handoff(session, demo_handoff(), None).id for _ in range(2)]
        session.commit()
        session.close()
    migrate.downgrade(app, "0003")
    engine = make_engine(empty_database_url)
    with engine.begin() as conn:
        _lift_update_guard(conn)
        for account_id in ids:
            sha256_chain(conn, account_id)
    engine.dispose()

    migrate.upgrade(app)  # re-creates the guard it lifted
    with app.app_context():
        session = app.extensions["portal.sessionmaker"]()
        assert [record.verify_chain(session, account_id) for account_id in ids] == [None, None]
        session.close()

    migrate.downgrade(app, "0003")
    with engine.begin() as conn:
        _lift_update_guard(conn)
        sha256_chain(conn, ids[1])
        conn.execute(
            text("UPDATE record_entries SET note = 'rewritten' WHERE account_id = :a AND seq = 2"),
            {"a": ids[1]},
        )
    engine.dispose()
    with pytest.raises(RuntimeError, match=f"Account {ids[1]}: the service record is broken at entry 2"):
        migrate.upgrade(app)
    app.extensions["portal.engine"].dispose()


def test_the_upgrade_gives_each_account_of_a_shared_customer_its_own_copy(
    empty_database_url, tmp_path, monkeypatch
):
    """Before 0006 two handoffs could share a customer row; the upgrade splits it, data copied."""
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app({**TEST_SETTINGS, "DATABASE_URL": empty_database_url})
    migrate.upgrade(app, "0005")
    engine = make_engine(empty_database_url)
    account = (
        "INSERT INTO accounts (id, customer_id, service_address, plan, price_cents, status, "
        "why_chose_us, concerns, contact_preference, reminders_sent, created_at, updated_at, "
        "version) VALUES (:id, :customer, :address, 'Weekly', 16500, 'draft', '', '', '', 0, "
        "'2026-01-02 03:04:05', '2026-01-02 03:04:05', 1)"
    )
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO customers (id, name, email, phone, created_at) VALUES "
                "(1, 'Dana Reyes', 'dana@example.com', '+1 480 555 0134', '2026-01-02 03:04:05'), "
                "(2, 'Lee Alone', 'lee@example.com', '', '2026-01-02 03:04:05')"
            )
        )
        for account_id, customer_id, address in (
            (10, 1, "1 Palm Ln"),
            (11, 1, "9 Lake Dr"),
            (12, 1, "4 Elm St"),
            (13, 2, "7 Oak Ave"),
        ):
            conn.execute(text(account), {"id": account_id, "customer": customer_id, "address": address})
    if BACKEND == "postgres":
        with engine.begin() as conn:  # the rows above took their ids by hand
            conn.execute(text("SELECT setval(pg_get_serial_sequence('customers', 'id'), 2)"))

    migrate.upgrade(app)

    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.id, c.id, c.name, c.email, c.phone, c.created_at FROM accounts a "
                "JOIN customers c ON c.id = a.customer_id ORDER BY a.id"
            )
        ).all()
        customer_count = conn.execute(text("SELECT count(*) FROM customers")).scalar_one()
    engine.dispose()
    app.extensions["portal.engine"].dispose()
    assert [row[0] for row in rows] == [10, 11, 12, 13]
    assert rows[0][1] == 1 and rows[3][1] == 2  # the oldest account keeps the original row
    assert len({row[1] for row in rows}) == 4 and customer_count == 4
    assert {tuple(row[2:5]) for row in rows[:3]} == {("Dana Reyes", "dana@example.com", "+1 480 555 0134")}
    assert len({str(row[5]) for row in rows[:3]}) == 1  # created_at copied as it was
    assert tuple(rows[3][2:4]) == ("Lee Alone", "lee@example.com")


ROOT = Path(__file__).resolve().parents[1]
# The portal with one model change that no migration has yet, as a developer's checkout would be.
CHANGED_APP = """
import sqlalchemy as sa

from portal import create_app
from portal.models import Customer

Customer.__table__.append_column(sa.Column("nickname", sa.String(40), nullable=True))
app = create_app()
"""


def _flask(app: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", app, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_db_revision_writes_what_the_models_have_and_the_database_lacks(empty_database_url, tmp_path):
    (tmp_path / "changed_app.py").write_text(CHANGED_APP)
    versions = tmp_path / "versions"
    versions.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": empty_database_url,
        "PORTAL_ENV": "development",
        "PORTAL_INSTANCE_PATH": str(tmp_path / "instance"),
        "PYTHONPATH": os.pathsep.join((str(tmp_path), str(ROOT))),
    }
    env.pop("SECRET_KEY", None)
    assert _flask("wsgi", env, "db", "upgrade").returncode == 0
    head = ScriptDirectory.from_config(migrate.alembic_config(empty_database_url)).get_heads()

    unchanged = _flask("wsgi", env, "db", "revision", "-m", "nothing new", "--versions-dir", str(versions))
    assert unchanged.returncode == 0, unchanged.stderr
    assert "No changes" in unchanged.stdout
    assert list(versions.iterdir()) == []

    changed = _flask(
        "changed_app", env, "db", "revision", "-m", "add customer nickname", "--versions-dir", str(versions)
    )
    assert changed.returncode == 0, changed.stderr
    [written] = versions.glob("*.py")
    assert written.name.endswith("_add_customer_nickname.py")
    assert str(written) in changed.stdout
    source = written.read_text()
    assert "nickname" in source and "customers" in source
    assert f"down_revision = {head[0]!r}" in source
    lint = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--stdin-filename",
            f"migrations/versions/{written.name}",
            "-",
        ],
        input=source,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout

    # The file is a working migration: it adds the column, and takes it away again.
    cfg = migrate.alembic_config(empty_database_url, versions_dir=versions)
    command.upgrade(cfg, "head")
    engine = make_engine(empty_database_url)
    try:
        assert "nickname" in {c["name"] for c in inspect(engine).get_columns("customers")}
        command.downgrade(cfg, head[0])
        assert "nickname" not in {c["name"] for c in inspect(engine).get_columns("customers")}
    finally:
        engine.dispose()


def test_db_revision_refuses_a_database_behind_the_latest_migration(empty_database_url, tmp_path):
    versions = tmp_path / "versions"
    versions.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": empty_database_url,
        "PORTAL_ENV": "development",
        "PORTAL_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    result = _flask("wsgi", env, "db", "revision", "-m", "too early", "--versions-dir", str(versions))
    assert result.returncode != 0
    assert "not up to date" in result.stderr
    assert list(versions.iterdir()) == []
    [empty] = [
        _flask(
            "wsgi", env, "db", "revision", "-m", "fill by hand", "--empty", "--versions-dir", str(versions)
        ).returncode
    ]
    assert empty == 0
    [blank] = versions.glob("*_fill_by_hand.py")
    assert "def upgrade() -> None:\n    pass" in blank.read_text()


def test_0009_makes_existing_accounts_searchable_and_counted(empty_database_url, tmp_path, monkeypatch):
    from portal import account_list, pipeline
    from portal.auth import create_staff

    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app({**TEST_SETTINGS, "DATABASE_URL": empty_database_url})
    migrate.upgrade(app, "0008")
    with app.app_context():
        session = app.extensions["portal.sessionmaker"]()
        # Today's model has staff columns that later migrations add: the seller is written
        # as 0008 knew it and read with only those columns.
        seller_id = session.execute(
            text(
                "INSERT INTO staff_users (email, name, password_hash, role, active, session_token, "
                "created_at) VALUES ('sam@example.com', 'Sam', 'x', 'sales', true, 'token-sam', "
                "'2026-01-02 03:04:05') RETURNING id"
            )
        ).scalar_one()
        seller = session.get(
            StaffUser,
            seller_id,
            options=[
                load_only(StaffUser.id, StaffUser.email, StaffUser.name, StaffUser.role, StaffUser.active)
            ],
        )
        assert seller is not None
        for name in ("José Núñez", "Dana Reyes"):
            _old_account(session, name, seller.id)
        session.commit()
        session.close()
    migrate.upgrade(app)
    with app.app_context():
        session = app.extensions["portal.sessionmaker"]()
        office = create_staff(session, "olivia@example.com", "pw-123456789", "office", "Olivia")
        found = account_list.list_accounts(session, office, account_list.AccountFilter(query="jose"))
        assert [a.customer.name for a in found.rows] == ["José Núñez"]
        now = datetime.now(timezone.utc)
        assert pipeline.pipeline(session, office, now).by_status["draft"] == 2
        seller = session.get(StaffUser, seller_id)
        assert pipeline.pipeline(session, seller, now).by_status["draft"] == 2
        session.close()
    app.extensions["portal.engine"].dispose()


def _old_account(session, name: str, seller_id: int, visit_days: tuple[str | None, ...] = ()) -> int:
    """An account and its customer (and visit-day promises; None for a withdrawn one) written as
    the migrations before 0012 knew them: today's model has columns they lack."""
    email = f"{name.split()[0].lower()}@example.com"
    customer_id = session.execute(
        text(
            "INSERT INTO customers (name, email, phone, created_at) "
            "VALUES (:name, :email, '', '2026-01-02 03:04:05') RETURNING id"
        ),
        {"name": name, "email": email},
    ).scalar_one()
    account_id = session.execute(
        text(
            "INSERT INTO accounts (customer_id, service_address, plan, price_cents, first_visit, "
            "salesperson_id, status, why_chose_us, concerns, contact_preference, reminders_sent, "
            "created_at, updated_at, version) VALUES (:customer, '1820 W Palm Ln', 'Weekly', 16500, "
            "'2026-12-09', :seller, 'draft', '', '', '', 0, '2026-01-02 03:04:05', "
            "'2026-01-02 03:04:05', 1) RETURNING id"
        ),
        {"customer": customer_id, "seller": seller_id},
    ).scalar_one()
    for position, days in enumerate(visit_days):
        withdrawn = "NULL" if days is not None else "'2026-01-03 00:00:00'"
        session.execute(
            text(
                "INSERT INTO promise_items (account_id, kind, label, promised_value, position, "
                f"created_at, current_outcome, withdrawn_at) VALUES (:account, 'visit_day', 'Visit day', "
                f":days, :position, '2026-01-02 03:04:05', 'promised', {withdrawn})"
            ),
            {"account": account_id, "days": days or "Monday, Tuesday, Wednesday", "position": position},
        )
    return int(account_id)


def test_0012_gives_each_plan_as_many_visits_a_week_as_its_promised_days(
    empty_database_url, tmp_path, monkeypatch
):
    from portal.models import Account

    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app({**TEST_SETTINGS, "DATABASE_URL": empty_database_url})
    migrate.upgrade(app, "0011")
    with app.app_context():
        session = app.extensions["portal.sessionmaker"]()
        seller_id = session.execute(
            text(
                "INSERT INTO staff_users (email, name, password_hash, role, active, session_token, "
                "created_at) VALUES ('sam@example.com', 'Sam', 'x', 'sales', true, 'token-sam', "
                "'2026-01-02 03:04:05') RETURNING id"
            )
        ).scalar_one()
        ids = {
            "weekly": _old_account(session, "Dana Reyes", seller_id, ("Friday",)),
            "twice": _old_account(session, "Marcus Lee", seller_id, ("Monday, Thursday",)),
            # A withdrawn three-day promise counts for nothing; the one in force does.
            "edited": _old_account(session, "Avery Quinn", seller_id, (None, "Tuesday, Friday")),
            "no days": _old_account(session, "Priya Natarajan", seller_id),
        }
        session.commit()
        session.close()
    migrate.upgrade(app)
    with app.app_context():
        session = app.extensions["portal.sessionmaker"]()
        found = {key: session.get(Account, account_id).visits_per_week for key, account_id in ids.items()}
        assert found == {"weekly": 1, "twice": 2, "edited": 2, "no days": 1}
        session.close()
    migrate.downgrade(app, "0011")
    engine = make_engine(empty_database_url)
    try:
        assert "visits_per_week" not in {column["name"] for column in inspect(engine).get_columns("accounts")}
    finally:
        engine.dispose()
    app.extensions["portal.engine"].dispose()
