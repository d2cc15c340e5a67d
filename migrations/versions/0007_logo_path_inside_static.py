"""logo path inside static/

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

The company logo used to be stored as a site path ("/static/logo.png"); it is now the file's
path inside static/ ("logo.png"), checked when saved. Saved values move to the new form; one
that does not name a plain image file under static/ is cleared (the logo then simply does not
show) rather than kept where the page would no longer check it.
"""

import re

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The rule of portal.company.clean_logo_path, as it stood when this was written.
LOGO_PATH = re.compile(
    r"[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*"
    r"\.(png|jpe?g|gif|webp)",
    re.IGNORECASE,
)
company = sa.table("company_settings", sa.column("id", sa.Integer), sa.column("logo_url", sa.String))


def _rewrite(convert) -> None:  # type: ignore[no-untyped-def]
    conn = op.get_bind()
    for row_id, logo in conn.execute(sa.select(company.c.id, company.c.logo_url)).all():
        new = convert(logo or "")
        if new != (logo or ""):
            conn.execute(company.update().where(company.c.id == row_id).values(logo_url=new))


def _inside_static(logo: str) -> str:
    path = logo.strip().removeprefix("/static/")
    return path if LOGO_PATH.fullmatch(path) else ""


def upgrade() -> None:
    _rewrite(_inside_static)


def downgrade() -> None:
    _rewrite(lambda logo: f"/static/{logo}" if logo else "")
