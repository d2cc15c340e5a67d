from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, jsonify, render_template, send_from_directory
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from portal import agreement, logo, sms
from portal.brand import ink_for, readable_brand
from portal.company import get_company
from portal.db import get_db
from portal.extensions import csrf, limiter

bp = Blueprint("core", __name__)


@bp.get("/")
def index() -> str:
    return render_template("index.html")


@bp.get("/terms")
def terms() -> str:
    """The service terms in force and the text-message program's terms (linked from the
    contact step's consents, as carriers ask)."""
    return render_template("terms.html", terms=agreement.current_terms(get_db()), sms=sms)


@bp.get("/privacy")
def privacy() -> str:
    return render_template("privacy.html")


@bp.get("/healthz")
@limiter.exempt
@csrf.exempt
def healthz() -> tuple[Response, int]:
    try:
        get_db().execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        get_db().rollback()
        reason = type(getattr(error, "orig", error)).__name__
        return jsonify({"status": "unavailable", "database": f"unreachable ({reason})"}), 503
    return jsonify({"status": "ok", "database": "ok"}), 200


@bp.get("/brand.css")
def brand_css() -> Response:
    """The company colour as a stylesheet: the CSP allows no inline styles."""
    colour = readable_brand(get_company().brand_color)
    body = f":root{{--brand:{colour};--brand-ink:{ink_for(colour)};}}\n"
    response = Response(body, mimetype="text/css")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/logo/<name>")
def logo_file(name: str) -> Response:
    """An uploaded logo: always a PNG the portal wrote itself (portal/logo.py); named by its
    content, so browsers may keep it for good."""
    if not logo.NAME.fullmatch(name):
        abort(404)
    response = send_from_directory(logo.folder(), name, mimetype="image/png", max_age=31536000)
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


@bp.get("/favicon.ico")
def favicon() -> Response:
    """Browsers ask for /favicon.ico whatever the page says (feed readers, PDFs): the same
    file the layouts link to in static/."""
    response = current_app.send_static_file("favicon.ico")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response
