"""Alembic, driven from the app so `flask --app wsgi db upgrade` uses the app's DATABASE_URL."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from flask import Flask

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str, record_key: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["database_url"] = database_url
    # A migration that re-signs the service record needs the key (0004).
    cfg.attributes["record_key"] = record_key
    return cfg


def upgrade(app: Flask, revision: str = "head") -> None:
    command.upgrade(alembic_config(app.config["DATABASE_URL"], app.config.get("RECORD_KEY")), revision)


def downgrade(app: Flask, revision: str) -> None:
    command.downgrade(alembic_config(app.config["DATABASE_URL"], app.config.get("RECORD_KEY")), revision)
