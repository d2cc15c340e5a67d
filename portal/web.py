"""Per-request plumbing shared by every blueprint: request ids, headers, the company in templates."""
from __future__ import annotations

import re
import secrets

from flask import Flask, Response, g, request

from portal.company import get_company
from portal.handoffs import display_value
from portal.money import format_money

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
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def register(app: Flask) -> None:
    app.before_request(_assign_request_id)
    app.after_request(_security_headers)
    app.context_processor(lambda: {"company": get_company(), "money": format_money})
    app.add_template_filter(display_value, "shown")


def _assign_request_id() -> None:
    """Keep a well-formed id from the proxy so logs line up; otherwise make one."""
    incoming = request.headers.get("X-Request-Id", "")
    g.request_id = incoming if REQUEST_ID_PATTERN.match(incoming) else secrets.token_hex(8)


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
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
