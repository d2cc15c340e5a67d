"""Signed customer links: one serializer per purpose, keys that can rotate, revocable nonces.

A link carries the account id and a random per-account nonce, nothing personal; the database
keeps only the nonce's hash, and issuing a new link replaces it, so older links stop working.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from portal.models import Account

SALTS = {
    "welcome": "handoff-portal.welcome-link.v1",
    "pay": "handoff-portal.pay-link.v1",
    "email-change": "handoff-portal.email-change.v1",
    # Staff links to choose a password (portal.staff_admin): their own salts, so neither opens
    # the other's page nor any customer's.
    "staff-invite": "handoff-portal.staff-invite.v1",
    "password-reset": "handoff-portal.password-reset.v1",
    # The single-use "did your first visit match?" link (portal.first_visit).
    "first-visit-feedback": "handoff-portal.first-visit-feedback.v1",
}


class LinkStatus(enum.Enum):
    OK = "ok"
    EXPIRED = "expired"
    INVALID = "invalid"


@dataclass(frozen=True)
class LinkCheck:
    status: LinkStatus
    account: Account | None = None
    nonce_hash: str = ""


def hash_nonce(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


def serializer(purpose: str) -> URLSafeTimedSerializer:
    keys = [*current_app.config.get("SECRET_KEY_FALLBACKS", []), current_app.config["SECRET_KEY"]]
    # itsdangerous signs with the last key and accepts any of them.
    return URLSafeTimedSerializer(keys, salt=SALTS[purpose])


def max_age() -> timedelta:
    return timedelta(days=current_app.config["LINK_MAX_AGE_DAYS"])


def rotate_nonce(account: Account) -> str:
    nonce = secrets.token_urlsafe(24)
    account.link_nonce_hash = hash_nonce(nonce)
    return nonce


def make_token(account: Account, nonce: str, purpose: str = "welcome") -> str:
    return serializer(purpose).dumps({"a": account.id, "n": nonce})


def welcome_url(token: str) -> str:
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    return f"{base}/welcome/t/{token}"


def public_url(endpoint: str, **values: Any) -> str:
    """An absolute address on PUBLIC_BASE_URL, for emails (built outside any request too)."""
    base = urlsplit(current_app.config["PUBLIC_BASE_URL"])
    adapter = current_app.url_map.bind(
        base.netloc, script_name=base.path.rstrip("/") or "/", url_scheme=base.scheme or "https"
    )
    return adapter.build(endpoint, values, force_external=True)


def issue_welcome_link(account: Account) -> str:
    """Rotate the account's nonce (revoking older links) and return the new link."""
    return welcome_url(make_token(account, rotate_nonce(account)))


def load_payload(
    token: str, purpose: str, max_age_for: timedelta, **shape: type
) -> dict[str, Any] | LinkStatus:
    """A signed link's payload, if its signature holds, it is younger than `max_age_for` and
    each named field has its type; else why not (EXPIRED or INVALID). Every signed link (the
    customer's, the staff invite and reset) is read here."""
    try:
        payload = serializer(purpose).loads(token, max_age=int(max_age_for.total_seconds()))
    except SignatureExpired:
        return LinkStatus.EXPIRED
    except BadSignature:
        return LinkStatus.INVALID
    if not isinstance(payload, dict) or not all(
        isinstance(payload.get(name), kind) and not isinstance(payload.get(name), bool)
        for name, kind in shape.items()
    ):
        return LinkStatus.INVALID
    return payload


def check_token(session: Session, token: str, purpose: str = "welcome") -> LinkCheck:
    """Expired, invalid (tampered, wrong purpose, revoked, deleted account) or the account."""
    payload = load_payload(token, purpose, max_age(), a=int, n=str)
    if isinstance(payload, LinkStatus):
        return LinkCheck(payload)
    account = session.get(Account, payload["a"])
    nonce_hash = hash_nonce(payload["n"])
    if (
        account is None
        or account.deleted_at is not None
        or account.link_nonce_hash is None
        or not secrets.compare_digest(account.link_nonce_hash, nonce_hash)
    ):
        return LinkCheck(LinkStatus.INVALID)
    return LinkCheck(LinkStatus.OK, account, nonce_hash)
