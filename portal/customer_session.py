"""The customer session a welcome link starts: one account, no password, idles out.

It lives in the signed session cookie beside (never instead of) staff sign-in: it carries the
account id, the hash of the link nonce it came from (a re-sent link ends it) and when it was
last used."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import current_app, redirect, session, url_for
from sqlalchemy.orm import lazyload

from portal.db import get_db
from portal.models import Account, Invoice

KEY = "customer"
TOUCH_AFTER_SECONDS = 60
# Customer pages never show the salesperson: load them only if something asks.
WITHOUT_SALESPERSON = (lazyload(Account.salesperson),)
F = TypeVar("F", bound=Callable[..., Any])


def start(account: Account, nonce_hash: str) -> None:
    # A fresh session: nothing planted before the link was opened survives (fixation).
    session.clear()
    session[KEY] = {"a": account.id, "n": nonce_hash, "t": int(time.time())}


def end() -> None:
    session.pop(KEY, None)


# --- Pay links (portal.payments) ----------------------------------------------------------
# An invoice's pay link starts a session for the invoice's account tied to that invoice's own
# link nonce ("i", "p"): it reaches the views marked `customer_pay_required` (the payment
# pages and My service, never the onboarding steps), and ends when the invoice's link is
# re-issued. A welcome session for the same account is kept beside it.


def start_pay(account: Account, invoice_id: int, nonce_hash: str) -> None:
    data = session.get(KEY)
    if not (
        isinstance(data, dict)
        and data.get("a") == account.id
        and data.get("n")
        and data.get("n") == account.link_nonce_hash
    ):
        session.clear()  # another account's, stale, or none: start fresh (fixation)
        data = {"a": account.id, "n": None}
    session[KEY] = {**data, "i": invoice_id, "p": nonce_hash, "t": int(time.time())}


def _pay_grant_holds(account_id: int, data: dict[str, Any]) -> bool:
    invoice_id, nonce_hash = data.get("i"), data.get("p")
    if not isinstance(invoice_id, int) or not isinstance(nonce_hash, str):
        return False
    invoice = get_db().get(Invoice, invoice_id)
    return invoice is not None and invoice.account_id == account_id and invoice.pay_nonce_hash == nonce_hash


def _session_data() -> dict[str, Any] | None:
    data = session.get(KEY)
    if not isinstance(data, dict):
        return None
    idle_limit = current_app.config["CUSTOMER_SESSION_IDLE_HOURS"] * 3600
    if time.time() - float(data.get("t", 0)) > idle_limit:
        end()
        return None
    return data


def _granted(data: dict[str, Any], account: Account | None, allow_pay_link: bool) -> bool:
    """Whether the session still reaches this account."""
    if account is None or account.deleted_at is not None:
        end()
        return False
    welcome_ok = bool(data.get("n")) and account.link_nonce_hash == data.get("n")
    pay_ok = "i" in data and _pay_grant_holds(account.id, data)
    if not welcome_ok and not pay_ok:
        end()
        return False
    if not welcome_ok and not allow_pay_link:
        return False  # a pay link reaches the payment pages only
    if time.time() - float(data.get("t", 0)) > TOUCH_AFTER_SECONDS:
        # Idle time is counted in hours: re-signing the cookie on every click buys nothing.
        data["t"] = int(time.time())
        session[KEY] = data
    return True


def current_account(allow_pay_link: bool = False) -> Account | None:
    data = _session_data()
    if data is None:
        return None
    account = get_db().get(Account, data.get("a"), options=WITHOUT_SALESPERSON)
    return account if _granted(data, account, allow_pay_link) else None


def _customer_view(view: F, load: Callable[[], Any]) -> F:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        account = load()
        if account is None:
            return redirect(url_for("welcome.session_ended"))
        return view(account, *args, **kwargs)

    # A marker the access tests read off the view; wraps() keeps the signature mypy cannot see.
    wrapped.customer_only = True  # type: ignore[attr-defined]
    return wrapped  # type: ignore[return-value]


def customer_required(view: F) -> F:
    """Customer pages: the account comes from the session only, never from the URL."""
    return _customer_view(view, current_account)


def customer_pay_required(view: F) -> F:
    """Payment pages: as `customer_required`, and a pay link's session is enough."""
    return _customer_view(view, lambda: current_account(allow_pay_link=True))
