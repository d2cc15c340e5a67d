"""Bearer tokens for other systems (CRMs): shown once, stored as a SHA-256 hash, revocable.

Tokens are 256-bit random strings, so a plain SHA-256 (no salt, no slow hash) is enough: it
cannot be brute-forced, and it lets us find the token by an indexed lookup of its hash.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

import click
from flask.cli import with_appcontext
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.db import unit_of_work, utcnow
from portal.models import ApiToken

# A recognisable prefix lets secret scanners (and people) tell what a leaked string is.
PREFIX = "hp_"
MAX_NAME = 120
# Writing last_used_at on every call would turn each read into a write; once a minute will do.
TOUCH_EVERY = timedelta(minutes=1)


class TokenError(ValueError):
    """A token cannot be created or revoked as asked; the message is for people."""


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    plaintext: str


def hash_token(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_token(session: Session, name: str) -> IssuedToken:
    """Add a token; the plaintext exists only in the return value. The caller commits."""
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise TokenError(f"Give the token a name of 1 to {MAX_NAME} characters.")
    if _active_by_name(session, name):
        # Names identify tokens for revocation, so two live tokens must not share one.
        raise TokenError(f"An active token named {name!r} exists already; revoke it first.")
    plaintext = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(name=name, token_hash=hash_token(plaintext))
    session.add(token)
    session.flush()
    return IssuedToken(token, plaintext)


def verify_token(session: Session, plaintext: str) -> ApiToken | None:
    """The live token with this value, or None (a read: see note_use)."""
    if not plaintext or len(plaintext) > 200:
        return None
    digest = hash_token(plaintext)
    token = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    # The lookup is by hash, so timing reveals nothing about the stored token; the compare
    # is constant-time anyway, so correctness never depends on how the database matched.
    if token is None or not secrets.compare_digest(token.token_hash, digest):
        return None
    if token.revoked_at is not None:
        return None
    return token


def note_use(session: Session, token: ApiToken) -> None:
    """Keep when the token was last used, to within TOUCH_EVERY: a write that often, in a unit
    of work of its own, rather than one per request."""
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at >= TOUCH_EVERY:
        with unit_of_work(session):
            token.last_used_at = now


def revoke_token(session: Session, name_or_id: str) -> ApiToken:
    """Revoke the active token with this name, or with this id. The caller commits."""
    key = name_or_id.strip()
    token = _active_by_name(session, key)
    if token is None and key.isdigit():
        token = session.get(ApiToken, int(key))
    if token is None:
        raise TokenError(f"No active token named or numbered {key!r}.")
    if token.revoked_at is not None:
        raise TokenError(f"Token {token.id} ({token.name}) was revoked already.")
    token.revoked_at = utcnow()
    return token


def _active_by_name(session: Session, name: str) -> ApiToken | None:
    return session.scalars(
        select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
    ).first()


@click.command("create-api-token")
@with_appcontext
@click.argument("name")
def create_api_token_command(name: str) -> None:
    """Create an API token called NAME and print it once (only its hash is stored)."""
    try:
        with unit_of_work() as session:
            issued = create_token(session, name)
    except TokenError as error:
        raise click.ClickException(str(error)) from error
    click.echo(
        f"Created API token {issued.token.id} ({issued.token.name}). "
        "Copy it now; it will not be shown again:",
        err=True,
    )
    click.echo(issued.plaintext)


@click.command("revoke-api-token")
@with_appcontext
@click.argument("name_or_id")
def revoke_api_token_command(name_or_id: str) -> None:
    """Revoke the API token with NAME_OR_ID; requests using it get 401 from now on."""
    try:
        with unit_of_work() as session:
            token = revoke_token(session, name_or_id)
    except TokenError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"Revoked API token {token.id} ({token.name}).")


COMMANDS: list[click.Command] = [create_api_token_command, revoke_api_token_command]
