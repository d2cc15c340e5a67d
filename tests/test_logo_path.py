"""The company logo (until upload exists) is a plain path inside static/: no backslashes, no
`..`, no control characters, no scheme, no absolute path. A refused path saves nothing."""
from __future__ import annotations

import pytest
from sqlalchemy import select, text

from portal import create_app, migrate
from portal.models import CompanySettings
from tests.conftest import TEST_SETTINGS, count_rows
from tests.test_migrations import empty_database_url  # noqa: F401 (fixture)

GOOD = {"name": "Blue Lagoon", "brand_color": "#123456", "currency": "USD"}


@pytest.fixture
def admin(staff, make_staff):
    staff.login(make_staff("admin"))


@pytest.mark.parametrize("logo, message", [
    ("img\\logo.png", "not backslashes"),
    ("..\\..\\secret.png", "not backslashes"),
    ("img/../../config.png", "cannot leave the static/ folder"),
    ("../logo.png", "cannot leave the static/ folder"),
    ("img/logo\n.png", "must be one line"),
    ("logo\x1b.png", "must be one line"),
    ("javascript:alert(1)", "not a web address"),
    ("JavaScript:alert(1)//.png", "not a web address"),
    ("http://evil.example/logo.png", "not a web address"),
    ("data:image/png;base64,AAAA", "not a web address"),
    ("//evil.example/logo.png", "not a web address"),
    ("/etc/passwd", "not starting with /"),
    ("/static/logo.png", "not starting with /"),
    ("logo.svg", "like img/logo.png"),
    ("img/logo png.png", "like img/logo.png"),
    (".hidden.png", "like img/logo.png"),
])
def test_a_bad_logo_path_is_refused_and_nothing_is_saved(client, db, admin, logo, message):
    response = client.post("/staff/settings", data={**GOOD, "logo_url": logo})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert count_rows(db, CompanySettings) == 0


def test_a_bad_logo_path_leaves_the_saved_one_unchanged(client, db, admin):
    assert client.post("/staff/settings", data={**GOOD, "logo_url": "img/logo.png"}).status_code == 302
    assert client.post("/staff/settings", data={**GOOD, "logo_url": "javascript:x"}).status_code == 400
    db.expire_all()
    assert db.scalars(select(CompanySettings)).one().logo_url == "img/logo.png"


@pytest.mark.parametrize("logo, stored", [
    ("logo.png", "logo.png"),
    ("img/brand-2.JPEG", "img/brand-2.JPEG"),
    ("static/img/logo.webp", "img/logo.webp"),
    ("", ""),
])
def test_a_plain_path_inside_static_is_saved_and_shown_from_static(client, db, admin, logo, stored):
    assert client.post("/staff/settings", data={**GOOD, "logo_url": logo}).status_code == 302
    assert db.scalars(select(CompanySettings)).one().logo_url == stored
    page = client.get("/staff/").get_data(as_text=True)
    if stored:
        assert f'<img src="/static/{stored}"' in page
    else:
        assert "<img" not in page.split("</header>")[0]


def test_the_migration_moves_saved_site_paths_inside_static_and_drops_the_rest(
        empty_database_url, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app({**TEST_SETTINGS, "DATABASE_URL": empty_database_url})
    engine = app.extensions["portal.engine"]

    def saved_logo_after(logo: str, revision: str) -> str:
        migrate.downgrade(app, "base")
        migrate.upgrade(app, "0006")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO company_settings (id, name, phone, email, office_email, "
                              "logo_url, brand_color, currency, timezone, readiness_checklist) "
                              "VALUES (1, 'Co', '', '', '', :logo, '#000000', 'USD', 'UTC', '[]')"),
                         {"logo": logo})
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
            assert conn.execute(text("SELECT logo_url FROM company_settings")).scalar_one() == \
                "/static/logo.png"
    finally:
        engine.dispose()
