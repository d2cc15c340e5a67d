"""A local, Stripe-shaped HTTP server for tests.

Why: the portal talks to Stripe through the real ``stripe`` library, and the
only honest way to test that code without network access is to let the
library make real HTTP requests and parse real Stripe shapes.  Every answer is
Stripe's own example object (``fixtures3.json``, the data Stripe's mock server
uses) overlaid with what the request asked for, so the library hydrates typed
objects exactly as it would in production.

Point the library at it with ``stripe.api_base = server.url`` (global style) or
``stripe.StripeClient(key, base_addresses={"api": server.url})``; the app does
the same through its ``STRIPE_API_BASE`` setting.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import hmac
import html
import json
import os
import re
import secrets
import string
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe

JSON = dict[str, Any]

# Vendored with its licence and source in tests/fixtures/stripe/.
_DEFAULT_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "stripe" / "fixtures3.json"
_ALNUM = string.ascii_letters + string.digits
_PAYMENT_OUTCOMES = ("succeeded", "card_declined", "authentication_required")
_DEFAULT_MESSAGES = {
    "card_error": "Your card was declined.",
    "api_error": "An unknown error occurred. Please try again.",
    "invalid_request_error": "Invalid request.",
    "idempotency_error": "Keys for idempotent requests can only be used once.",
    "rate_limit_error": "Too many requests hit the API too quickly.",
}


# --------------------------------------------------------------------------
# Fixtures and ids
# --------------------------------------------------------------------------


def fixtures_path() -> Path:
    """Where Stripe's fixture file lives: next to the repo, else $STRIPE_FIXTURES."""
    if _DEFAULT_FIXTURES.is_file():
        return _DEFAULT_FIXTURES
    env = os.environ.get("STRIPE_FIXTURES")
    if env:
        return Path(env)
    raise FileNotFoundError(f"Stripe fixtures not found at {_DEFAULT_FIXTURES}; set STRIPE_FIXTURES")


@cache
def _resources() -> Mapping[str, JSON]:
    """Parse the 190 KB fixture file once per test run."""
    with fixtures_path().open(encoding="utf-8") as fh:
        return json.load(fh)["resources"]


def fixture(name: str) -> JSON:
    """A private deep copy of Stripe's example object, safe to mutate."""
    return copy.deepcopy(_resources()[name])


def new_id(prefix: str, length: int = 24) -> str:
    """A fresh Stripe-looking id, so tests never depend on fixture ids."""
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def _now() -> int:
    return int(time.time())


# --------------------------------------------------------------------------
# Stripe form encoding
# --------------------------------------------------------------------------

_BRACKETS = re.compile(r"\[([^\]]*)\]")


def _key_path(key: str) -> list[str]:
    """``a[b][0][]`` -> ``["a", "b", "0", ""]`` ("" means append)."""
    head, bracket, rest = key.partition("[")
    if not bracket:
        return [key]
    return [head, *_BRACKETS.findall("[" + rest)]


def _insert(root: JSON, path: list[str], value: str) -> None:
    node = root
    for depth, part in enumerate(path):
        key = part if part != "" else str(len(node))
        if depth == len(path) - 1:
            node[key] = value
        else:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child


def _listify(node: Any) -> Any:
    """Dicts keyed exactly "0".."n-1" are Stripe arrays; turn them into lists."""
    if not isinstance(node, dict):
        return node
    converted = {key: _listify(value) for key, value in node.items()}
    if converted and set(converted) == {str(i) for i in range(len(converted))}:
        return [converted[str(i)] for i in range(len(converted))]
    return converted


def decode_params(pairs: Iterable[tuple[str, str]]) -> JSON:
    """Rebuild nested params from Stripe's bracketed form encoding.

    Values stay strings, exactly as they travel on the wire.
    """
    root: JSON = {}
    for key, value in pairs:
        _insert(root, _key_path(key), value)
    return _listify(root)


def decode_query(text: str) -> JSON:
    """Decode a query string or form body the way Stripe reads it."""
    return decode_params(parse_qsl(text, keep_blank_values=True))


def _parse_body(body: str, content_type: str) -> JSON:
    """v1 sends form encoding; accept JSON too (v2 style) rather than choke."""
    if not body:
        return {}
    if "json" in content_type:
        return json.loads(body)
    return decode_query(body)


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _as_int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


# --------------------------------------------------------------------------
# Overlaying request values onto fixtures
# --------------------------------------------------------------------------


def _coerce(value: Any, like: Any) -> Any:
    """Give a wire string the type the fixture field has (bool, int)."""
    if not isinstance(value, str):
        return value
    if isinstance(like, bool):
        return value.lower() == "true"
    if isinstance(like, int):
        return _as_int(value, default=like)
    return value


def _merge_metadata(current: Any, value: Any, *, merge: bool) -> JSON:
    """Stripe metadata: create replaces, update merges, "" deletes a key."""
    if value == "":
        return {}
    base = dict(current or {}) if merge else {}
    base.update(value)
    return {k: v for k, v in base.items() if v != ""}


def _overlay(obj: JSON, params: Mapping[str, Any], *, merge: bool = False, top: bool = True) -> JSON:
    """Copy request params onto an object, Stripe style.

    At the top level only keys that are fields of the object are copied
    (``expand``, ``confirm`` or ``line_items`` are parameters, not fields);
    nested hashes are merged; ``""`` unsets a field.
    """
    for key, value in params.items():
        if top and (key not in obj or key in ("id", "object")):
            continue
        current = obj.get(key)
        if key == "metadata":
            obj[key] = _merge_metadata(current, value, merge=merge)
        elif value == "":
            obj[key] = None
        elif isinstance(value, dict) and isinstance(current, dict):
            _overlay(current, value, merge=merge, top=False)
        else:
            obj[key] = _coerce(value, current)
    return obj


