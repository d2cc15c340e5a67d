"""Every CSV the portal writes goes through here, so no cell can run as a spreadsheet formula.

A spreadsheet treats a cell that starts with `=`, `+`, `-` or `@` as a formula (tab and CR can
hide one after them), and a customer's comment like `=HYPERLINK("http://x","y")` would then
run on a staff member's machine (OWASP "CSV injection"). Such text cells get a leading `'`.

Decision on numbers: values the portal computes itself (int, float, Decimal) cannot carry a
formula and are written as they are, so counts and percentages stay numbers. Any *text* cell
that starts with a dangerous character is prefixed, even one that looks like a negative amount
("-20.00"): text comes from people, and OWASP advises prefixing every such cell.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (bool, int, float, Decimal)):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_text(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    """The whole CSV (header first) as text, each cell neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([safe_cell(cell) for cell in header])
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    return buffer.getvalue()
