"""Every email is a `.txt` + `.html` pair from `emails/`, written to the outbox table in the
caller's transaction; `outbox send` (portal.outbox) delivers it later. Nothing is sent from a
request thread."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import current_app
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session

from portal.brand import ink_for, readable_brand
from portal.company import get_company, local_time
from portal.handoffs import display_value
from portal.models import Account, OutboxEmail
from portal.money import format_money
from portal.secret_codes import blank_codes, mailed_value, promise_lines, summary_lines, without_codes

EMAILS = Path(__file__).resolve().parent.parent / "emails"


def email_environment() -> Environment:
    env = current_app.extensions.get("portal.email_env")
    if env is None:
        # HTML parts autoescape (customer text in them must not become markup); text parts not.
        env = Environment(
            loader=FileSystemLoader(EMAILS),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.globals.update(
            money=format_money,
            ink_for=ink_for,
            brand=readable_brand,
            promise_lines=promise_lines,
            summary_lines=summary_lines,
        )
        env.filters["shown"] = display_value
        env.filters["local"] = local_time
        env.filters["blank_codes"] = blank_codes
        env.filters["mailed"] = mailed_value
        env.filters["without_codes"] = without_codes
        current_app.extensions["portal.email_env"] = env
    return env


def render_email(template: str, context: dict[str, Any]) -> tuple[str, str]:
    env = email_environment()
    full = {"company": get_company(), **context}
    return env.get_template(f"{template}.txt").render(full), env.get_template(f"{template}.html").render(full)


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


def queue_email(
    session: Session,
    *,
    template: str,
    to: str,
    subject: str,
    context: dict[str, Any],
    account: Account | None = None,
    attachments: Sequence[Attachment] = (),
) -> OutboxEmail:
    """Render both parts and add the outbox row; the caller's commit makes it real."""
    text_body, html_body = render_email(template, context)
    email = OutboxEmail(
        account_id=account.id if account is not None else None,
        kind=template,
        to_address=to,
        # One line whatever went into it: a line break in a header fails the email for good,
        # and names saved before single-line fields were checked may still hold one.
        subject=" ".join(subject.split()),
        text_body=text_body,
        html_body=html_body,
        attachments=[
            {
                "filename": item.filename,
                "content_type": item.content_type,
                "data": base64.b64encode(item.data).decode(),
            }
            for item in attachments
        ],
    )
    session.add(email)
    return email
