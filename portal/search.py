"""Finding accounts by what people type: a name, email, phone, address or invoice number.

Case and accents never matter ("jose" finds "José"), nor does how a phone number is written
("480-555-0134", "(480) 555 0134" and "4805550134" all find "+1 480 555 0134"). Every word
typed must be found somewhere in the account. The database does the matching from an index
(migration 0009): SQLite an FTS5 table kept by triggers, where each word matches the start of
a word in the account; PostgreSQL pg_trgm indexes over the unaccented columns, where each
word matches anywhere in a field (at least three characters are needed for the index to help).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import and_, bindparam, column, func, literal, select, table, union
from sqlalchemy.orm import Session

from portal.models import Account, Customer, Invoice

MAX_LENGTH = 100
MAX_WORDS = 8
PHONE = re.compile(r"[\d\s().+\-/]+")
MIN_PHONE_DIGITS = 7
WORD = re.compile(r"\w+")

# What migration 0009 makes for search that the models do not describe (SQLite's FTS5 table
# and the shadow tables FTS5 keeps beside it; PostgreSQL's expression indexes): Alembic's
# comparison with the models leaves them alone (migrations/env.py, tests/test_migrations.py).
DATABASE_ONLY = re.compile(
    r"account_search(_(data|idx|content|docsize|config))?|"
    r"ix_customers_search|ix_accounts_address_search|ix_invoices_number_search"
)

_fts = table("account_search", column("rowid"), column("body"))


def is_database_only(name: str | None) -> bool:
    return bool(name) and DATABASE_ONLY.fullmatch(name or "") is not None


def terms(query: str) -> list[str]:
    """The words to find. A query that is only a phone number (digits and the usual
    punctuation, at least 7 digits) is one term: its digits."""
    query = query.strip()[:MAX_LENGTH]
    digits = re.sub(r"\D", "", query)
    if PHONE.fullmatch(query) and len(digits) >= MIN_PHONE_DIGITS:
        return [digits]
    return WORD.findall(query)[:MAX_WORDS]


def matching(session: Session, query: str) -> Any | None:
    """A condition on Account for `query`, or None when there is nothing to search for."""
    words = terms(query)
    if not words:
        return None
    if session.get_bind().dialect.name == "sqlite":
        # Each word quoted (no FTS5 syntax from the user) and a prefix: "jo" finds "José".
        expression = " ".join(f'"{word}"*' for word in words)
        return Account.id.in_(select(_fts.c.rowid).where(_fts.c.body.match(expression)))
    return _trigram_matching(words)


def _trigram_matching(words: list[str]) -> Any:
    conditions = []
    for word in words:
        escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        # Inlined as a literal so the planner sees the pattern and can use the trigram index
        # (a bound parameter may get a generic plan that cannot).
        pattern = (
            literal("%") + func.portal_fold(bindparam(None, escaped, literal_execute=True)) + literal("%")
        )
        found = union(
            select(Account.id)
            .join(Customer, Customer.id == Account.customer_id)
            .where(
                func.portal_customer_search(Customer.name, Customer.email, Customer.phone).like(
                    pattern, escape="\\"
                )
            ),
            select(Account.id).where(func.portal_fold(Account.service_address).like(pattern, escape="\\")),
            select(Invoice.account_id).where(func.lower(Invoice.number).like(pattern, escape="\\")),
        )
        conditions.append(Account.id.in_(found))
    return and_(*conditions)