# --------------------------------------------------------------------------
# Object builders (module level so webhook tests can use them without a server)
# --------------------------------------------------------------------------


@dataclass
class CardDetails:
    """The card the server pretends customers entered in Checkout."""

    brand: str = "visa"
    last4: str = "4242"
    exp_month: int = 12
    exp_year: int = 2028
    funding: str = "credit"
    country: str = "US"


def card_payment_method(
    *,
    pm_id: str | None = None,
    customer: str | None = None,
    card: CardDetails | None = None,
    **overrides: Any,
) -> JSON:
    """A card PaymentMethod from the fixture with the given card details."""
    card = card or CardDetails()
    pm = fixture("payment_method")
    pm.update(id=pm_id or new_id("pm_"), created=_now(), customer=customer, metadata={})
    pm["card"].update(
        brand=card.brand,
        display_brand=card.brand,
        last4=card.last4,
        exp_month=card.exp_month,
        exp_year=card.exp_year,
        funding=card.funding,
        country=card.country,
    )
    pm["card"]["networks"] = {"available": [card.brand], "preferred": None}
    pm["card"]["wallet"] = None
    pm.update(overrides)
    return pm


def _fresh_payment_intent(
    *,
    amount: int,
    currency: str,
    customer: str | None,
    payment_method: str | None,
    metadata: Mapping[str, str] | None,
    intent_id: str | None,
) -> JSON:
    """The fixture PaymentIntent with its example noise removed."""
    pi = fixture("payment_intent")
    pid = intent_id or new_id("pi_")
    pi.update(
        id=pid,
        client_secret=f"{pid}_secret_{new_id('', 25)}",
        created=_now(),
        amount=amount,
        currency=currency,
        customer=customer,
        payment_method=payment_method,
        metadata=dict(metadata or {}),
        canceled_at=None,
        last_payment_error=None,
        next_action=None,
        processing=None,
        transfer_data=None,
        latest_charge=None,
        amount_received=0,
        status="requires_payment_method",
    )
    return pi


def succeeded_payment_intent(
    *,
    amount: int,
    currency: str = "usd",
    customer: str | None = None,
    payment_method: str | None = None,
    metadata: Mapping[str, str] | None = None,
    latest_charge: str | None = None,
    intent_id: str | None = None,
    **overrides: Any,
) -> JSON:
    """A PaymentIntent as Stripe shows it after the money moved."""
    pi = _fresh_payment_intent(
        amount=amount,
        currency=currency,
        customer=customer,
        payment_method=payment_method or new_id("pm_"),
        metadata=metadata,
        intent_id=intent_id,
    )
    pi.update(status="succeeded", amount_received=amount, latest_charge=latest_charge or new_id("ch_"))
    pi.update(overrides)
    return pi


def _fresh_setup_intent(
    *,
    customer: str | None,
    payment_method: str | None,
    metadata: Mapping[str, str] | None,
    intent_id: str | None,
) -> JSON:
    si = fixture("setup_intent")
    sid = intent_id or new_id("seti_")
    si.update(
        id=sid,
        client_secret=f"{sid}_secret_{new_id('', 25)}",
        created=_now(),
        customer=customer,
        payment_method=payment_method,
        metadata=dict(metadata or {}),
        last_setup_error=None,
        next_action=None,
        payment_method_configuration_details=None,
        status="requires_payment_method",
    )
    return si


def succeeded_setup_intent(
    *,
    customer: str | None = None,
    payment_method: str | None = None,
    metadata: Mapping[str, str] | None = None,
    intent_id: str | None = None,
    **overrides: Any,
) -> JSON:
    """A SetupIntent after the customer saved a card for off-session use."""
    si = _fresh_setup_intent(
        customer=customer,
        payment_method=payment_method or new_id("pm_"),
        metadata=metadata,
        intent_id=intent_id,
    )
    si.update(status="succeeded", usage="off_session")
    si.update(overrides)
    return si


def _succeeded_charge(pi: JSON, card: CardDetails) -> JSON:
    """The Charge behind a succeeded PaymentIntent (what latest_charge points at)."""
    ch = fixture("charge")
    cid = pi.get("latest_charge") or new_id("ch_")
    ch.update(
        id=cid,
        created=_now(),
        amount=pi["amount"],
        amount_captured=pi["amount"],
        captured=True,
        paid=True,
        status="succeeded",
        currency=pi["currency"],
        customer=pi["customer"],
        payment_intent=pi["id"],
        payment_method=pi["payment_method"],
        metadata=dict(pi["metadata"]),
        description=None,
        balance_transaction=new_id("txn_"),
        receipt_url=None,
    )
    ch["refunds"] = {"object": "list", "data": [], "has_more": False, "url": f"/v1/charges/{cid}/refunds"}
    ch["payment_method_details"]["card"].update(
        brand=card.brand,
        last4=card.last4,
        exp_month=card.exp_month,
        exp_year=card.exp_year,
        network=card.brand,
    )
    return ch


def _checkout_session_base(*, mode: str, session_id: str | None = None) -> JSON:
    """The fixture session with its example amounts, ids and timestamps cleared."""
    cs = fixture("checkout.session")
    now = _now()
    cs.update(
        id=session_id or new_id("cs_test_", 58),
        created=now,
        expires_at=now + 24 * 3600,
        mode=mode,
        customer=None,
        customer_details=None,
        payment_intent=None,
        setup_intent=None,
        subscription=None,
        invoice=None,
        amount_total=None,
        amount_subtotal=None,
        currency=None,
        shipping_cost=None,
        currency_conversion=None,
        shipping_address_collection=None,
        after_expiration=None,
        collected_information=None,
        recovered_from=None,
        payment_method_configuration_details=None,
        total_details=None,
        ui_mode="hosted",
        url=None,
        status="open",
        payment_status="unpaid" if mode == "payment" else "no_payment_required",
    )
    cs["custom_text"] = dict.fromkeys(cs["custom_text"])
    cs["invoice_creation"] = None if mode != "payment" else {**cs["invoice_creation"], "enabled": False}
    return cs


