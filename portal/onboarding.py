"""Sending and re-sending the welcome link; each send is a record entry and an outbox email."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import links, record
from portal.company import get_company
from portal.db import utcnow
from portal.handoffs import OnboardingSigned
from portal.mail import queue_email
from portal.models import Account, AccountStatus, Customer, OutboxEmail


@dataclass(frozen=True)
class WelcomeSent:
    email: OutboxEmail
    url: str


def send_welcome(session: Session, account: Account, actor: str) -> WelcomeSent:
    """Issue a new link (revoking any older one), queue the welcome email, record the send."""
    if account.status == AccountStatus.SIGNED.value:
        raise OnboardingSigned("This customer has signed already; send them a new service link.")
    first_send = account.link_sent_at is None
    url = links.issue_welcome_link(account)
    email = queue_email(
        session,
        template="welcome" if first_send else "welcome_resent",
        to=account.customer.email,
        subject=f"{get_company().name}: please confirm your pool service",
        context={
            "account": account,
            "items": account.items,
            "url": url,
            "expires_days": links.max_age().days,
        },
        account=account,
    )
    account.link_sent_at = utcnow()
    if account.status == AccountStatus.DRAFT.value:
        account.status = AccountStatus.LINK_SENT.value
    session.flush()
    record.append(
        session,
        account,
        event="link_sent" if first_send else "link_resent",
        actor=actor,
        details={"to": account.customer.email, "email_id": email.id},
    )
    return WelcomeSent(email, url)


def send_new_link(session: Session, account: Account, actor: str) -> WelcomeSent:
    """Staff's "send the link": the welcome email until the customer signs; after that a new
    link to their service page. Either way the old link, and every customer session it started
    (they are tied to the nonce they began with), stops working."""
    if account.status != AccountStatus.SIGNED.value:
        return send_welcome(session, account, actor)
    url = links.issue_welcome_link(account)
    email = _queue_replacement(session, account, url)
    account.link_sent_at = utcnow()
    session.flush()
    record.append(
        session,
        account,
        event="link_resent",
        actor=actor,
        details={"to": account.customer.email, "email_id": email.id},
    )
    return WelcomeSent(email, url)


def _queue_replacement(session: Session, account: Account, url: str) -> OutboxEmail:
    """The email carrying a replacement link. A signed customer gets the service text: it lists
    none of the promises (gate codes among them), which their service page shows."""
    if account.status == AccountStatus.SIGNED.value:
        return queue_email(
            session,
            template="service_link",
            to=account.customer.email,
            subject=f"{get_company().name}: your new link to your service page",
            context={"account": account, "url": url, "expires_days": links.max_age().days},
            account=account,
        )
    return queue_email(
        session,
        template="welcome_resent",
        to=account.customer.email,
        subject=f"{get_company().name}: your new link",
        account=account,
        context={
            "account": account,
            "items": account.items,
            "url": url,
            "expires_days": links.max_age().days,
        },
    )


def send_link_on_request(session: Session, email: str) -> int:
    """'Email me a new link': a fresh link for each of this address's accounts. Returns how many
    were sent; the caller answers the same whatever the number (no enumeration)."""
    accounts = session.scalars(
        select(Account)
        .join(Customer)
        .where(
            Customer.email == email.strip().lower(),
            Account.deleted_at.is_(None),
            # Any link issued, emailed or not: the demo link
            # `make run` prints is never "sent", and its
            # customer was told a link went out but got none.
            Account.link_nonce_hash.is_not(None),
        )
    ).all()
    for account in accounts:
        url = links.issue_welcome_link(account)
        email_row = _queue_replacement(session, account, url)
        session.flush()
        record.append(
            session,
            account,
            event="link_resent",
            actor="customer",
            note="requested a new link",
            details={"email_id": email_row.id},
        )
    return len(accounts)
