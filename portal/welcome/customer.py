"""The customer session a welcome link starts: one account, no password, idles out.

It lives in the signed session cookie beside (never instead of) staff sign-in: it carries the
account id, the hash of the link nonce it came from (a re-sent link ends it) and when it was
last used."""
from __future__ import annotations

import time
from functools import wraps
from typing import Any, Callable, TypeVar

from flask import current_app, g, redirect, session, url_for

from portal.db import get_db
from portal.models import Account

KEY = "customer"
F = TypeVar("F", bound=Callable[..., Any])


def start(account: Account, nonce_hash: str) -> None:
    # A fresh session: nothing planted before the link was opened survives (fixation).
    session.clear()
    session[KEY] = {"a": account.id, "n": nonce_hash, "t": int(time.time())}


def end() -> None:
    session.pop(KEY, None)


def current_account() -> Account | None:
    data = session.get(KEY)
    if not isinstance(data, dict):
        return None
    idle_limit = current_app.config["CUSTOMER_SESSION_IDLE_HOURS"] * 3600
    if time.time() - float(data.get("t", 0)) > idle_limit:
        end()
        return None
    account = get_db().get(Account, data.get("a"))
    if account is None or account.deleted_at is not None or account.link_nonce_hash != data.get("n"):
        end()
        return None
    data["t"] = int(time.time())
    session[KEY] = data
    return account


def customer_required(view: F) -> F:
    """Customer pages: the account comes from the session only, never from the URL."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        account = current_account()
        if account is None:
            return redirect(url_for("welcome.session_ended"))
        g.customer_account = account
        return view(account, *args, **kwargs)

    wrapped.customer_only = True  # type: ignore[attr-defined]
    return wrapped  # type: ignore[return-value]
