"""The JSON API: bearer-token requests from other systems, JSON errors, no cookies."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Response, current_app, g, jsonify, request, url_for
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.exceptions import NotFound, UnsupportedMediaType

from portal import api_tokens, external_invoices, imports
from portal.api import bp
from portal.company import company_today, get_company
from portal.db import get_db, unit_of_work
from portal.extensions import csrf, limiter
from portal.models import Account, Invoice, PromiseItem, RecordEntry
from portal.record import entries_for
from portal.salespeople import find_salesperson, parse_incoming
from portal.validation import HandoffInvalid, parse_invoice

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_RATE_LIMIT = "600 per minute"


def _bearer() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _rate_limit_key() -> str:
    # Per token, but keyed by a digest: the limiter's storage never holds a usable token.
    token = _bearer()
    if token is None:
        return f"api-client:{request.remote_addr}"
    return "api-token:" + hashlib.sha256(token.encode()).hexdigest()[:32]


def _unauthorized(message: str, invalid: bool) -> tuple[Response, int, dict[str, str]]:
    challenge = 'Bearer realm="api", error="invalid_token"' if invalid else 'Bearer realm="api"'
    return jsonify({"error": message}), 401, {"WWW-Authenticate": challenge}


def token_required(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = _bearer()
        if token is None:
            return _unauthorized("Send an API token: Authorization: Bearer TOKEN.", invalid=False)
        g.api_token = api_tokens.verify_token(get_db(), token)
        if g.api_token is None:
            return _unauthorized("That API token is not valid or has been revoked.", invalid=True)
        api_tokens.note_use(get_db(), g.api_token)
        return view(*args, **kwargs)

    return cast(F, wrapper)


# One budget per token across every API endpoint.
api_limit = limiter.shared_limit(
    lambda: current_app.config.get("API_RATE_LIMIT") or DEFAULT_RATE_LIMIT,
    scope="api",
    key_func=_rate_limit_key,
)


@bp.errorhandler(UnsupportedMediaType)
def not_json(_error: UnsupportedMediaType) -> tuple[Response, int]:
    return jsonify({"error": "Send the body as JSON, with Content-Type: application/json."}), 415


@bp.errorhandler(HandoffInvalid)
def handoff_invalid(error: HandoffInvalid) -> tuple[Response, int]:
    return jsonify({"errors": error.errors}), 400


def _json_body() -> Any:
    """The parsed body; 415 unless it is JSON, 413 (from Flask) when it is over the limit."""
    if not request.is_json:
        raise UnsupportedMediaType()
    raw = request.get_data(cache=False)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as error:
        message = "The body is not valid JSON."
        if isinstance(error, json.JSONDecodeError):
            message = (
                f"The body is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})."
            )
        raise HandoffInvalid({"body": message}) from None


@bp.post("/handoffs")
@csrf.exempt  # bearer tokens, never cookies: a cross-site page cannot forge one
@api_limit
@token_required
def create_handoff() -> tuple[Response, int, dict[str, str]]:
    body = _json_body()
    with unit_of_work() as session:
        incoming = parse_incoming(body, lambda email: find_salesperson(session, email))
        account, sent = imports.create_and_welcome(session, incoming, actor=_actor())
    return (
        jsonify({"id": account.id, "welcome_url": sent.url}),
        201,
        {"Location": url_for("api.account_record", account_id=account.id)},
    )


@bp.errorhandler(NotFound)
def not_found(_error: NotFound) -> tuple[Response, int]:
    return jsonify({"error": "No account with this id."}), 404


def _live_account(session: Session, account_id: int) -> Account:
    """The account, or 404 for an unknown or deleted one."""
    account = session.get(Account, account_id)
    if account is None or account.deleted_at is not None:
        raise NotFound()
    return account


def _actor() -> str:
    return f"api:{g.api_token.name}"[:40]


@bp.get("/accounts/<int:account_id>/record")
@api_limit
@token_required
def account_record(account_id: int) -> tuple[Response, int]:
    session = get_db()
    account = _live_account(session, account_id)
    # Withdrawn promises too: their entries stay in the record.
    items: dict[int | None, PromiseItem] = {
        item.id: item
        for item in session.scalars(select(PromiseItem).where(PromiseItem.account_id == account.id))
    }
    body = {
        "account_id": account.id,
        "entries": [
            _entry_json(entry, items.get(entry.item_id)) for entry in entries_for(session, account.id)
        ],
    }
    return jsonify(body), 200


def _entry_json(entry: RecordEntry, item: PromiseItem | None) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "event": entry.event,
        "item_id": entry.item_id,
        "item": {"kind": item.kind, "label": item.label} if item is not None else None,
        "promised_value": entry.promised_value,
        "confirmed_value": entry.confirmed_value,
        "outcome": entry.outcome,
        "actor": entry.actor,
        "note": entry.note,
        "created_at": entry.created_at.isoformat(),
        "request_id": entry.request_id,
        "hash": entry.hash,
        "prev_hash": entry.prev_hash,
    }


# ---------------------------------------------------------------- invoices from other systems


@bp.post("/accounts/<int:account_id>/invoices")
@csrf.exempt
@api_limit
@token_required
def create_invoice(account_id: int) -> tuple[Response, int, dict[str, str]]:
    """201 with the new invoice; 200 with the same invoice for an external_id sent before with
    the same request; 409 (nothing changed) when that external_id came with a different one."""
    _live_account(get_db(), account_id)
    data = parse_invoice(_json_body(), today=company_today(), currency=get_company().currency)
    try:
        try:
            invoice, created = _create_invoice(account_id, data)
        except IntegrityError:
            # A request with the same external_id committed between our look-up and our insert
            # (PostgreSQL; SQLite's write lock serialises the two): answer as its repeat (200),
            # or 409 when it asked for something else.
            invoice, created = _create_invoice(account_id, data)
    except external_invoices.ExternalIdConflict as conflict:
        return (
            jsonify({"error": str(conflict), "invoice": external_invoices.invoice_json(conflict.invoice)}),
            409,
            {},
        )
    location = {"Location": url_for("api.account_invoices", account_id=account_id)}
    return jsonify(external_invoices.invoice_json(invoice)), 201 if created else 200, location


def _create_invoice(account_id: int, data: Any) -> tuple[Invoice, bool]:
    with unit_of_work() as session:
        account = _live_account(session, account_id)
        return external_invoices.create_external_invoice(session, account, data, _actor())


@bp.get("/accounts/<int:account_id>/invoices")
@api_limit
@token_required
def account_invoices(account_id: int) -> tuple[Response, int]:
    session = get_db()
    account = _live_account(session, account_id)
    invoices = external_invoices.account_invoices(session, account)
    return jsonify(
        {"account_id": account.id, "invoices": [external_invoices.invoice_json(i) for i in invoices]}
    ), 200
