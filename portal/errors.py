"""Error pages that fit the layout and say nothing about the internals; JSON for the API."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable

log = logging.getLogger(__name__)

MESSAGES = {
    400: ("Something in that request was not right", "Go back, check the form and try again."),
    401: ("Please sign in", "That needs a valid sign-in or API token."),
    403: ("Not allowed", "Your account cannot open this page."),
    404: ("Page not found", "The page does not exist, or it is not yours to see."),
    405: ("Not allowed", "That page cannot be used this way."),
    409: ("Someone else saved first", "Reload the page to see the latest version, then try again."),
    413: ("Too much at once", "That upload or form was larger than we accept."),
    415: ("Wrong format", "Send the request as JSON."),
    429: ("Too many attempts", "Please wait a few minutes and try again."),
    500: ("Something went wrong on our side", "We have been told. Please try again in a minute."),
    503: ("We are briefly unavailable", "Nothing you saved was lost. Please try again in a minute."),
}


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path.startswith("/stripe/")


def error_response(status: int, message: str | None = None) -> tuple[Response | str, int]:
    title, default = MESSAGES.get(status, MESSAGES[500])
    if wants_json():
        return jsonify({"error": message or title}), status
    return render_template(
        "errors/error.html", status=status, title=title, message=message or default
    ), status


def register(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(_error: CSRFError) -> tuple[Response | str, int]:
        return error_response(
            400, "This form has expired or was sent from elsewhere. Reload the page and try again."
        )

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        response = app.make_response(error_response(error.code or 500))
        for name in ("Retry-After", "Allow", "WWW-Authenticate"):
            value = error.get_response().headers.get(name)
            if value:
                response.headers[name] = value
        return response

    @app.errorhandler(StaleDataError)
    def stale(_error: StaleDataError) -> tuple[Response | str, int]:
        _rollback()
        return error_response(409)

    @app.errorhandler(OperationalError)
    def database_down(error: OperationalError) -> tuple[Response | str, int]:
        _rollback()
        # Draw the page as signed out: loading the staff user for the layout needs the database
        # (Flask-Login's template context asks the user loader, which reads this).
        g.database_unavailable = True
        log.error("database error (request %s): %s", g.get("request_id"), error.orig)
        return error_response(ServiceUnavailable.code)

    @app.errorhandler(InternalServerError)
    def server_error(error: InternalServerError) -> tuple[Response | str, int]:
        _rollback()
        log.error("unhandled error (request %s)", g.get("request_id"), exc_info=error.original_exception)
        return error_response(500)


def _rollback() -> None:
    session = g.get("db")
    if session is not None:
        session.rollback()
