"""Outbox delivery (filled in by the outbox work)."""
from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
