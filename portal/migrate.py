"""Alembic, driven from the app so `flask --app wsgi db upgrade` uses the app's DATABASE_URL."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.operations.ops import MigrationScript
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from flask import Flask

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
VERSIONS = MIGRATIONS / "versions"


def alembic_config(
    database_url: str, record_key: str | None = None, versions_dir: Path | None = None
) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # Files are named like the committed ones: 0004_add_customer_nickname.py
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if versions_dir is not None:  # an extra place to write to; the committed chain stays visible
        cfg.set_main_option("path_separator", "os")
        cfg.set_main_option("version_locations", os.pathsep.join((str(VERSIONS), str(versions_dir))))
    cfg.attributes["database_url"] = database_url
    # A migration that re-signs the service record needs the key (0004).
    cfg.attributes["record_key"] = record_key
    return cfg


def upgrade(app: Flask, revision: str = "head") -> None:
    command.upgrade(alembic_config(app.config["DATABASE_URL"], app.config.get("RECORD_KEY")), revision)


def downgrade(app: Flask, revision: str) -> None:
    command.downgrade(alembic_config(app.config["DATABASE_URL"], app.config.get("RECORD_KEY")), revision)


def revision(
    app: Flask, message: str, *, empty: bool = False, versions_dir: Path | None = None
) -> Path | None:
    """Write a migration for what the models have and the database (at head) has not.

    Returns the new file, or None when the models and the database agree and `empty` is not
    asked for: an empty revision is only worth writing on purpose (a data migration).
    """
    cfg = alembic_config(app.config["DATABASE_URL"], app.config.get("RECORD_KEY"), versions_dir)
    written = command.revision(
        cfg,
        message=message,
        autogenerate=not empty,
        version_path=versions_dir,
        rev_id=_next_rev_id(ScriptDirectory.from_config(cfg).get_heads()),
        process_revision_directives=None if empty else _skip_when_unchanged,
    )
    script = written[0] if isinstance(written, list) and written else written
    return Path(script.path) if isinstance(script, Script) else None


def _next_rev_id(heads: Sequence[str]) -> str | None:
    """0001, 0002, ...: the next number after the heads while every head is one, else Alembic's
    own random id."""
    numbers = [int(head) for head in heads if head.isdigit()]
    return f"{max(numbers, default=0) + 1:04d}" if len(numbers) == len(heads) else None


def _skip_when_unchanged(context: MigrationContext, revision: Any, directives: list[MigrationScript]) -> None:
    upgrade_ops = directives[0].upgrade_ops
    if upgrade_ops is not None and upgrade_ops.is_empty():
        directives.clear()
