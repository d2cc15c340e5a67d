"""The app factory, configuration, health check, error pages and headers."""

from __future__ import annotations

import pytest
from flask import abort

from portal import create_app
from portal.config import ConfigError
from tests.conftest import BACKEND


def test_production_without_secret_key_refuses_to_start(monkeypatch, tmp_path):
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="SECRET_KEY is not set"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3"})


def test_development_generates_a_secret_key_once_and_keeps_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("PORTAL_ENV", "development")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    first = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3"})
    second = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3"})
    assert len(first.config["SECRET_KEY"]) == 64
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("SECRET_KEY", "from-env")
    monkeypatch.setenv("MAIL_BACKEND", "smtp")
    monkeypatch.setenv("SMTP_PORT", "2525")
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://portal.example.com")
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3"})
    assert app.config["SECRET_KEY"] == "from-env"
    assert app.config["MAIL_BACKEND"] == "smtp"
    assert app.config["SMTP_PORT"] == 2525
    assert app.config["PUBLIC_BASE_URL"] == "https://portal.example.com"


def test_links_point_at_the_development_server_port_unless_a_base_url_is_given(monkeypatch, tmp_path):
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path))
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    monkeypatch.setenv("PORT", "5001")  # PORT=5001 make run
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3"})
    assert app.config["PUBLIC_BASE_URL"] == "http://127.0.0.1:5001"
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://portal.example.com")
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3"})
    assert app.config["PUBLIC_BASE_URL"] == "https://portal.example.com"


def test_every_audience_has_its_blueprint(app):
    assert {"welcome", "staff", "api", "payments"} <= set(app.blueprints)


def test_healthz_reports_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_healthz_is_503_when_the_database_is_unreachable(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("PORTAL_INSTANCE_PATH", str(tmp_path / "instance"))
    unreachable = (
        "postgresql://postgres@127.0.0.1:1/nothing"
        if BACKEND == "postgres"
        else f"sqlite:///{tmp_path}/missing-dir/nothing.sqlite3"
    )
    app = create_app({**settings, "DATABASE_URL": unreachable})
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["database"].startswith("unreachable")


@pytest.mark.parametrize("path, status", [("/no-such-page", 404), ("/staff/login", 405)])
def test_error_pages_fit_the_layout(client, path, status):
    response = client.put(path) if status == 405 else client.get(path)
    assert response.status_code == status
    page = response.get_data(as_text=True)
    assert "<main" in page and "app.css" in page
    assert "Traceback" not in page


def test_500_page_leaks_nothing_and_rolls_back(app, client):
    @app.get("/boom")
    def boom():  # pragma: no cover - the view exists to fail
        raise RuntimeError("secret internal detail")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = client.get("/boom")
    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert "Something went wrong" in page
    assert "secret internal detail" not in page and "RuntimeError" not in page


def test_403_and_400_pages(app, client):
    @app.get("/forbidden")
    def forbidden():
        abort(403)

    @app.get("/bad")
    def bad():
        abort(400)

    assert "Not allowed" in client.get("/forbidden").get_data(as_text=True)
    assert client.get("/bad").status_code == 400


def test_api_errors_are_json(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.is_json and "error" in response.get_json()


@pytest.mark.parametrize("path", ["/", "/staff/login", "/no-such-page"])
def test_security_headers_on_every_kind_of_page(client, path):
    headers = client.get(path).headers
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] in {"no-referrer", "same-origin"}
    assert "Strict-Transport-Security" not in headers  # plain HTTP here


def test_hsts_over_https(client):
    response = client.get("/", base_url="https://localhost")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_request_body_over_the_limit_gets_413(app, client):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    response = client.post("/staff/login", data={"email": "a@example.com", "password": "x" * 5000})
    assert response.status_code == 413


def test_brand_stylesheet_uses_the_company_colour_with_readable_text(client, db):
    from portal.models import CompanySettings

    db.add(CompanySettings(name="Sunny Pools", brand_color="#0b5cab", readiness_checklist=[]))
    db.commit()
    css = client.get("/brand.css").get_data(as_text=True)
    assert "--brand:#0b5cab" in css
    assert "--brand-ink:#ffffff" in css
    assert "Sunny Pools" in client.get("/").get_data(as_text=True)
    # A yellow saved before the contrast check is drawn in a readable shade of itself
    # (tests/test_settings.py has the rule).
    db.execute(CompanySettings.__table__.update().values(brand_color="#ffe066"))
    db.commit()
    client.application.extensions.pop("portal.company_cache", None)
    css = client.get("/brand.css").get_data(as_text=True)
    assert "--brand:#ffe066" not in css and "--brand-ink:#ffffff" in css


def test_pages_use_no_third_party_assets(client):
    page = client.get("/staff/login").get_data(as_text=True)
    assert "http://" not in page.replace("http://localhost", "")
    assert "https://" not in page
