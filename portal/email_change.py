"""Changing the email address on file. A welcome link proves only that someone can read the
current mailbox, so the change itself is confirmed from that mailbox: we email the current
address a one-time link, and only that link moves the account to the new address."""

from __future__ import annotations

import secrets

from itsdangerous import BadSignature
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import links, record
from portal.company import get_company
from portal.mail import queue_email
from portal.models import Account, RecordEntry

REQUESTED, CHANGED = "email_change_requested", "email_changed"


def request_change(session: Session, account: Account, new_email: str) -> None:
    """Record the request and email the current address a link to confirm it."""
    nonce = secrets.token_urlsafe(24)
    token = links.serializer("email-change").dumps({"a": account.id, "n": nonce})
    record.append(
        session,
        account,
        event=REQUESTED,
        actor="customer",
        details={"new_email": new_email, "nonce_hash": links.hash_nonce(nonce)},
    )
    base = links.welcome_url("").rsplit("/t/", 1)[0]
    queue_email(
        session,
        template="email_change_confirm",
        to=account.customer.email,
        account=account,
        subject=f"{get_company().name}: confirm your new email address",
        context={
            "account": account,
            "new_email": new_email,
            "url": f"{base}/email-change/{token}",
            "expires_days": links.max_age().days,
        },
    )


def confirm_change(session: Session, token: str) -> Account | None:
    """Apply the change the token confirms; None for a bad, stale or already used token."""
    try:
        payload = links.serializer("email-change").loads(token, max_age=int(links.max_age().total_seconds()))
    except BadSignature:  # includes SignatureExpired
        return None
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("a"), int)
        or not isinstance(payload.get("n"), str)
    ):
        return None
    account = session.get(Account, payload["a"])
    if account is None or account.deleted_at is not None:
        return None
    request = _pending_request(session, account)
    if request is None or not secrets.compare_digest(
        request.details.get("nonce_hash", ""), links.hash_nonce(payload["n"])
    ):
        return None
    _apply(session, account, request.details["new_email"])
    return account


def _pending_request(session: Session, account: Account) -> RecordEntry | None:
    """The latest request, unless a change was applied after it (each link works once)."""
    latest = session.scalars(
        select(RecordEntry)
        .where(RecordEntry.account_id == account.id, RecordEntry.event.in_((REQUESTED, CHANGED)))
        .order_by(RecordEntry.seq.desc())
        .limit(1)
    ).first()
    return latest if latest is not None and latest.event == REQUESTED else None


def _apply(session: Session, account: Account, new_email: str) -> None:
    old = account.customer.email
    account.customer.email = new_email
    # A new link for the new address; the old link (and any session from it) stops working.
    url = links.issue_welcome_link(account)
    record.append(session, account, event=CHANGED, actor="customer", details={"from": old, "to": new_email})
    queue_email(
        session,
        template="welcome_resent",
        to=new_email,
        account=account,
        subject=f"{get_company().name}: your new link",
        context={
            "account": account,
            "items": account.items,
            "url": url,
            "expires_days": links.max_age().days,
        },
    )
