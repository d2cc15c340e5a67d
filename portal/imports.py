"""CSV import of handoffs (filled in by the bulk-entry work)."""
from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
