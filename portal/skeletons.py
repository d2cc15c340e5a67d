"""Pages rendered once with slots where each visitor's own values go.

The welcome page is the first page of every customer in a Monday burst and nearly all of it is
the same for all of them: the layout, the progress bar (a few combinations of done steps), the
text. It is rendered once per shape, with a slot for each personal value (name, address, the
CSRF token, the one-time form id), and filled per request by escaping the values into the slots:
what Jinja's autoescape would have written. No skeleton holds anything personal, so one shared
by all customers cannot show anyone another's data. Kept per process, for one snapshot of the
company settings (their name and contacts are in every page), bounded in number.
"""
from __future__ import annotations

import re
import secrets
from collections.abc import Hashable
from typing import Any

from flask import current_app, g, render_template, request, session
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup, escape

from portal.company import get_company

SKELETONS = "portal.skeletons"
SKELETONS_KEPT = 256
# Unguessable per process: no value a visitor types can contain a slot's mark.
_MARK = f"slot{secrets.token_hex(12)}"
_SLOT = re.compile(_MARK + r"\.(\w+)\.")
CSRF_SLOT = "csrf_token"


def slot(name: str) -> Markup:
    return Markup(f"{_MARK}.{name}.")


class _Kept:
    def __init__(self, company: object) -> None:
        self.company = company
        self.parts: dict[Hashable, list[str]] = {}


def render_filled(template: str, shape: Hashable, personal: dict[str, str], **context: Any) -> str:
    """render_template(template, **personal, **context) for a page whose `shape` (with the
    template, the context's every value that is not in `personal`) decides all but the
    `personal` values, which the template must show as they are (no filters)."""
    if session.get("_flashes"):
        # A message for this visitor alone goes in the layout: render this one in full.
        return render_template(template, **personal, **context)
    parts = _skeleton(template, shape, personal.keys(), context)
    values = {name: escape(value) for name, value in personal.items()}
    values[CSRF_SLOT] = Markup(generate_csrf())
    # Even positions are the skeleton's text, odd ones the slots' names.
    return "".join(part if index % 2 == 0 else values[part] for index, part in enumerate(parts))


def _skeleton(template: str, shape: Hashable, names: Any, context: dict[str, Any]) -> list[str]:
    company = get_company()
    kept: _Kept | None = current_app.extensions.get(SKELETONS)
    if kept is None or kept.company is not company or len(kept.parts) >= SKELETONS_KEPT:
        kept = current_app.extensions[SKELETONS] = _Kept(company)
    key = (template, request.script_root, shape)
    parts = kept.parts.get(key)
    if parts is None:
        parts = kept.parts[key] = _SLOT.split(_render_with_slots(template, names, context))
    return parts


def _render_with_slots(template: str, names: Any, context: dict[str, Any]) -> str:
    real = generate_csrf()  # keeps the session's raw token and this request's signed one
    g.csrf_token = slot(CSRF_SLOT)  # what the csrf_token() global hands the template
    try:
        return render_template(template, **{name: slot(name) for name in names}, **context)
    finally:
        g.csrf_token = real
