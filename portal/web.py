"""Per-request plumbing shared by every blueprint: request ids, headers, the company in templates."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, jsonify, request

from portal import keyset
from portal.brief import map_url, tel_uri
from portal.company import get_company, local_time
from portal.deliverables import when_for_customer
from portal.errors import error_response, wants_json
from portal.handoffs import display_value
from portal.money import format_money
from portal.secret_codes import screened, without_codes

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self' https://checkout.stripe.com",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)
STRIPE_CHECKOUT = "https://checkout.stripe.com"


def checkout_origin(config: Mapping[str, Any]) -> str:
    """Where a payment form's redirect goes (form-action covers the redirect after a POST):
    STRIPE_CHECKOUT_ORIGIN, else the origin of STRIPE_API_BASE (the tests' local Stripe serves
    its Checkout pages there), else Stripe's. Demo mode stays on this site ('self')."""
    if config.get("STRIPE_CHECKOUT_ORIGIN"):
        return str(config["STRIPE_CHECKOUT_ORIGIN"]).rstrip("/")
    parts = urlsplit(str(config.get("STRIPE_API_BASE") or ""))
    if parts.scheme and parts.netloc and not parts.netloc.endswith("stripe.com"):
        return f"{parts.scheme}://{parts.netloc}"
    return STRIPE_CHECKOUT


def content_security_policy(config: Mapping[str, Any]) -> str:
    origin = checkout_origin(config)
    policy = CSP if origin == STRIPE_CHECKOUT else CSP.replace(STRIPE_CHECKOUT, origin)
    images = config.get("STORAGE_IMAGE_ORIGIN")  # photos in S3: presigned URLs load from there
    return policy.replace("img-src 'self' data:", f"img-src 'self' data: {images}") if images else policy


REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def register(app: Flask) -> None:
    app.before_request(_assign_request_id)
    # A URL preprocessor runs before every before_request hook, CSRF's among them, which reads
    # the body: the view's own limit must be in place by then.
    app.url_value_preprocessor(_apply_body_limit)
    app.before_request(_refuse_nul_characters)
    app.after_request(_security_headers)
    app.context_processor(lambda: {"company": get_company(), "money": format_money})
    app.add_template_filter(display_value, "shown")
    app.add_template_filter(tel_uri, "tel_uri")
    app.add_template_filter(map_url, "map_url")
    app.add_template_filter(without_codes, "without_codes")
    app.add_template_filter(screened, "screened")
    app.add_template_filter(local_time, "local")
    app.add_template_filter(keyset.count_text, "count_text")
    app.add_template_global(when_for_customer, "promise_when")


F = TypeVar("F", bound=Callable[..., Any])


def body_limit(limit: int) -> Callable[[F], F]:
    """A larger MAX_CONTENT_LENGTH for one view (an upload form): place it right under the
    route decorator."""

    def decorator(view: F) -> F:
        # Read per request by the body-size check; functions take attributes, mypy doesn't know it.
        view.max_content_length = limit  # type: ignore[attr-defined]
        return view

    return decorator


def _apply_body_limit(endpoint: str | None, _values: dict[str, Any] | None) -> None:
    view = current_app.view_functions.get(endpoint or "")
    limit = getattr(view, "max_content_length", None)
    if limit is not None:
        request.max_content_length = limit


def _assign_request_id() -> None:
    """Keep a well-formed id from the proxy so logs line up; otherwise make one."""
    incoming = request.headers.get("X-Request-Id", "")
    g.request_id = incoming if REQUEST_ID_PATTERN.match(incoming) else secrets.token_hex(8)


NUL_MESSAGE = "That contained a character that cannot be saved (NUL, U+0000). Remove it and try again."


def _refuse_nul_characters() -> Response | tuple[Response | str, int] | None:
    """No one types NUL and PostgreSQL cannot store it in text (a 500 there, stored as-is on
    SQLite): refuse it in any field or query parameter, alike on both databases, before a view
    sees it. In a JSON body it can only appear escaped, as \\u0000."""
    found = any("\x00" in value for _, values in request.args.lists() for value in values)
    if not found and request.method not in ("GET", "HEAD", "OPTIONS"):
        if request.is_json:
            found = b"\\u0000" in request.get_data()  # cached: the view reads it again
        else:
            found = any("\x00" in value for _, values in request.form.lists() for value in values)
    if not found:
        return None
    if wants_json():
        return jsonify({"errors": {"body": NUL_MESSAGE}}), 400
    return error_response(400, NUL_MESSAGE)


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", content_security_policy(current_app.config))
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    # same-origin rather than no-referrer: Flask-WTF checks the Referer on HTTPS posts.
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if "request_id" in g:
        headers["X-Request-Id"] = g.request_id
    if request.endpoint and not request.endpoint.endswith("static"):
        headers.setdefault("Cache-Control", "no-store")
    return response
