"""Alembic environment: the URL comes from the app (portal.migrate) or -x url=..."""

from __future__ import annotations

from alembic import context

import portal.models  # noqa: F401  (fills Base.metadata)
from portal.db import Base, make_engine
from portal.search import is_database_only

config = context.config
url = config.attributes.get("database_url") or context.get_x_argument(as_dictionary=True).get("url")
if not url:
    raise SystemExit("No database URL: run through `flask --app wsgi db upgrade` or pass -x url=...")

engine = make_engine(url)
try:
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # A batch migration copies a table, drops it and renames the copy; SQLite would
            # re-check every view and trigger naming the table at that moment (the search
            # index's, 0009) and refuse, as the table is briefly missing. Names are kept as written.
            connection.exec_driver_sql("PRAGMA legacy_alter_table = ON")
            connection.commit()  # else Alembic would take the open transaction as the caller's
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            # The search index lives outside the models (an FTS5 table, expression indexes).
            include_name=lambda name, _type, _parents: not is_database_only(name),
        )
        with context.begin_transaction():
            context.run_migrations()
finally:
    # Also when a migration refuses (0004 on a broken record): a pool left behind holds its
    # connection open until garbage collection closes it, with a ResourceWarning.
    engine.dispose()
