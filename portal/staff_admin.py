"""Staff accounts run from the browser: invite, change role, deactivate and reactivate, reset a
forgotten password, change one's own. Each is one entry in the append-only staff audit.

Invite and reset links are itsdangerous tokens (a salt per purpose, keys that rotate: the
serializers of portal.links) carrying the user id and a fingerprint of the user's password hash.
Setting a password changes the hash, so every link issued before it dies at once: a link works
once, and a reset link mailed last week stops working when the password is changed anyway.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload
from werkzeug.security import check_password_hash

from portal import links
from portal.auth import (
    ALL_STAFF,
    MIN_PASSWORD,
    find_staff,
    hash_password,
    new_session_token,
    set_password,
)
from portal.auth import set_active as mark_active
from portal.company import get_company
from portal.db import utcnow
from portal.mail import queue_email
from portal.models import Role, StaffAudit, StaffUser
from portal.record import current_request_id


class Audit(str, enum.Enum):
    INVITED = "invited"
    INVITE_ACCEPTED = "invite_accepted"
    ROLE_CHANGED = "role_changed"
    DEACTIVATED = "deactivated"
    REACTIVATED = "reactivated"
    RESET_REQUESTED = "password_reset_requested"
    RESET_USED = "password_reset_used"
    PASSWORD_CHANGED = "password_changed"


AUDIT_LABELS = {
    Audit.INVITED.value: "invited",
    Audit.INVITE_ACCEPTED.value: "accepted the invitation",
    Audit.ROLE_CHANGED.value: "role changed",
    Audit.DEACTIVATED.value: "deactivated",
    Audit.REACTIVATED.value: "reactivated",
    Audit.RESET_REQUESTED.value: "password reset asked for",
    Audit.RESET_USED.value: "password reset by emailed link",
    Audit.PASSWORD_CHANGED.value: "changed their password",
}

INVITE, RESET = "staff-invite", "password-reset"
LAST_ADMIN = "At least one active admin must remain: make someone else admin first."


class StaffError(ValueError):
    """A staff change refused, with a message for the page."""


def audit(
    session: Session, action: Audit, *, actor: StaffUser | None, target: StaffUser, **details: object
) -> StaffAudit:
    entry = StaffAudit(
        actor_id=actor.id if actor else None,
        action=action.value,
        target_id=target.id,
        details=details,
        created_at=utcnow(),
        request_id=current_request_id(),
    )
    session.add(entry)
    return entry


# -- the list and the audit --------------------------------------------------------------------


def staff_list(session: Session) -> list[StaffUser]:
    return list(
        session.scalars(
            select(StaffUser).order_by(StaffUser.active.desc(), func.lower(StaffUser.name), StaffUser.email)
        )
    )


@dataclass(frozen=True)
class AuditPage:
    entries: list[StaffAudit]
    page: int
    has_next: bool


def audit_page(session: Session, page: int = 1, per_page: int = 20) -> AuditPage:
    """Latest first. One row more than shown says whether there is a next page (no count)."""
    page = max(page, 1)
    rows = list(
        session.scalars(
            select(StaffAudit)
            .options(selectinload(StaffAudit.actor), selectinload(StaffAudit.target))
            .order_by(StaffAudit.id.desc())
            .offset((page - 1) * per_page)
            .limit(per_page + 1)
        )
    )
    return AuditPage(rows[:per_page], page, len(rows) > per_page)


# -- admin actions -----------------------------------------------------------------------------


def invite(session: Session, actor: StaffUser, *, email: str, name: str, role: str) -> StaffUser:
    """A new colleague without a usable password, and an email with a link to choose one."""
    if role not in ALL_STAFF:
        raise StaffError("Choose a role.")
    if find_staff(session, email) is not None:
        raise StaffError("Someone on the staff already has this email address.")
    user = StaffUser(
        email=email.strip().lower(),
        name=name.strip(),
        role=role,
        active=True,
        # Nobody knows this password: the invited person chooses theirs.
        password_hash=hash_password(secrets.token_urlsafe(32)),
        session_token=new_session_token(),
    )
    session.add(user)
    session.flush()
    audit(session, Audit.INVITED, actor=actor, target=user, role=role)
    queue_email(
        session,
        template="staff_invite",
        to=user.email,
        subject=f"{get_company().name}: you are invited to the staff portal",
        context={
            "user": user,
            "inviter": actor,
            "url": link_url(user, INVITE),
            "expires_hours": int(max_age(INVITE).total_seconds() // 3600),
        },
    )
    return user


def change_role(session: Session, actor: StaffUser, user: StaffUser, role: str) -> bool:
    """True if the role changed (the same role again is no change and no entry)."""
    if role not in ALL_STAFF:
        raise StaffError("Choose a role.")
    if role == user.role:
        return False
    if user.role == Role.ADMIN.value and user.active:
        _keep_an_admin(session, user)
    before, user.role = user.role, role
    audit(session, Audit.ROLE_CHANGED, actor=actor, target=user, **{"from": before, "to": role})
    return True


def set_active(session: Session, actor: StaffUser, user: StaffUser, active: bool) -> bool:
    """Deactivating signs the user out everywhere at once (their sessions and remember-me
    cookies carry the id it rotates); what they did stays in the record under their name."""
    if active == user.active:
        return False
    if not active and user.role == Role.ADMIN.value:
        _keep_an_admin(session, user)
    mark_active(user, active)
    audit(session, Audit.REACTIVATED if active else Audit.DEACTIVATED, actor=actor, target=user)
    return True


def _keep_an_admin(session: Session, leaving: StaffUser) -> None:
    """Refuse a change that would leave no active admin. The active admins' rows are locked
    in id order (PostgreSQL; SQLite posts hold the write lock already), so two admins demoting
    each other at once cannot both pass: the second re-reads after the first commits."""
    admins = session.scalars(
        select(StaffUser.id)
        .where(StaffUser.role == Role.ADMIN.value, StaffUser.active.is_(True))
        .order_by(StaffUser.id)
        .with_for_update()
    ).all()
    if not [admin for admin in admins if admin != leaving.id]:
        raise StaffError(LAST_ADMIN)


# -- passwords -------------------------------------------------------------------------------


def max_age(purpose: str) -> timedelta:
    if purpose == INVITE:
        return timedelta(hours=current_app.config["STAFF_INVITE_MAX_AGE_HOURS"])
    return timedelta(minutes=current_app.config["PASSWORD_RESET_MAX_AGE_MINUTES"])


def _fingerprint(user: StaffUser) -> str:
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:32]


def make_token(user: StaffUser, purpose: str) -> str:
    return links.serializer(purpose).dumps({"u": user.id, "s": _fingerprint(user)})


def link_url(user: StaffUser, purpose: str) -> str:
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    kind = "invite" if purpose == INVITE else "reset"
    return f"{base}/staff/password/{kind}/{make_token(user, purpose)}"


LinkStatus = links.LinkStatus


@dataclass(frozen=True)
class LinkCheck:
    status: LinkStatus
    user: StaffUser | None = None


def check_link(session: Session, token: str, purpose: str) -> LinkCheck:
    """Expired; invalid (tampered, other purpose, used, password changed since, user
    deactivated); or the user whose password it sets."""
    payload = links.load_payload(token, purpose, max_age(purpose), u=int, s=str)
    if isinstance(payload, LinkStatus):
        return LinkCheck(payload)
    user = session.get(StaffUser, payload["u"])
    if user is None or not user.active or not secrets.compare_digest(_fingerprint(user), payload["s"]):
        return LinkCheck(LinkStatus.INVALID)
    return LinkCheck(LinkStatus.OK, user)


def request_reset(session: Session, email: str) -> None:
    """Email an active user a reset link; for any other address do nothing (the page says the
    same either way)."""
    user = find_staff(session, email)
    if user is None or not user.active:
        return
    audit(session, Audit.RESET_REQUESTED, actor=None, target=user)
    queue_email(
        session,
        template="password_reset",
        to=user.email,
        subject=f"{get_company().name}: reset your staff password",
        context={
            "user": user,
            "url": link_url(user, RESET),
            "expires_minutes": int(max_age(RESET).total_seconds() // 60),
        },
    )


def use_link(session: Session, token: str, purpose: str, password: str) -> StaffUser | None:
    """Set the password the link allows; None (and nothing changed) when the link does not
    work. Every other session of the user ends."""
    check = check_link(session, token, purpose)
    if check.user is None:
        return None
    _check_new_password(password)
    _set(check.user, password)
    audit(
        session,
        Audit.INVITE_ACCEPTED if purpose == INVITE else Audit.RESET_USED,
        actor=check.user,
        target=check.user,
    )
    return check.user


def change_password(session: Session, user: StaffUser, current: str, new: str) -> None:
    if not check_password_hash(user.password_hash, current):
        raise StaffError("That is not your current password.")
    _check_new_password(new)
    _set(user, new)
    audit(session, Audit.PASSWORD_CHANGED, actor=user, target=user)


def _check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise StaffError(f"Choose a password of at least {MIN_PASSWORD} characters.")


def _set(user: StaffUser, password: str) -> None:
    set_password(user, password)  # rotates the session id: every session of theirs ends
    user.password_set_at = utcnow()