def _set_amount(cs: JSON, amount: int | None, currency: str | None) -> None:
    cs.update(amount_total=amount, amount_subtotal=amount, currency=currency)
    if amount is not None:
        cs["total_details"] = {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0}


def _mark_complete(cs: JSON, *, email: str) -> None:
    """Turn an open session into what checkout.session.completed carries."""
    cs.update(
        status="complete",
        url=None,
        payment_status="paid" if cs["mode"] == "payment" else "no_payment_required",
    )
    details = fixture("checkout.session")["customer_details"]
    details["email"] = email
    cs["customer_details"] = details


def completed_setup_session(
    *,
    customer: str | None = None,
    setup_intent: str | None = None,
    metadata: Mapping[str, str] | None = None,
    client_reference_id: str | None = None,
    session_id: str | None = None,
    email: str = "customer@example.com",
    **overrides: Any,
) -> JSON:
    """A completed mode=setup Checkout Session (card saved, nothing charged)."""
    cs = _checkout_session_base(mode="setup", session_id=session_id)
    cs.update(
        customer=customer,
        setup_intent=setup_intent or new_id("seti_"),
        metadata=dict(metadata or {}),
        client_reference_id=client_reference_id,
    )
    _mark_complete(cs, email=email)
    cs.update(overrides)
    return cs


def completed_payment_session(
    *,
    amount_total: int,
    currency: str = "usd",
    customer: str | None = None,
    payment_intent: str | None = None,
    metadata: Mapping[str, str] | None = None,
    client_reference_id: str | None = None,
    session_id: str | None = None,
    email: str = "customer@example.com",
    **overrides: Any,
) -> JSON:
    """A completed, paid mode=payment Checkout Session."""
    cs = _checkout_session_base(mode="payment", session_id=session_id)
    cs.update(
        customer=customer,
        payment_intent=payment_intent or new_id("pi_"),
        metadata=dict(metadata or {}),
        client_reference_id=client_reference_id,
    )
    _set_amount(cs, amount_total, currency)
    _mark_complete(cs, email=email)
    cs.update(overrides)
    return cs


# --------------------------------------------------------------------------
# Webhooks
# --------------------------------------------------------------------------


def make_event(
    type: str, obj: Mapping[str, Any], event_id: str | None = None, created: int | None = None
) -> JSON:
    """A webhook Event from the fixture with ``data.object = obj``."""
    event = fixture("event")
    event.update(
        id=event_id or new_id("evt_"),
        type=type,
        created=_now() if created is None else created,
        api_version=stripe.api_version,
        pending_webhooks=1,
        data={"object": copy.deepcopy(dict(obj))},
        request={"id": None, "idempotency_key": None},
    )
    return event


