"""The database: one engine per app, one session per request (closed at teardown).

Not Flask-SQLAlchemy: plain SQLAlchemy 2.x keeps the session explicit, so services take a
`Session` and can be tested without HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, cast

from flask import Flask, current_app, g
from sqlalchemy import DateTime, MetaData, Table, create_engine, event, func, select, text
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


def table_of(model: type[Base]) -> Table:
    """The model's table, for Core statements that must not go through the ORM (executemany,
    UPDATE ... FROM). SQLAlchemy types `__table__` as any FromClause; a declarative model's is
    always a Table."""
    return cast(Table, model.__table__)


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


# The unit of work's mark on its connection: on SQLite its BEGIN takes the write lock.
WRITE_LOCK = "portal_write_lock"
IN_UNIT = "portal.in_unit_of_work"


@contextmanager
def unit_of_work(session: Session | None = None) -> Iterator[Session]:
    """The one way to write: `with unit_of_work() as session:` runs one transaction that takes
    SQLite's write lock at its BEGIN (PostgreSQL writers lock only the rows they touch), commits
    at the end and rolls back on an error. The request's session unless one is given.

    Reads before it ran in a plain transaction of their own, which ends here: the objects they
    loaded stay as they were read, so whatever a write depends on is read again inside (as
    record.lock_account does for the account's status). On SQLite a read transaction cannot
    take the write lock later without failing when another writer committed meanwhile."""
    session = get_db() if session is None else session
    if session.info.get(IN_UNIT):
        raise RuntimeError("a unit of work is open already on this session")
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("changes made outside a unit of work: make them inside it")
    if session.in_transaction():
        session.commit()  # a read: nothing to write, and the loaded objects stay loaded
    session.connection(execution_options={WRITE_LOCK: True})
    session.info[IN_UNIT] = True
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.info.pop(IN_UNIT, None)


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_LOCK) else "BEGIN")


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
    engine: Engine = current_app.extensions["portal.engine"]
    return engine


def get_db() -> Session:
    """The request's session; created on first use, closed at teardown (which rolls back
    whatever is uncommitted)."""
    if "db" not in g:
        g.db = current_app.extensions["portal.sessionmaker"]()
    session: Session = g.db
    return session


def _close_session(_exc: BaseException | None) -> None:
    session: Session | None = g.pop("db", None)
    if session is not None:
        # close() ends the transaction (rolls it back) and lets go of the loaded objects at
        # once; a rollback() first would expire each of them only to drop them.
        session.close()


def reserve_ids(session: Session, model: type[Any], count: int) -> list[int]:
    """Primary keys for `count` new rows of `model`, taken before the INSERT."""
    if count == 0:
        return []
    table = table_of(model)
    if session.get_bind().dialect.name == "postgresql":
        # nextval is safe with concurrent writers and advances the serial sequence.
        return list(
            session.scalars(
                text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :count)"),
                {"table": table.name, "count": count},
            )
        )
    # SQLite: writers run in a unit of work (the write lock taken at BEGIN), so no other
    # writer can take these ids before we commit; max + 1 is what SQLite itself would use.
    top = session.scalar(select(func.max(table.c.id))) or 0
    return list(range(top + 1, top + count + 1))
