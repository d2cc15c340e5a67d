"""Money is integer cents everywhere; babel formats it in the company's currency."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from babel.numbers import format_currency


def format_money(cents: int | None, currency: str | None = None, locale: str = "en_US") -> str:
    if cents is None:
        return ""
    from portal.company import get_company

    return _formatted(cents, currency or get_company().currency, locale)


@lru_cache(maxsize=4096)
def _formatted(cents: int, code: str, locale: str) -> str:
    # babel parses the locale and pattern on every call; a billing day formats the same few
    # prices thousands of times.
    return format_currency(Decimal(cents) / 100, code, locale=locale)


def parse_money(text: str) -> int:
    """'165', '165.00', '$1,650.5' -> cents. Raises ValueError with a message for people."""
    cleaned = text.strip().replace(",", "").lstrip("$").strip()
    if not cleaned:
        raise ValueError("Enter an amount, e.g. 165.00")
    try:
        amount = Decimal(cleaned)
    except Exception as exc:  # decimal.InvalidOperation and friends
        raise ValueError("Enter an amount in dollars and cents, e.g. 165.00") from exc
    if not amount.is_finite():
        raise ValueError("Enter an amount in dollars and cents, e.g. 165.00")
    exponent = amount.as_tuple().exponent  # an int: NaN and infinities were refused above
    if isinstance(exponent, int) and exponent < -2:
        raise ValueError("Use at most two decimal places")
    if amount < 0:
        raise ValueError("The amount cannot be negative")
    if amount > Decimal("1000000"):
        raise ValueError("That amount is too large")
    return int(amount * 100)