def sign_payload(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe would send for this body.

    Uses the library's own signer so a verification mismatch means the app is
    wrong, not this helper.
    """
    ts = _now() if timestamp is None else timestamp
    signer = getattr(stripe.WebhookSignature, "generate_signature_header", None)
    if signer is not None:
        return signer(payload, secret, timestamp=ts)
    compute = getattr(stripe.WebhookSignature, "_compute_signature", None)
    signed = f"{ts}.{payload}"
    if compute is not None:
        return f"t={ts},v1={compute(signed, secret)}"
    mac = hmac.new(secret.encode("utf-8"), signed.encode("utf-8"), hashlib.sha256)
    return f"t={ts},v1={mac.hexdigest()}"


# --------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------


class Headers(dict[str, str]):
    """A plain dict of request headers whose lookups ignore case."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__((k.lower(), v) for k, v in items)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


@dataclass
class RecordedRequest:
    """One request as the server saw it, for assertions."""

    method: str
    path: str
    query: JSON
    form: JSON
    headers: Headers
    idempotency_key: str | None
    body: str = ""
    status: int | None = None
    response: Any = None
    replayed: bool = False

    @property
    def params(self) -> JSON:
        """The request's parameters wherever they travelled (body or query)."""
        return self.form if self.method == "POST" else self.query


class StripeHTTPError(Exception):
    """Raised inside handlers to answer with Stripe's error shape."""

    def __init__(self, status: int, error: JSON, headers: Mapping[str, str] | None = None):
        super().__init__(error.get("message"))
        self.status = status
        self.error = error
        self.headers = dict(headers or {})


def stripe_error(
    type: str,
    message: str | None = None,
    *,
    code: str | None = None,
    decline_code: str | None = None,
    param: str | None = None,
    **extra: Any,
) -> JSON:
    """Stripe's error hash; like Stripe, null attributes are left out."""
    error: JSON = {"type": type, "message": message or _DEFAULT_MESSAGES.get(type, type)}
    optional = {"code": code, "decline_code": decline_code, "param": param, **extra}
    error.update({k: v for k, v in optional.items() if v is not None})
    if code and "doc_url" not in error:
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    return error


def _missing(kind: str, obj_id: str) -> StripeHTTPError:
    return StripeHTTPError(
        404,
        stripe_error(
            "invalid_request_error", f"No such {kind}: '{obj_id}'", code="resource_missing", param="id"
        ),
    )


@dataclass
class _Fault:
    """A queued failure or delay for the next matching API request(s)."""

    path_prefix: str | None
    times: int
    seconds: float = 0.0
    status: int = 0
    error: JSON | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def matches(self, path: str) -> bool:
        return self.path_prefix is None or path.startswith(self.path_prefix)


@dataclass(frozen=True)
class _Saved:
    """A response stored under an Idempotency-Key, replayed on reuse."""

    method: str
    path: str
    form_json: str
    status: int
    body: bytes
    request_id: str


@dataclass
class _Response:
    status: int
    body: bytes
    headers: dict[str, str]


# --------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    """Joins handler threads on close so tests end without stray threads."""

    daemon_threads = True
    block_on_close = True

    def __init__(self, owner: StripeServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out and hung up is expected; anything else is a bug."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        self.owner.errors.append(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    timeout = 30

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        length = _as_int(self.headers.get("Content-Length"), 0)
        body = self.rfile.read(length).decode("utf-8") if length else ""
        resp = self.server.owner.handle(method, self.path, self.headers.items(), body)
        self.close_connection = True
        try:
            self.send_response(resp.status)
            for name, value in resp.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(resp.body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(resp.body)
        except ConnectionError:
            pass  # the client gave up (timeout test); nothing to answer

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request stderr logging; server.requests is the log."""


Handler = Callable[[RecordedRequest, dict[str, str]], tuple[int, Any]]


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


class StripeServer:
    """An in-memory Stripe API on 127.0.0.1 that the real library can talk to."""

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key  # when set, other keys get Stripe's 401
        self.card = CardDetails()
        self.payment_decline_code = "generic_decline"
        # What a new refund's status is (Stripe: card refunds usually succeed at once; the
        # portal waits for the event either way).
        self.refund_status = "succeeded"
        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []
        self._payment_outcome = "succeeded"
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._routes = self._build_routes()
        self._reset_state()

    # ---- lifecycle -----------------------------------------------------

    def start(self) -> StripeServer:
        """Bind an ephemeral port and serve from a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("StripeServer already started")
        self._stopping.clear()
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="stripe-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Wake hung handlers, close the socket and join every thread."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._httpd = self._thread = None

    def __enter__(self) -> StripeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base address, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        if self._httpd is None:
            raise RuntimeError("StripeServer is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def reset(self) -> None:
        """Forget objects, events, requests and faults (for a shared server)."""
        with self._lock:
            self._reset_state()

    def _reset_state(self) -> None:
        self.requests.clear()
        self.errors.clear()
        self._objects: dict[str, JSON] = {}
        self._events: list[str] = []
        self._session_params: dict[str, JSON] = {}
        self._saved: dict[str, _Saved] = {}
        self._faults: list[_Fault] = []
        self._hangs: list[_Fault] = []
        self._payment_outcome = "succeeded"
        self._next_outcomes: list[str] = []

    # ---- configuration -------------------------------------------------

    @property
    def payment_outcome(self) -> str:
        """What an off-session confirm does: succeeded / card_declined / authentication_required."""
        return self._payment_outcome

    @payment_outcome.setter
    def payment_outcome(self, value: str) -> None:
        if value not in _PAYMENT_OUTCOMES:
            raise ValueError(f"payment_outcome must be one of {_PAYMENT_OUTCOMES}")
        self._payment_outcome = value

    def queue_payment_outcomes(self, *outcomes: str) -> None:
        """The next off-session confirms answer these in turn (e.g. declined, declined,
        succeeded), then `payment_outcome` again."""
        for outcome in outcomes:
            if outcome not in _PAYMENT_OUTCOMES:
                raise ValueError(f"outcomes must be among {_PAYMENT_OUTCOMES}")
        with self._lock:
            self._next_outcomes.extend(outcomes)

    def fail_next(
        self,
        status: int = 402,
        error_type: str | None = None,
        code: str | None = None,
        decline_code: str | None = None,
        message: str | None = None,
        path_prefix: str | None = None,
        times: int = 1,
        *,
        param: str | None = None,
        payment_intent: JSON | None = None,
        should_retry: bool | None = None,
    ) -> None:
        """Answer the next ``times`` matching API requests with a Stripe error.

        ``error_type`` defaults from the status (402 card_error, 5xx api_error,
        4xx invalid_request_error); a card_error defaults to code card_declined.
        Injected failures are not stored under the Idempotency-Key, so a retry
        with the same key is processed normally (like a request Stripe never ran).
        ``should_retry`` sets Stripe's ``Stripe-Should-Retry`` header.
        """
        etype = error_type or _default_error_type(status)
        if etype == "card_error" and code is None:
            code = "card_declined"
        error = stripe_error(
            etype, message, code=code, decline_code=decline_code, param=param, payment_intent=payment_intent
        )
        headers = {} if should_retry is None else {"Stripe-Should-Retry": "true" if should_retry else "false"}
        with self._lock:
            self._faults.append(_Fault(path_prefix, times, status=status, error=error, headers=headers))

    def hang_next(self, seconds: float, path_prefix: str | None = None, times: int = 1) -> None:
        """Delay the next matching API request(s) so a client timeout fires.

        The request is still processed after the delay (or when the server
        stops), like a Stripe request whose response was lost on the way back.
        """
        with self._lock:
            self._hangs.append(_Fault(path_prefix, times, seconds=seconds))

    # ---- seeding and inspection ----------------------------------------

    def add_object(self, obj: Mapping[str, Any]) -> JSON:
        """Store any Stripe object so GET/expand returns it."""
        stored = copy.deepcopy(dict(obj))
        with self._lock:
            self._objects[stored["id"]] = stored
        return copy.deepcopy(stored)

    def get_object(self, obj_id: str) -> JSON | None:
        """A copy of a stored object (or None), for assertions."""
        with self._lock:
            obj = self._objects.get(obj_id)
            return copy.deepcopy(obj) if obj is not None else None

    def add_payment_method(self, customer: str | None = None, card: CardDetails | None = None) -> JSON:
        """Seed a saved card, e.g. for off-session charge tests."""
        return self.add_object(card_payment_method(customer=customer, card=card or self.card))

    def add_event(self, event: Mapping[str, Any], delivered: bool = True) -> JSON:
        """Seed an event; undelivered ones show up under delivery_success=false."""
        stored = copy.deepcopy(dict(event))
        stored.setdefault("id", new_id("evt_"))
        stored.setdefault("created", _now())
        stored["pending_webhooks"] = 0 if delivered else 1
        with self._lock:
            self._objects[stored["id"]] = stored
            if stored["id"] not in self._events:
                self._events.append(stored["id"])
        return copy.deepcopy(stored)

    @property
    def events(self) -> list[JSON]:
        """Stored events, oldest first."""
        with self._lock:
            return [copy.deepcopy(self._objects[e]) for e in self._events]

    def requests_to(self, method: str, path_prefix: str) -> list[RecordedRequest]:
        """Recorded requests with this method whose path starts with the prefix."""
        with self._lock:
            return [r for r in self.requests if r.method == method.upper() and r.path.startswith(path_prefix)]

    def complete_session(
        self, session_id: str, *, delivered: bool = True, email: str = "customer@example.com"
    ) -> JSON:
        """Act out the customer finishing Checkout; return the completed event.

        Creates the card, the succeeded SetupIntent (setup mode) or
        PaymentIntent + Charge (payment mode), marks the session complete and
        stores a ``checkout.session.completed`` event (``delivered`` controls
        whether it counts as a missed webhook).
        """
        with self._lock:
            cs = self._require(session_id, "checkout.session")
            if cs["status"] != "open":
                raise ValueError(f"session {session_id} is {cs['status']}")
            extra = self._session_params.get(session_id, {})
            if cs["mode"] == "setup":
                self._complete_setup(cs, extra)
            else:
                self._complete_payment(cs, extra)
            _mark_complete(cs, email=email)
            event = make_event("checkout.session.completed", cs)
            return self.add_event(event, delivered=delivered)

    def _complete_setup(self, cs: JSON, extra: JSON) -> None:
        pm = self.add_payment_method(customer=cs["customer"])
        meta = (extra.get("setup_intent_data") or {}).get("metadata")
        si = succeeded_setup_intent(customer=cs["customer"], payment_method=pm["id"], metadata=meta)
        self.add_object(si)
        cs["setup_intent"] = si["id"]

    def _complete_payment(self, cs: JSON, extra: JSON) -> None:
        pi_data = extra.get("payment_intent_data") or {}
        keep = cs["customer"] if pi_data.get("setup_future_usage") else None
        pm = self.add_payment_method(customer=keep)
        pi = succeeded_payment_intent(
            amount=cs["amount_total"] or 0,
            currency=cs["currency"] or "usd",
            customer=cs["customer"],
            payment_method=pm["id"],
            metadata=pi_data.get("metadata"),
        )
        self.add_object(pi)
        self.add_object(_succeeded_charge(pi, self.card))
        cs["payment_intent"] = pi["id"]

    # ---- request handling ----------------------------------------------

    def handle(self, method: str, raw_path: str, headers: Iterable[tuple[str, str]], body: str) -> _Response:
        """Record, then answer one request (called from handler threads)."""
        req = self._record(method, raw_path, headers, body)
        try:
            if req.path.startswith("/checkout/"):
                return self._finish(req, *self._serve_page(req))
            self._maybe_hang(req.path)
            with self._lock:
                return self._answer_api(req)
        except Exception:  # noqa: BLE001 - a server bug must surface, not hang
            self.errors.append(traceback.format_exc())
            return self._json(req, 500, {"error": stripe_error("api_error")})

    def _record(
        self, method: str, raw_path: str, headers: Iterable[tuple[str, str]], body: str
    ) -> RecordedRequest:
        parts = urlsplit(raw_path)
        hdrs = Headers(headers)
        req = RecordedRequest(
            method=method,
            path=parts.path,
            query=decode_query(parts.query),
            form=_parse_body(body, hdrs.get("content-type", "")),
            headers=hdrs,
            idempotency_key=hdrs.get("idempotency-key"),
            body=body,
        )
        with self._lock:
            self.requests.append(req)
        return req

    def _take(self, queue: list[_Fault], path: str) -> _Fault | None:
        with self._lock:
            for fault in queue:
                if fault.matches(path):
                    fault.times -= 1
                    if fault.times <= 0:
                        queue.remove(fault)
                    return fault
        return None

    def _maybe_hang(self, path: str) -> None:
        hang = self._take(self._hangs, path)
        if hang is not None:
            self._stopping.wait(hang.seconds)

    def _answer_api(self, req: RecordedRequest) -> _Response:
        fault = self._take(self._faults, req.path)
        if fault is not None:
            return self._json(req, fault.status, {"error": copy.deepcopy(fault.error)}, fault.headers)
        saved = self._saved.get(req.idempotency_key or "") if req.method == "POST" else None
        if saved is not None:
            return self._replay(req, saved)
        try:
            handler, match = self._route(req)
            self._check_auth(req)
            status, payload = handler(req, match)
        except StripeHTTPError as err:
            return self._json(req, err.status, {"error": err.error}, err.headers)
        resp = self._json(req, status, payload)
        if req.method == "POST" and req.idempotency_key and (status < 400 or status == 402):
            self._saved[req.idempotency_key] = _Saved(
                req.method,
                req.path,
                json.dumps(req.form, sort_keys=True),
                status,
                resp.body,
                resp.headers["Request-Id"],
            )
        return resp

    def _replay(self, req: RecordedRequest, saved: _Saved) -> _Response:
        """Stripe replays the first result; different params are an error."""
        same = (saved.method, saved.path, saved.form_json) == (
            req.method,
            req.path,
            json.dumps(req.form, sort_keys=True),
        )
        if not same:
            return self._json(
                req,
                400,
                {
                    "error": stripe_error(
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with. Try using a key other than "
                        f"'{req.idempotency_key}' if you meant to execute a different request.",
                    )
                },
            )
        req.replayed = True
        req.status, req.response = saved.status, json.loads(saved.body)
        return _Response(
            saved.status,
            saved.body,
            {
                "Content-Type": "application/json",
                "Request-Id": new_id("req_", 14),
                "Idempotent-Replayed": "true",
                "Original-Request": saved.request_id,
                "Idempotency-Key": req.idempotency_key or "",
            },
        )

    def _check_auth(self, req: RecordedRequest) -> None:
        auth = req.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ").strip()
        if not key:
            raise StripeHTTPError(
                401,
                stripe_error(
                    "invalid_request_error",
                    "You did not provide an API key. You need to provide your API key "
                    "in the Authorization header, using Bearer auth.",
                ),
            )
        if self.api_key is not None and key != self.api_key:
            raise StripeHTTPError(
                401,
                stripe_error(
                    "invalid_request_error",
                    f"Invalid API Key provided: {key[:8]}****",
                    code="api_key_invalid",
                ),
            )

    def _route(self, req: RecordedRequest) -> tuple[Handler, dict[str, str]]:
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(req.path)
            if match and method == req.method:
                return handler, match.groupdict()
        raise StripeHTTPError(
            404,
            stripe_error(
                "invalid_request_error",
                f"Unrecognized request URL ({req.method}: {req.path}). Please see "
                "https://stripe.com/docs or we can help at https://support.stripe.com/.",
            ),
        )

    def _json(
        self, req: RecordedRequest, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> _Response:
        req.response = payload
        return self._finish(
            req,
            status,
            json.dumps(payload).encode("utf-8"),
            {"Content-Type": "application/json", **(headers or {})},
        )

    def _finish(self, req: RecordedRequest, status: int, body: bytes, headers: dict[str, str]) -> _Response:
        req.status = status
        headers = {"Request-Id": new_id("req_", 14), **headers}
        if req.idempotency_key:
            headers["Idempotency-Key"] = req.idempotency_key
        return _Response(status, body, headers)

    # ---- routes --------------------------------------------------------

    def _build_routes(self) -> list[tuple[str, re.Pattern[str], Handler]]:
        oid = r"(?P<id>[^/]+)"
        table: list[tuple[str, str, Handler]] = [
            ("POST", "/v1/customers", self._create_customer),
            ("GET", f"/v1/customers/{oid}", self._retriever("customer")),
            ("POST", f"/v1/customers/{oid}", self._update_customer),
            ("GET", f"/v1/customers/{oid}/payment_methods", self._customer_pms),
            ("POST", "/v1/checkout/sessions", self._create_session),
            ("GET", f"/v1/checkout/sessions/{oid}", self._retriever("checkout.session")),
            ("POST", "/v1/setup_intents", self._create_setup_intent),
            ("GET", f"/v1/setup_intents/{oid}", self._retriever("setup_intent")),
            ("POST", "/v1/payment_intents", self._create_payment_intent),
            ("GET", f"/v1/payment_intents/{oid}", self._retriever("payment_intent")),
            ("GET", "/v1/payment_methods", self._list_pms),
            ("GET", f"/v1/payment_methods/{oid}", self._get_payment_method),
            ("GET", f"/v1/charges/{oid}", self._retriever("charge")),
            ("POST", "/v1/refunds", self._create_refund),
            ("GET", f"/v1/refunds/{oid}", self._retriever("refund")),
            ("GET", "/v1/events", self._list_events),
            ("GET", f"/v1/events/{oid}", self._retriever("event")),
        ]
        return [(m, re.compile(p), h) for m, p, h in table]

    def _require(self, obj_id: str, kind: str) -> JSON:
        obj = self._objects.get(obj_id)
        if obj is None or obj.get("object") != kind:
            raise _missing(kind, obj_id)
        return obj

    def _store(self, obj: JSON) -> JSON:
        self._objects[obj["id"]] = obj
        return obj

    def _render(self, obj: JSON, req: RecordedRequest) -> JSON:
        """A copy of ``obj`` with the request's ``expand[]`` paths inlined."""
        out = copy.deepcopy(obj)
        expand = req.params.get("expand") or []
        for path in [expand] if isinstance(expand, str) else expand:
            self._expand(out, path.split("."))
        return out

    def _expand(self, node: Any, parts: list[str]) -> None:
        if not parts or not isinstance(node, dict):
            return
        value = node.get(parts[0])
        if isinstance(value, str) and value in self._objects:
            value = node[parts[0]] = copy.deepcopy(self._objects[value])
        for item in value if isinstance(value, list) else [value]:
            self._expand(item, parts[1:])

    def _retriever(self, kind: str) -> Handler:
        def retrieve(req: RecordedRequest, m: dict[str, str]) -> tuple[int, Any]:
            return 200, self._render(self._require(m["id"], kind), req)

        return retrieve

    def _list(self, items: list[JSON], req: RecordedRequest, url: str) -> tuple[int, JSON]:
        """Stripe's list envelope with limit/starting_after/ending_before."""
        q = req.query
        limit = max(1, min(100, _as_int(q.get("limit"), 10)))
        ids = [i["id"] for i in items]
        if q.get("starting_after") in ids:
            items = items[ids.index(q["starting_after"]) + 1 :]
        elif q.get("ending_before") in ids:
            items = items[: ids.index(q["ending_before"])][-limit:]
        data = [self._render(i, req) for i in items[:limit]]
        return 200, {"object": "list", "data": data, "has_more": len(items) > limit, "url": url}

    # customers

    def _create_customer(self, req: RecordedRequest, m: dict[str, str]) -> tuple[int, Any]:
        cus = fixture("customer")
        cus.update(id=new_id("cus_", 14), created=_now(), discount=None, invoice_prefix=new_id("", 8).upper())
        _overlay(cus, req.form)
        return 200, self._render(self._store(cus), req)

    def _update_customer(self, req: RecordedRequest, m: dict[str, str]) -> tuple[int, Any]:
        cus = self._require(m["id"], "customer")
        _overlay(cus, req.form, merge=True)
        return 200, self._render(cus, req)

    # payment methods

    def _get_payment_method(self, req: RecordedRequest, m: dict[str, str]) -> tuple[int, Any]:
        """Unknown pm_ ids are cards entered in hosted Checkout: invent them."""
        if m["id"] not in self._objects and m["id"].startswith("pm_"):
            self._store(card_payment_method(pm_id=m["id"], card=self.card))
        return 200, self._render(self._require(m["id"], "payment_method"), req)

    def _pms_of(self, customer: str, req: RecordedRequest) -> list[JSON]:
        self._require(customer, "customer")
        wanted = req.query.get("type")
        return [
            o
            for o in reversed(self._objects.values())
            if o.get("object") == "payment_method"
            and o.get("customer") == customer
            and (not wanted or o.get("type") == wanted)
        ]

    def _customer_pms(self, req: RecordedRequest, m: dict[str, str]) -> tuple[int, Any]:
        return self._list(self._pms_of(m["id"], req), req, f"/v1/customers/{m['id']}/payment_methods")

    def _list_pms(self, req: RecordedRequest, m: dict[str, str]) -> tuple[int, Any]:
        customer = req.query.get("customer")
        if not customer:
            raise StripeHTTPError(
                400,
                stripe_error(
                    "invalid_request_error",
                    "Missing required param: customer.",
                    code="parameter_missing",
                    param="customer",
                ),
            )
        return self._list(self._pms_of(customer, req), req, "/v1/payment_methods")

    # checkout sessions

    def _create_session(self, req: RecordedRequest, m: dict[str, str]) -> tuple[int, Any]:
        p = req.form
        cs = _checkout_session_base(mode=p.get("mode") or "payment")
        _overlay(cs, p)
        if cs["mode"] == "payment":
            amount, currency = _line_items_total(p.get("line_items") or [])
            _set_amount(cs, amount, p.get("currency") or currency)
        cs["url"] = f"{self.url}/checkout/{cs['id']}"
        self._session_params[cs["id"]] = {
            k: p[k] for k in ("payment_intent_data", "setup_intent_data", "line_items") if k in p
        }
        return 200, self._render(self._store(cs), req)

    # setup intents

    def _create_setup_intent(self, req: RecordedRequest, m: dict[str, str]) -> tuple[int, Any]:
        p = req.form
        si = _fresh_setup_intent(customer=None, payment_method=None, metadata=None, intent_id=None)
        _overlay(si, p)
        if si["payment_method"]:
            si["status"] = "succeeded" if _truthy(p.get("confirm")) else "requires_confirmation"
        return 200, self._render(self._store(si), req)

    # payment intents

    def _create_payment_intent(self, req: RecordedRequest, m: dict[str, str]) -> tuple[int, Any]:
        p = req.form
        for name in ("amount", "currency"):
            if not p.get(name):
                raise StripeHTTPError(
                    400,
                    stripe_error(
                        "invalid_request_error",
                        f"Missing required param: {name}.",
                        code="parameter_missing",
                        param=name,
                    ),
                )
        pi = _fresh_payment_intent(
            amount=_as_int(p["amount"]),
            currency=p["currency"],
            customer=None,
            payment_method=None,
            metadata=None,
            intent_id=None,
        )
        _overlay(pi, p)
        if not _truthy(p.get("confirm")):
            pi["status"] = "requires_confirmation" if pi["payment_method"] else pi["status"]
            return 200, self._render(self._store(pi), req)
        if not pi["payment_method"]:
            raise StripeHTTPError(
                400,
                stripe_error(
                    "invalid_request_error",
                    "You cannot confirm this PaymentIntent because it's missing a payment method.",
                    code="payment_intent_unexpected_state",
                    param="payment_method",
                ),
            )
        outcome = "succeeded"
        if _truthy(p.get("off_session")):
            outcome = self._next_outcomes.pop(0) if self._next_outcomes else self._payment_outcome
        if outcome == "succeeded":
            return 200, self._render(self._succeed(pi), req)
        return 402, {"error": self._decline(pi, outcome)}

    def _succeed(self, pi: JSON) -> JSON:
        pi.update(status="succeeded", amount_received=pi["amount"], latest_charge=new_id("ch_"))
        self._store(_succeeded_charge(pi, self.card))
        return self._store(pi)

    def _decline(self, pi: JSON, outcome: str) -> JSON:
        """Stripe's 402 for an off-session failure, carrying the PaymentIntent."""
        if outcome == "card_declined":
            charge = _succeeded_charge({**pi, "latest_charge": new_id("ch_")}, self.card)
            charge.update(
                status="failed",
                paid=False,
                captured=False,
                amount_captured=0,
                failure_code="card_declined",
                failure_message="Your card was declined.",
            )
            self._store(charge)
            error = stripe_error(
                "card_error",
                "Your card was declined.",
                code="card_declined",
                decline_code=self.payment_decline_code,
                charge=charge["id"],
            )
            pi.update(status="requires_payment_method", latest_charge=charge["id"])
        else:
            error = stripe_error(
                "card_error",
                "Your card was declined. This transaction requires authentication.",
                code="authentication_required",
                decline_code="authentication_required",
            )
            pi.update(
                status="requires_action",
                next_action={"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}},
            )
        pm = self._objects.get(pi["payment_method"])
        if pm is not None:
            error["payment_method"] = copy.deepcopy(pm)
        pi["last_payment_error"] = copy.deepcopy(error)
        self._store(pi)
        return {**error, "payment_intent": copy.deepcopy(pi)}

    # refunds

    def _create_refund(self, req: RecordedRequest, m: dict[str, str]) -> tuple[int, Any]:
        """A refund of a PaymentIntent's charge (or a charge), in full or in part."""
        p = req.form
        charge_id = p.get("charge")
        if not charge_id and p.get("payment_intent"):
            pi = self._require(p["payment_intent"], "payment_intent")
            charge_id = pi.get("latest_charge")
            if not charge_id:
                charge_id = next(
                    (
                        o["id"]
                        for o in self._objects.values()
                        if o.get("object") == "charge" and o.get("payment_intent") == pi["id"]
                    ),
                    None,
                )
        if not charge_id:
            raise StripeHTTPError(
                400,
                stripe_error(
                    "invalid_request_error",
                    "One of the following params should be provided for this request: "
                    "payment_intent or charge.",
                    code="parameter_missing",
                ),
            )
        charge = self._require(charge_id, "charge")
        left = charge["amount"] - int(charge.get("amount_refunded") or 0)
        amount = _as_int(p.get("amount"), left)
        if amount <= 0 or amount > left:
            raise StripeHTTPError(
                400,
                stripe_error(
                    "invalid_request_error",
                    f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                    code="amount_too_large",
                    param="amount",
                ),
            )
        refund = fixture("refund")
        refund.update(
            id=new_id("re_"),
            created=_now(),
            amount=amount,
            currency=charge["currency"],
            charge=charge["id"],
            payment_intent=charge.get("payment_intent"),
            metadata=dict(p.get("metadata") or {}),
            reason=p.get("reason"),
            status=self.refund_status,
        )
        charge["amount_refunded"] = int(charge.get("amount_refunded") or 0) + amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        refunds = charge.setdefault("refunds", {"object": "list", "data": [], "has_more": False})
        refunds["data"].insert(0, refund)
        self._store(refund)
        return 200, self._render(refund, req)

    def settle_refund(self, refund_id: str, status: str = "succeeded", *, delivered: bool = True) -> JSON:
        """Stripe finishing a refund: its status set and a stored ``refund.updated`` event."""
        with self._lock:
            refund = self._require(refund_id, "refund")
            refund["status"] = status
            charge = self._objects.get(refund.get("charge") or "")
            for listed in (charge or {}).get("refunds", {}).get("data", []):
                if listed.get("id") == refund_id:
                    listed["status"] = status
            return self.add_event(make_event("refund.updated", refund), delivered=delivered)

    # events

    def _list_events(self, req: RecordedRequest, m: dict[str, str]) -> tuple[int, Any]:
        q = req.query
        seq = {eid: n for n, eid in enumerate(self._events)}
        events = sorted(
            (self._objects[e] for e in self._events),
            key=lambda e: (e.get("created", 0), seq[e["id"]]),
            reverse=True,
        )
        events = [e for e in events if _event_matches(e, q)]
        return self._list(events, req, "/v1/events")

    # browser pages (the hosted Checkout stand-in)

    def _serve_page(self, req: RecordedRequest) -> tuple[int, bytes, dict[str, str]]:
        """``/checkout/{id}`` with Pay/Cancel links so browser tests can finish."""
        parts = req.path.strip("/").split("/")
        with self._lock:
            cs = self._objects.get(parts[1]) if len(parts) >= 2 and parts[0] == "checkout" else None
            if cs is None or cs.get("object") != "checkout.session":
                return 404, b"No such checkout session", {"Content-Type": "text/plain"}
            if len(parts) == 3 and parts[2] in ("complete", "cancel"):
                return self._leave_checkout(cs, parts[2])
        return 200, _checkout_html(cs).encode("utf-8"), {"Content-Type": "text/html; charset=utf-8"}

    def _leave_checkout(self, cs: JSON, action: str) -> tuple[int, bytes, dict[str, str]]:
        if action == "complete" and cs["status"] == "open":
            self.complete_session(cs["id"])
        target = cs["success_url"] if action == "complete" else cs["cancel_url"]
        target = (target or "").replace("{CHECKOUT_SESSION_ID}", cs["id"])
        return 303, b"", {"Location": target}


def _default_error_type(status: int) -> str:
    if status == 402:
        return "card_error"
    if status == 429:
        return "rate_limit_error"
    return "api_error" if status >= 500 else "invalid_request_error"


def _line_items_total(items: list[Any]) -> tuple[int, str | None]:
    """amount_total for mode=payment: sum of price_data.unit_amount * quantity."""
    total, currency = 0, None
    for item in items if isinstance(items, list) else []:
        price = item.get("price_data") or {}
        total += _as_int(price.get("unit_amount")) * _as_int(item.get("quantity"), 1)
        currency = currency or price.get("currency")
    return total, currency


def _created_matches(created: int, spec: Any) -> bool:
    if isinstance(spec, str):
        return created == _as_int(spec)
    ops = {"gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__}
    return all(ops[k](created, _as_int(v)) for k, v in spec.items() if k in ops)


def _event_matches(event: JSON, q: JSON) -> bool:
    """The /v1/events filters: delivery_success, type (with *), types[], created."""
    if "delivery_success" in q:
        delivered = event.get("pending_webhooks", 0) == 0
        if delivered != _truthy(q["delivery_success"]):
            return False
    if q.get("type") and not fnmatch.fnmatchcase(event["type"], q["type"]):
        return False
    if q.get("types") and event["type"] not in q["types"]:
        return False
    return "created" not in q or _created_matches(event.get("created", 0), q["created"])


def _checkout_html(cs: JSON) -> str:
    sid = html.escape(cs["id"])
    amount = cs.get("amount_total")
    what = (
        f"Pay {amount} {html.escape(cs.get('currency') or '')}"
        if cs["mode"] == "payment" and amount is not None
        else "Save card"
    )
    return (
        f"<!doctype html><title>Stripe Checkout (test)</title>"
        f"<h1>Checkout {sid}</h1><p>Test card {html.escape(cs['mode'])} flow</p>"
        f'<a id="complete" href="/checkout/{sid}/complete">{what}</a> '
        f'<a id="cancel" href="/checkout/{sid}/cancel">Cancel</a>'
    )
