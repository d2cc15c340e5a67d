"""Logos saved as a path inside static/ (before uploads, tests/test_settings.py) keep showing;
migration 0007 moved saved site paths inside static/ and dropped the rest."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from portal import create_app, migrate
from portal.models import CompanySettings
from tests.conftest import TEST_SETTINGS
from tests.test_migrations import empty_database_url  # noqa: F401 (fixture)

GOOD = {"name": "Blue Lagoon", "brand_color": "#123456", "currency": "USD"}


@pytest.fixture
def admin(staff, make_staff):
    staff.login(make_staff("admin"))


def test_a_logo_saved_as_a_path_inside_static_still_shows_until_an_upload_replaces_it(client, db, admin):
    db.add(
        CompanySettings(name="Blue Lagoon", brand_color="#123456", currency="USD", logo_url="img/logo.png")
    )
    db.commit()
    page = client.get("/staff/").get_data(as_text=True)
    assert '<img src="/static/img/logo.png"' in page.split("</header>")[0]
    # Saving the settings without touching the logo keeps it.
    assert client.post("/staff/settings", data=GOOD).status_code == 302
    db.expire_all()
    assert db.scalars(select(CompanySettings)).one().logo_url == "img/logo.png"


def test_the_migration_moves_saved_site_paths_inside_static_and_drops_the_rest(
    empty_database_url, tmp_path, monkeypatch
):
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app({**TEST_SETTINGS, "DATABASE_URL": empty_database_url})
    engine = app.extensions["portal.engine"]

    def saved_logo_after(logo: str, revision: str) -> str:
        migrate.downgrade(app, "base")
        migrate.upgrade(app, "0006")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO company_settings (id, name, phone, email, office_email, "
                    "logo_url, brand_color, currency, timezone, readiness_checklist) "
                    "VALUES (1, 'Co', '', '', '', :logo, '#000000', 'USD', 'UTC', '[]')"
                ),
                {"logo": logo},
            )
        migrate.upgrade(app, revision)
        with engine.connect() as conn:
            return conn.execute(text("SELECT logo_url FROM company_settings")).scalar_one()

    try:
        migrate.upgrade(app)
        assert saved_logo_after("/static/img/logo.png", "head") == "img/logo.png"
        assert saved_logo_after("/uploads/../logo.png", "head") == ""
        assert saved_logo_after("", "head") == ""
        assert saved_logo_after("/static/logo.png", "head") == "logo.png"
        migrate.downgrade(app, "0006")
        with engine.connect() as conn:
            assert (
                conn.execute(text("SELECT logo_url FROM company_settings")).scalar_one() == "/static/logo.png"
            )
    finally:
        engine.dispose()
