"""Settings, read from the environment (and a `.env` file) in one place.

Secrets have no production default: a production start without `SECRET_KEY` fails loudly,
while development generates one and keeps it in the instance folder so sessions survive restarts.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any


class ConfigError(RuntimeError):
    """Raised at start-up when the environment cannot run the app safely."""


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc


def from_environment(instance_path: str) -> dict[str, Any]:
    """Collect every setting the design lists, with development-friendly defaults."""
    env = os.environ.get("PORTAL_ENV", os.environ.get("FLASK_ENV", "development"))
    instance = Path(instance_path)
    return {
        "ENV_NAME": env,
        "SECRET_KEY": os.environ.get("SECRET_KEY") or None,
        "SECRET_KEY_FALLBACKS": [key for key in os.environ.get("SECRET_KEY_FALLBACKS", "").split(",") if key],
        # The service record's HMAC key: separate from SECRET_KEY, so rotating the session key
        # never touches the record; older record keys keep verifying from the fallbacks.
        "RECORD_KEY": os.environ.get("RECORD_KEY") or None,
        "RECORD_KEY_FALLBACKS": [key for key in os.environ.get("RECORD_KEY_FALLBACKS", "").split(",") if key],
        "DATABASE_URL": os.environ.get("DATABASE_URL") or f"sqlite:///{instance / 'portal.sqlite3'}",
        "MAIL_BACKEND": os.environ.get("MAIL_BACKEND", "file"),
        "MAIL_FROM": os.environ.get("MAIL_FROM", "Handoff Portal <no-reply@localhost>"),
        "MAIL_OUTBOX_DIR": os.environ.get("MAIL_OUTBOX_DIR", str(instance / "outbox")),
        # Uploaded files (the company logo), served by the app, never from static/.
        "UPLOAD_DIR": os.environ.get("UPLOAD_DIR", str(instance / "uploads")),
        # Photos (portal/storage.py): files under UPLOAD_DIR unless STORAGE_URL names another
        # place (file:///path, or s3://bucket/prefix with boto3's usual credentials); S3 photos
        # are handed out as presigned URLs that work this long.
        "STORAGE_URL": os.environ.get("STORAGE_URL", ""),
        "STORAGE_ENDPOINT_URL": os.environ.get("STORAGE_ENDPOINT_URL", ""),
        "STORAGE_REGION": os.environ.get("STORAGE_REGION", ""),
        "STORAGE_URL_SECONDS": _int("STORAGE_URL_SECONDS", 300),
        "SMTP_HOST": os.environ.get("SMTP_HOST", "localhost"),
        "SMTP_PORT": _int("SMTP_PORT", 25),
        "SMTP_USER": os.environ.get("SMTP_USER") or None,
        "SMTP_PASSWORD": os.environ.get("SMTP_PASSWORD") or None,
        "SMTP_STARTTLS": _bool(os.environ.get("SMTP_STARTTLS")),
        "SMTP_TIMEOUT": _int("SMTP_TIMEOUT", 15),
        "OUTBOX_MAX_ATTEMPTS": _int("OUTBOX_MAX_ATTEMPTS", 6),
        "OUTBOX_LEASE_SECONDS": _int("OUTBOX_LEASE_SECONDS", 600),
        "STRIPE_SECRET_KEY": os.environ.get("STRIPE_SECRET_KEY") or None,
        "STRIPE_WEBHOOK_SECRET": os.environ.get("STRIPE_WEBHOOK_SECRET") or None,
        "STRIPE_API_BASE": os.environ.get("STRIPE_API_BASE") or None,
        # Twilio's inbound-message webhook (/sms/inbound) is refused without it.
        "TWILIO_AUTH_TOKEN": os.environ.get("TWILIO_AUTH_TOKEN") or None,
        "STRIPE_TIMEOUT": _int("STRIPE_TIMEOUT", 10),
        # Payments: retries of failed Stripe calls (same idempotency key), the origin that
        # hosts Checkout (CSP form-action; derived from STRIPE_API_BASE when unset), and how
        # long an invoice's pay link works.
        "STRIPE_MAX_NETWORK_RETRIES": _int("STRIPE_MAX_NETWORK_RETRIES", 2),
        "STRIPE_CHECKOUT_ORIGIN": os.environ.get("STRIPE_CHECKOUT_ORIGIN") or None,
        "PAY_LINK_MAX_AGE_DAYS": _int("PAY_LINK_MAX_AGE_DAYS", 45),
        # The development server's own address (`PORT=5001 make run`) unless one is given.
        "PUBLIC_BASE_URL": os.environ.get("PUBLIC_BASE_URL") or f"http://127.0.0.1:{_int('PORT', 5000)}",
        "LINK_MAX_AGE_DAYS": _int("LINK_MAX_AGE_DAYS", 14),
        "CUSTOMER_SESSION_IDLE_HOURS": _int("CUSTOMER_SESSION_IDLE_HOURS", 12),
        # Every page shows the company's name and colours: each process keeps the settings row
        # this long (a save clears its own copy at once; other processes follow within it).
        "COMPANY_CACHE_SECONDS": _int("COMPANY_CACHE_SECONDS", 30),
        "REMINDER_NOT_OPENED_DAYS": _int("REMINDER_NOT_OPENED_DAYS", 3),
        "REMINDER_NOT_FINISHED_DAYS": _int("REMINDER_NOT_FINISHED_DAYS", 5),
        "REMINDER_MAX": _int("REMINDER_MAX", 2),
        # Decisions wait this long for others on the same account, then go as one email.
        "DECISION_EMAIL_DELAY_SECONDS": _int("DECISION_EMAIL_DELAY_SECONDS", 300),
        "MAX_CONTENT_LENGTH": _int("MAX_CONTENT_LENGTH", 1024 * 1024),
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI", "memory://"),
        "LOGIN_LIMIT_PER_ACCOUNT": os.environ.get("LOGIN_LIMIT_PER_ACCOUNT", "5 per 15 minutes"),
        "LOGIN_LIMIT_PER_CLIENT": os.environ.get("LOGIN_LIMIT_PER_CLIENT", "20 per 15 minutes"),
        "NEW_LINK_LIMIT_PER_ADDRESS": os.environ.get("NEW_LINK_LIMIT_PER_ADDRESS", "3 per hour"),
        "NEW_LINK_LIMIT_PER_CLIENT": os.environ.get("NEW_LINK_LIMIT_PER_CLIENT", "10 per hour"),
        "API_RATE_LIMIT": os.environ.get("API_RATE_LIMIT", "600 per minute"),
        "RESET_LIMIT_PER_ADDRESS": os.environ.get("RESET_LIMIT_PER_ADDRESS", "3 per hour"),
        "RESET_LIMIT_PER_CLIENT": os.environ.get("RESET_LIMIT_PER_CLIENT", "10 per hour"),
        # Staff password links: an invite waits for a new colleague's first day, a reset does not.
        "STAFF_INVITE_MAX_AGE_HOURS": _int("STAFF_INVITE_MAX_AGE_HOURS", 72),
        "PASSWORD_RESET_MAX_AGE_MINUTES": _int("PASSWORD_RESET_MAX_AGE_MINUTES", 60),
        "SESSION_COOKIE_SECURE": _bool(os.environ.get("SESSION_COOKIE_SECURE"), default=env == "production"),
        "TRUST_PROXY": _int("TRUST_PROXY", 0),
        # Outgoing webhooks (portal/webhooks.py): http:// and private addresses are allowed
        # outside production unless these say otherwise (unset: None, the default for the env).
        "WEBHOOK_TIMEOUT": _int("WEBHOOK_TIMEOUT", 10),
        "WEBHOOK_ALLOW_HTTP": _optional_bool("WEBHOOK_ALLOW_HTTP"),
        "WEBHOOK_ALLOW_PRIVATE": _optional_bool("WEBHOOK_ALLOW_PRIVATE"),
    }


def _optional_bool(name: str) -> bool | None:
    raw = os.environ.get(name)
    return None if raw is None or raw.strip() == "" else _bool(raw)


def finalise(config: dict[str, Any], instance_path: str) -> None:
    """Derive the settings that depend on others and refuse unsafe production settings."""
    production = config["ENV_NAME"] == "production"
    if not config.get("SECRET_KEY"):
        if production and not config.get("TESTING"):
            raise ConfigError(
                "SECRET_KEY is not set. Production needs a long random SECRET_KEY in the "
                "environment, e.g. python -c 'import secrets; print(secrets.token_hex(32))'."
            )
        config["SECRET_KEY"] = _development_secret(Path(instance_path))
    if not config.get("RECORD_KEY"):
        if production and not config.get("TESTING"):
            raise ConfigError(
                "RECORD_KEY is not set. Production needs its own long random RECORD_KEY (not the "
                "SECRET_KEY) to sign the service record; keep a copy with the seals."
            )
        config["RECORD_KEY"] = _development_secret(Path(instance_path), "record_key")
    secure = config["SESSION_COOKIE_SECURE"]
    config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=secure,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_DURATION=60 * 60 * 24 * 14,
        PREFERRED_URL_SCHEME="https" if secure else "http",
        RATELIMIT_HEADERS_ENABLED=True,
        # Redis (RATELIMIT_STORAGE_URI) down: limit per process in memory meanwhile, not 500s.
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
        WTF_CSRF_TIME_LIMIT=None,
    )


def _development_secret(instance: Path, name: str = "secret_key") -> str:
    """Generate once and keep, so a restart does not sign everyone out (or, for the record
    key, break the record's chain)."""
    instance.mkdir(parents=True, exist_ok=True)
    key_file = instance / name
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    return key_file.read_text().strip()
