from __future__ import annotations

import re

from flask import Blueprint, Response, jsonify, render_template
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from portal.company import get_company, ink_for
from portal.db import get_db
from portal.extensions import csrf, limiter

bp = Blueprint("core", __name__)
HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


@bp.get("/")
def index() -> str:
    return render_template("index.html")


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
    colour = get_company().brand_color
    if not HEX_COLOUR.match(colour or ""):
        colour = "#0b5cab"
    body = f":root{{--brand:{colour};--brand-ink:{ink_for(colour)};}}\n"
    response = Response(body, mimetype="text/css")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response

