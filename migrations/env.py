"""Alembic environment: the URL comes from the app (portal.migrate) or -x url=..."""
from __future__ import annotations

from alembic import context

import portal.models  # noqa: F401  (fills Base.metadata)
from portal.db import Base, make_engine

config = context.config
url = config.attributes.get("database_url") or context.get_x_argument(as_dictionary=True).get("url")
if not url:
    raise SystemExit("No database URL: run through `flask --app wsgi db upgrade` or pass -x url=...")

engine = make_engine(url)
try:
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
finally:
    # Also when a migration refuses (0004 on a broken record): a pool left behind holds its
    # connection open until garbage collection closes it, with a ResourceWarning.
    engine.dispose()
