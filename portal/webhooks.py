"""Signed outgoing webhooks: `invoice.paid`, `account.signed`, `difference.decided`, posted to
the URL an admin sets in Settings, so the company's other systems learn what happened.

One delivery path: an event is an outbox row (kind `webhook`) written in the transaction of the
change it reports, and `outbox send` / the worker deliver it with the emails' claims, leases,
retries and backoff (portal/outbox.py); only the last step differs, an HTTPS POST instead of
SMTP. No URL set: nothing is queued.

Signature (Stripe's scheme): header `Portal-Signature: t=TIMESTAMP,v1=HEX`, where HEX is
HMAC-SHA256 under the webhook secret of `TIMESTAMP + "." + BODY` (the raw bytes), TIMESTAMP the
Unix time of this attempt. Receivers recompute it over the raw body, compare in constant time
and refuse a timestamp more than five minutes away. The secret (`whsec_...`) is shown once when
it is made; a new one replaces it.

SSRF: the URL must be https in production, and an address that resolves to a private, loopback,
link-local or otherwise internal network is refused on saving and again at each delivery (the
connection goes to the very address that was checked, so DNS cannot switch it in between).
WEBHOOK_ALLOW_PRIVATE (on outside production) and WEBHOOK_ALLOW_HTTP allow them for tests and
development.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import secrets
import socket
import ssl
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.company import get_company
from portal.db import utcnow
from portal.models import CompanySettings, OutboxEmail

KIND = "webhook"
EVENTS = ("invoice.paid", "invoice.voided", "invoice.refunded", "account.signed", "difference.decided")
SIGNATURE_HEADER = "Portal-Signature"
SECRET_PREFIX = "whsec_"
MAX_URL = 254  # it travels in the outbox row's address column
RESPONSE_READ_LIMIT = 4096


class WebhookUrlError(ValueError):
    """A URL the portal will not post to; the message is for people. `internal`: it points
    into a private network (as opposed to a name that does not resolve right now)."""

    def __init__(self, message: str, *, internal: bool = True) -> None:
        super().__init__(message)
        self.internal = internal


class WebhookFailed(Exception):
    """A delivery that did not get a 2xx. `permanent`: retrying cannot help."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


# -- signing ----------------------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, now: int | None = None, tolerance: int = 300) -> bool:
    """What a receiver does (and what the tests check): the v1 HMAC over the raw body, with the
    timestamp within `tolerance` seconds."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs((now if now is not None else int(time.time())) - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


# -- the URL ----------------------------------------------------------------------------------


def check_url(url: str, config: Mapping[str, Any]) -> str:
    """The URL as it will be used, or WebhookUrlError saying why not."""
    url = url.strip()
    if len(url) > MAX_URL:
        raise WebhookUrlError(f"Keep the URL to {MAX_URL} characters.")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise WebhookUrlError("The URL cannot contain spaces, line breaks or control characters.")
    parts = urlsplit(url)
    allowed = ("https", "http") if _allow_http(config) else ("https",)
    if parts.scheme not in allowed or not parts.hostname:
        raise WebhookUrlError("Give a full https:// address, e.g. https://crm.example.com/hooks/pool.")
    if parts.username or parts.password:
        raise WebhookUrlError(
            "Leave user names and passwords out of the URL; the signature proves the sender."
        )
    try:
        _ = parts.port
    except ValueError as error:
        raise WebhookUrlError("The port in the URL is not a number from 1 to 65535.") from error
    resolve(parts.hostname, parts.port or 443, config)
    return url


def _allow_http(config: Mapping[str, Any]) -> bool:
    default = config.get("ENV_NAME") != "production"
    value = config.get("WEBHOOK_ALLOW_HTTP")
    return default if value is None else bool(value)


def _allow_private(config: Mapping[str, Any]) -> bool:
    default = config.get("ENV_NAME") != "production"
    value = config.get("WEBHOOK_ALLOW_PRIVATE")
    return default if value is None else bool(value)


def resolve(host: str, port: int, config: Mapping[str, Any]) -> str:
    """The address to connect to; refused when it is internal and that is not allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise WebhookUrlError(f"{host} cannot be found ({error}).", internal=False) from error
    addresses = [str(info[4][0]) for info in infos]
    if not _allow_private(config):
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            if not ip.is_global or ip.is_multicast:
                raise WebhookUrlError(
                    f"{host} is a private or internal address ({address}); webhooks go to the internet only."
                )
    return addresses[0]


