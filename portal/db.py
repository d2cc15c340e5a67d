"""The database: one engine per app, one session per request (closed at teardown).

Not Flask-SQLAlchemy: plain SQLAlchemy 2.x keeps the session explicit, so services take a
`Session` and can be tested without HTTP.
"""
from __future__ import annotations

from datetime import datetime, timezone
from collections.abc import Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, Callable, TypeVar

from flask import Flask, current_app, g, has_app_context, has_request_context, request
from sqlalchemy import Connection, DateTime, MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on both databases (SQLite would otherwise hand back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use datetime.now(timezone.utc)")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def make_engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling is switched off (see _sqlite_pragmas) so that
        # SAVEPOINT works and writers take the write lock at BEGIN: a deferred transaction
        # that reads and then writes fails with "database is locked" when another writer
        # committed in between, whatever the busy timeout.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
F = TypeVar("F", bound=Callable[..., Any])


def mark_writes() -> None:
    """Call before the first query when the work will write: a GET view that records
    something (opening a link) or a command (sending the outbox). POSTs need not."""
    g.request_writes = True


def reads_first(view: F) -> F:
    """For a POST view that reads for a while (session, form, progress) before it writes: its
    reads run without the write lock, and `begin_writes` takes it just before the first
    write. On SQLite a POST otherwise holds the one write lock from its first query to its
    commit, and every other writer sleeps in the busy handler meanwhile."""
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        g.reads_first = True
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def begin_writes(session: Session) -> None:
    """In a `reads_first` view on SQLite, end the reading transaction (loaded objects stay as
    they are) and take the write lock at the next BEGIN; elsewhere nothing to do (PostgreSQL
    writers lock only the rows they touch). Whatever the writes depend on must be read again
    under the lock (record.lock_account does for the account's status)."""
    if not g.get("reads_first") or g.get("request_writes"):
        return
    if session.get_bind().dialect.name == "sqlite" and session.in_transaction():
        session.commit()
    g.request_writes = True


# read_connection's mark on SQLite: the caller runs one statement, no BEGIN needed.
ONE_STATEMENT = "portal_one_statement"


def _sqlite_begin(conn: Any) -> None:
    if conn.get_execution_options().get(ONE_STATEMENT):
        return  # a lone SELECT reads one snapshot without a transaction around it
    conn.exec_driver_sql("BEGIN IMMEDIATE" if _wants_write_lock() else "BEGIN")


def _wants_write_lock() -> bool:
    if has_app_context() and g.get("request_writes"):
        return True
    return has_request_context() and request.method not in SAFE_METHODS and not g.get("reads_first")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def init_app(app: Flask) -> None:
    engine = make_engine(app.config["DATABASE_URL"])
    app.extensions["portal.engine"] = engine
    app.extensions["portal.sessionmaker"] = sessionmaker(engine, expire_on_commit=False)
    app.teardown_appcontext(_close_session)


def get_engine() -> Engine:
    return current_app.extensions["portal.engine"]


def get_db() -> Session:
    """The request's session; created on first use, closed (and rolled back) at teardown."""
    if "db" not in g:
        g.db = current_app.extensions["portal.sessionmaker"]()
    return g.db


@contextmanager
def read_connection() -> Iterator[Connection]:
    """A connection for a single read outside the request's session. On PostgreSQL it runs
    in autocommit: one statement needs no BEGIN and ROLLBACK, two of the round trips that
    cost the client more CPU than the query. On SQLite the BEGIN is left out alike (the
    driver's own transaction handling stays off, so no isolation level is set)."""
    with get_engine().connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execution_options(isolation_level="AUTOCOMMIT")
        else:
            connection.execution_options(**{ONE_STATEMENT: True})
        yield connection


def _close_session(_exc: BaseException | None) -> None:
    session: Session | None = g.pop("db", None)
    if session is not None:
        session.rollback()
        session.close()
