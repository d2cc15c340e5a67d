"""Migrations build the schema from empty on the database under test, and take it down again."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from portal import create_app, migrate
from portal.db import Base, make_engine
from tests.conftest import BACKEND, TEST_SETTINGS


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
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_build_every_model_table_from_empty_and_tear_it_down(
        empty_database_url, tmp_path, monkeypatch):
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
            triggers = conn.execute(text(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'record_entries'::regclass "
                "AND NOT tgisinternal")).scalars().all()
        else:
            triggers = conn.execute(text(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars().all()
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
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                Base.metadata)
    engine.dispose()
    assert diff == []


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
    return subprocess.run([sys.executable, "-m", "flask", "--app", app, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_db_revision_writes_what_the_models_have_and_the_database_lacks(empty_database_url, tmp_path):
    (tmp_path / "changed_app.py").write_text(CHANGED_APP)
    versions = tmp_path / "versions"
    versions.mkdir()
    env = {**os.environ, "DATABASE_URL": empty_database_url, "PORTAL_ENV": "development",
           "PORTAL_INSTANCE_PATH": str(tmp_path / "instance"),
           "PYTHONPATH": os.pathsep.join((str(tmp_path), str(ROOT)))}
    env.pop("SECRET_KEY", None)
    assert _flask("wsgi", env, "db", "upgrade").returncode == 0
    head = ScriptDirectory.from_config(migrate.alembic_config(empty_database_url)).get_heads()

    unchanged = _flask("wsgi", env, "db", "revision", "-m", "nothing new", "--versions-dir", str(versions))
    assert unchanged.returncode == 0, unchanged.stderr
    assert "No changes" in unchanged.stdout
    assert list(versions.iterdir()) == []

    changed = _flask("changed_app", env, "db", "revision", "-m", "add customer nickname",
                     "--versions-dir", str(versions))
    assert changed.returncode == 0, changed.stderr
    [written] = versions.glob("*.py")
    assert written.name.endswith("_add_customer_nickname.py")
    assert str(written) in changed.stdout
    source = written.read_text()
    assert "nickname" in source and "customers" in source
    assert f"down_revision = {head[0]!r}" in source
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--stdin-filename",
                           f"migrations/versions/{written.name}", "-"],
                          input=source, cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout

    # The file is a working migration: it adds the column, and takes it away again.
    cfg = migrate.alembic_config(empty_database_url, versions)
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
    env = {**os.environ, "DATABASE_URL": empty_database_url, "PORTAL_ENV": "development",
           "PORTAL_INSTANCE_PATH": str(tmp_path / "instance")}
    result = _flask("wsgi", env, "db", "revision", "-m", "too early", "--versions-dir", str(versions))
    assert result.returncode != 0
    assert "not up to date" in result.stderr
    assert list(versions.iterdir()) == []
    [empty] = [
        _flask("wsgi", env, "db", "revision", "-m", "fill by hand", "--empty", "--versions-dir",
               str(versions)).returncode]
    assert empty == 0
    [blank] = versions.glob("*_fill_by_hand.py")
    assert "def upgrade() -> None:\n    pass" in blank.read_text()