# -- settings ---------------------------------------------------------------------------------


def set_url(session: Session, company: CompanySettings, url: str, config: Mapping[str, Any]) -> str | None:
    """Save the URL (checked) and return a new secret to show once; an empty URL turns webhooks
    off (None). The caller's unit of work commits."""
    url = url.strip()
    if not url:
        company.webhook_url, company.webhook_secret = "", ""
        session.add(company)
        return None
    company.webhook_url = check_url(url, config)
    company.webhook_secret = new_secret()
    session.add(company)
    return company.webhook_secret


def recent(session: Session, limit: int = 10) -> list[OutboxEmail]:
    """The latest webhook deliveries, for the settings page."""
    return list(
        session.scalars(
            select(OutboxEmail).where(OutboxEmail.kind == KIND).order_by(OutboxEmail.id.desc()).limit(limit)
        )
    )


# -- queueing ---------------------------------------------------------------------------------


def queue_event(session: Session, event_type: str, data: dict[str, Any]) -> OutboxEmail | None:
    """Add the event to the outbox in the caller's transaction; nothing when no URL is set."""
    assert event_type in EVENTS, event_type
    company = get_company()
    if not company.webhook_url:
        return None
    event_id = "evt_" + secrets.token_hex(12)
    body = {"id": event_id, "type": event_type, "created": utcnow().isoformat(), "data": data}
    row = OutboxEmail(
        account_id=None,  # the company's integration, not the customer's record
        kind=KIND,
        to_address=company.webhook_url,
        subject=event_type,
        text_body=json.dumps(body, sort_keys=True, separators=(",", ":")),
        html_body="",
    )
    session.add(row)
    return row


# -- delivering -------------------------------------------------------------------------------


def deliver(row: OutboxEmail, config: Mapping[str, Any]) -> str:
    """POST the event to the URL set now (a changed URL takes the events still waiting), signed
    with the current secret. Returns a short note; raises WebhookFailed."""
    company = get_company()
    if not company.webhook_url or not company.webhook_secret:
        raise WebhookFailed("webhooks were turned off in Settings", permanent=True)
    url = company.webhook_url
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        address = resolve(host, port, config)
    except WebhookUrlError as error:
        raise WebhookFailed(str(error), permanent=error.internal) from error
    body = row.text_body.encode()
    event = json.loads(row.text_body)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "HandoffPortal-Webhooks/1",
        "Portal-Event-Id": event["id"],
        "Portal-Event-Type": event["type"],
        SIGNATURE_HEADER: signature(company.webhook_secret, int(time.time()), body),
    }
    timeout = float(config.get("WEBHOOK_TIMEOUT") or 10)
    connection = _connection(parts.scheme, host, address, port, timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(RESPONSE_READ_LIMIT)
    except (OSError, http.client.HTTPException) as error:
        raise WebhookFailed(f"{host} did not answer: {error or type(error).__name__}") from error
    finally:
        connection.close()
    if not 200 <= response.status < 300:
        raise WebhookFailed(f"{host} answered {response.status} {response.reason}")
    return f"{response.status} from {host}"


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the address that was checked, whatever DNS says by now."""

    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)


def _connection(
    scheme: str, host: str, address: str, port: int, timeout: float
) -> http.client.HTTPConnection:
    if scheme == "https":
        return _PinnedHTTPS(host, address, port, timeout)
    return _PinnedHTTP(host, address, port, timeout)
