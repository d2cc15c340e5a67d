"""Staff identity: password hashing, session loading, role checks, safe redirects."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import abort, current_app, g
from flask_login import LoginManager, current_user
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from portal.db import get_db, utcnow
from portal.models import Role, StaffUser

F = TypeVar("F", bound=Callable[..., Any])
ALL_STAFF = tuple(role.value for role in Role)
MIN_PASSWORD = 10
# Compared against when the email is unknown, so a wrong email costs as much as a wrong password.
_DUMMY_HASH: dict[str, str] = {}


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=current_app.config.get("PASSWORD_HASH_METHOD", "scrypt"))


# Every staff request runs it: built once.
_BY_SESSION_TOKEN = select(StaffUser).where(StaffUser.session_token == bindparam("token"))


def register_user_loader(manager: LoginManager) -> None:
    @manager.user_loader
    def load_user(session_token: str) -> StaffUser | None:
        if g.get("database_unavailable"):
            return None  # the 503 page, drawn signed out (portal.errors)
        user = get_db().scalars(_BY_SESSION_TOKEN, {"token": session_token}).first()
        return user if user is not None and user.active else None


def new_session_token() -> str:
    return secrets.token_hex(32)


def find_staff(session: Session, email: str) -> StaffUser | None:
    return session.scalars(
        select(StaffUser).where(func.lower(StaffUser.email) == email.strip().lower())
    ).first()


def authenticate(session: Session, email: str, password: str) -> StaffUser | None:
    """The active user with this email and password, or None, in near-constant time."""
    user = find_staff(session, email)
    if user is None:
        method = current_app.config.get("PASSWORD_HASH_METHOD", "scrypt")
        dummy = _DUMMY_HASH.setdefault(method, generate_password_hash("x", method=method))
        check_password_hash(dummy, password)
        return None
    if not check_password_hash(user.password_hash, password) or not user.active:
        return None
    return user


def create_staff(session: Session, email: str, password: str, role: str, name: str = "") -> StaffUser:
    if role not in ALL_STAFF:
        raise ValueError(f"role must be one of {', '.join(ALL_STAFF)}")
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password needs at least {MIN_PASSWORD} characters")
    if find_staff(session, email) is not None:
        raise ValueError(f"a staff user with email {email} already exists")
    user = StaffUser(
        email=email.strip().lower(),
        name=name,
        password_hash=hash_password(password),
        role=role,
        active=True,
        session_token=new_session_token(),
        password_set_at=utcnow(),
    )
    session.add(user)
    session.flush()
    return user


def end_sessions(user: StaffUser) -> None:
    """Rotate the id Flask-Login knows the user by: every session and remember-me cookie that
    carries the old one (on any device, or copied by someone else) no longer signs anyone in."""
    user.session_token = new_session_token()


def record_sign_in(user: StaffUser) -> None:
    user.last_sign_in_at = utcnow()


def set_active(user: StaffUser, active: bool) -> None:
    user.active = active
    end_sessions(user)


def set_password(user: StaffUser, password: str) -> None:
    user.password_hash = hash_password(password)
    end_sessions(user)


def roles_required(*roles: str) -> Callable[[F], F]:
    """Sign-in plus one of `roles`; every staff view carries this (a test checks the url map)."""
    allowed = frozenset(roles or ALL_STAFF)

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                # Flask-Login sets app.login_manager at init; Flask's type doesn't declare it.
                return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
            if current_user.role not in allowed:
                abort(403)
            return view(*args, **kwargs)

        # The roles ride on the view for the navigation and the access tests; wraps() keeps the
        # signature, which mypy cannot see through a decorator typed by F.
        wrapped.allowed_roles = allowed  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorator


def is_safe_next(target: str | None) -> bool:
    """Only same-site paths: no scheme, no host, no protocol-relative or backslash tricks."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return False
    if "\\" in target or any(ord(ch) < 32 for ch in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc
