"""accounts list: search, keyset sort indexes, pipeline counts kept by the database

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

- `account_counts`: live accounts per salesperson and status, moved by triggers on `accounts`
  in the writing transaction, so the dashboard reads a few rows instead of every account.
  Triggers rather than the write path: status, salesperson and deletion change in many
  services, the import and the bench's bulk load, and the database sees every one of them.
- Search. SQLite: an FTS5 table `account_search` (one document per account: the customer's
  name, email and phone, the phone's digits, the service address and the invoice numbers;
  `remove_diacritics 2` makes it case- and accent-insensitive), filled from the view
  `account_search_source` by triggers on accounts, customers and invoices, and by the
  backfill below -- the view is the one definition of a document. PostgreSQL: pg_trgm GIN
  indexes on the folded (`unaccent`, lower) columns themselves: nothing to keep in step.
- A later migration that copies accounts, customers or invoices on SQLite (batch mode) drops
  their triggers with the old table: it must create those of SQLITE_SEARCH_TRIGGERS and
  SQLITE_COUNT_TRIGGERS on it again (tests/test_accounts_list.py fails otherwise).
- Indexes for the list's sort orders: customers by name, accounts by (first visit, id); the
  dashboard's link counts covered by one index (scope columns added).
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# The phone's digits, without the formatting people type ("+1 (480) 555-0134" -> 14805550134).
_SQLITE_DIGITS = "c.phone"
for _char in (" ", "-", "(", ")", "+", ".", "/"):
    _SQLITE_DIGITS = f"replace({_SQLITE_DIGITS}, '{_char}', '')"

# The digits also go in as their last 10 and last 7, so a number typed without the country
# code or the area code is a prefix of a word in the document.
SQLITE_SOURCE = f"""
CREATE VIEW account_search_source AS
SELECT a.id AS account_id,
       c.name || ' ' || c.email || ' ' || c.phone || ' ' || {_SQLITE_DIGITS} || ' '
       || substr({_SQLITE_DIGITS}, -10) || ' ' || substr({_SQLITE_DIGITS}, -7) || ' '
       || a.service_address || ' '
       || coalesce((SELECT group_concat(i.number, ' ') FROM invoices i WHERE i.account_id = a.id), '')
       AS body
FROM accounts a JOIN customers c ON c.id = a.customer_id
"""


def _refresh(account_ids: str) -> str:
    return (
        f"DELETE FROM account_search WHERE rowid IN ({account_ids}); "
        "INSERT INTO account_search (rowid, body) SELECT account_id, body "
        f"FROM account_search_source WHERE account_id IN ({account_ids});"
    )


SQLITE_SEARCH_TRIGGERS = {
    "account_search_account_insert": "AFTER INSERT ON accounts BEGIN " + _refresh("NEW.id") + " END",
    "account_search_account_update": "AFTER UPDATE OF service_address, customer_id ON accounts "
    "BEGIN " + _refresh("NEW.id") + " END",
    "account_search_account_delete": "AFTER DELETE ON accounts "
    "BEGIN DELETE FROM account_search WHERE rowid = OLD.id; END",
    "account_search_customer_update": "AFTER UPDATE OF name, email, phone ON customers BEGIN "
    + _refresh("SELECT id FROM accounts WHERE customer_id = NEW.id")
    + " END",
    "account_search_invoice_insert": "AFTER INSERT ON invoices BEGIN " + _refresh("NEW.account_id") + " END",
    "account_search_invoice_update": "AFTER UPDATE OF number, account_id ON invoices BEGIN "
    + _refresh("OLD.account_id, NEW.account_id")
    + " END",
    "account_search_invoice_delete": "AFTER DELETE ON invoices BEGIN " + _refresh("OLD.account_id") + " END",
}

_SQLITE_ADD = (
    "INSERT INTO account_counts (salesperson_id, status, accounts) "
    "SELECT coalesce(NEW.salesperson_id, 0), NEW.status, 1 WHERE NEW.deleted_at IS NULL "
    "ON CONFLICT (salesperson_id, status) DO UPDATE SET accounts = accounts + 1;"
)
_SQLITE_REMOVE = (
    "UPDATE account_counts SET accounts = accounts - 1 WHERE OLD.deleted_at IS NULL "
    "AND salesperson_id = coalesce(OLD.salesperson_id, 0) AND status = OLD.status;"
)
SQLITE_COUNT_TRIGGERS = {
    "account_counts_insert": f"AFTER INSERT ON accounts BEGIN {_SQLITE_ADD} END",
    "account_counts_update": "AFTER UPDATE OF status, salesperson_id, deleted_at ON accounts "
    f"BEGIN {_SQLITE_REMOVE} {_SQLITE_ADD} END",
    "account_counts_delete": f"AFTER DELETE ON accounts BEGIN {_SQLITE_REMOVE} END",
}

# PostgreSQL: one function for the three events. When an account moves from one count to
# another, the two rows are changed in key order, so two transactions moving accounts in
# opposite directions cannot deadlock on them.
POSTGRES_COUNTS = """
CREATE FUNCTION account_counts_add(who integer, what varchar, delta integer) RETURNS void AS $$
    INSERT INTO account_counts (salesperson_id, status, accounts) VALUES (who, what, delta)
    ON CONFLICT (salesperson_id, status) DO UPDATE SET accounts = account_counts.accounts + delta
$$ LANGUAGE sql;

CREATE FUNCTION account_counts_follow() RETURNS trigger AS $$
DECLARE
    counted_before boolean := TG_OP <> 'INSERT' AND OLD.deleted_at IS NULL;
    counted_now boolean := TG_OP <> 'DELETE' AND NEW.deleted_at IS NULL;
    old_key text;
    new_key text;
BEGIN
    IF counted_before THEN old_key := coalesce(OLD.salesperson_id, 0)::text || '/' || OLD.status; END IF;
    IF counted_now THEN new_key := coalesce(NEW.salesperson_id, 0)::text || '/' || NEW.status; END IF;
    IF counted_before AND counted_now AND old_key = new_key THEN
        RETURN NULL;
    END IF;
    IF counted_before AND counted_now AND new_key < old_key THEN
        PERFORM account_counts_add(coalesce(NEW.salesperson_id, 0), NEW.status, 1);
        counted_now := false;
    END IF;
    IF counted_before THEN
        PERFORM account_counts_add(coalesce(OLD.salesperson_id, 0), OLD.status, -1);
    END IF;
    IF counted_now THEN
        PERFORM account_counts_add(coalesce(NEW.salesperson_id, 0), NEW.status, 1);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER account_counts_follow AFTER INSERT OR DELETE OR UPDATE OF status, salesperson_id, deleted_at
ON accounts FOR EACH ROW EXECUTE FUNCTION account_counts_follow();
"""

COUNT_BACKFILL = (
    "INSERT INTO account_counts (salesperson_id, status, accounts) "
    "SELECT coalesce(salesperson_id, 0), status, count(*) FROM accounts "
    "WHERE deleted_at IS NULL GROUP BY coalesce(salesperson_id, 0), status"
)

# unaccent() with one argument is only STABLE (it reads the search path), so indexes need this
# IMMUTABLE wrapper naming the dictionary. portal_customer_search is the customer's document:
# name, email, phone and the phone's digits (so "480-555-0134" finds "+1 480 555 0134").
POSTGRES_SEARCH = """
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE FUNCTION portal_fold(text) RETURNS text AS $$
    SELECT lower(public.unaccent('public.unaccent'::regdictionary, $1))
$$ LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION portal_customer_search(name text, email text, phone text) RETURNS text AS $$
    SELECT portal_fold(name || ' ' || email || ' ' || phone || ' ' || regexp_replace(phone, '[^0-9]', '', 'g'))
$$ LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE;
CREATE INDEX ix_customers_search ON customers
    USING gin (portal_customer_search(name, email, phone) gin_trgm_ops);
CREATE INDEX ix_accounts_address_search ON accounts USING gin (portal_fold(service_address) gin_trgm_ops);
CREATE INDEX ix_invoices_number_search ON invoices USING gin (lower(number) gin_trgm_ops);
"""


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "account_counts",
        sa.Column("salesperson_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("accounts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("salesperson_id", "status", name=op.f("pk_account_counts")),
    )
    # Plain CREATE/DROP INDEX (no batch copy of the tables: that would drop SQLite's triggers).
    op.create_index("ix_customers_name", "customers", ["name"])
    op.drop_index("ix_accounts_first_visit", table_name="accounts")
    op.create_index("ix_accounts_first_visit_id", "accounts", ["first_visit", "id"])
    op.drop_index("ix_accounts_status_link_sent", table_name="accounts")
    op.create_index(
        "ix_accounts_status_link_sent", "accounts", ["status", "link_sent_at", "deleted_at", "salesperson_id"]
    )
    op.execute(COUNT_BACKFILL)
    if postgres:
        op.execute(POSTGRES_COUNTS)
        op.execute(POSTGRES_SEARCH)
        return
    for name, body in SQLITE_COUNT_TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {body}")
    op.execute(
        "CREATE VIRTUAL TABLE account_search USING fts5(body, tokenize = 'unicode61 remove_diacritics 2')"
    )
    op.execute(SQLITE_SOURCE)
    for name, body in SQLITE_SEARCH_TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {body}")
    op.execute("INSERT INTO account_search (rowid, body) SELECT account_id, body FROM account_search_source")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for index in ("ix_invoices_number_search", "ix_accounts_address_search", "ix_customers_search"):
            op.execute(f"DROP INDEX IF EXISTS {index}")
        op.execute("DROP FUNCTION IF EXISTS portal_customer_search(text, text, text)")
        op.execute("DROP FUNCTION IF EXISTS portal_fold(text)")
        op.execute("DROP TRIGGER IF EXISTS account_counts_follow ON accounts")
        op.execute("DROP FUNCTION IF EXISTS account_counts_follow()")
        op.execute("DROP FUNCTION IF EXISTS account_counts_add(integer, varchar, integer)")
    else:
        for name in (*SQLITE_SEARCH_TRIGGERS, *SQLITE_COUNT_TRIGGERS):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP VIEW IF EXISTS account_search_source")
        op.execute("DROP TABLE IF EXISTS account_search")
    op.drop_index("ix_accounts_status_link_sent", table_name="accounts")
    op.create_index("ix_accounts_status_link_sent", "accounts", ["status", "link_sent_at"])
    op.drop_index("ix_accounts_first_visit_id", table_name="accounts")
    op.create_index("ix_accounts_first_visit", "accounts", ["first_visit"])
    op.drop_index("ix_customers_name", table_name="customers")
    op.drop_table("account_counts")
