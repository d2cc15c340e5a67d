"""Rate limits held in Redis (RATELIMIT_STORAGE_URI=redis://...) bind every app process alike.

Each "app server" is a separate Python process with its own create_app(), as under gunicorn:
within one process the module-level Limiter keeps the storage of the app created last, so two
apps in one process would share a limit whatever the storage and prove nothing. The control
test shows the check can fail: with memory:// storage each process counts on its own.

With Redis unreachable, each process falls back to counting in memory
(RATELIMIT_IN_MEMORY_FALLBACK_ENABLED): limits still hold per process, and sign-in answers instead
of failing with a 500.

The Redis test needs a server at TEST_REDIS_URL (default redis://127.0.0.1:6379/0) and skips
without one. Its keys carry a prefix unique to the run (RATELIMIT_KEY_PREFIX) and are deleted
afterwards, so runs never see each other's counts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

# One app server: create the app, make N sign-in attempts with a wrong password, print the
# statuses. The limit per account is 5 per 15 minutes; the per-client limit stays out of the way.
APP_SERVER = """
import json, sys
from portal import create_app
settings = json.loads(sys.argv[1])
app = create_app(settings)
client = app.test_client()
statuses = [client.post("/staff/login", data={"email": "dana@example.com",
                                             "password": "wrong"}).status_code
            for _ in range(int(sys.argv[2]))]
print(json.dumps(statuses))
"""


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    except redis.exceptions.RedisError as error:
        pytest.skip(
            f"Redis is not reachable at {REDIS_URL} ({error}); set TEST_REDIS_URL "
            "or start redis-server to run this test"
        )
    prefix = f"portal-test-{uuid.uuid4().hex}"
    yield prefix
    keys = list(client.scan_iter(match=f"*{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def _app_server(settings: dict[str, object], tmp_path: Path, name: str, attempts: int) -> list[int]:
    env = {**os.environ, "PORTAL_INSTANCE_PATH": str(tmp_path / name)}
    done = subprocess.run(
        [sys.executable, "-c", APP_SERVER, json.dumps(settings), str(attempts)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _settings(settings: dict[str, object], storage: str, prefix: str) -> dict[str, object]:
    return {
        **settings,
        "RATELIMIT_STORAGE_URI": storage,
        "RATELIMIT_KEY_PREFIX": prefix,
        "LOGIN_LIMIT_PER_ACCOUNT": "5 per 15 minutes",
        "LOGIN_LIMIT_PER_CLIENT": "100 per 15 minutes",
    }


def test_two_app_processes_share_the_sign_in_limit_through_redis(settings, tmp_path, redis_prefix):
    shared = _settings(settings, REDIS_URL, redis_prefix)
    assert _app_server(shared, tmp_path, "first", 3) == [400, 400, 400]
    # The second process has seen two attempts of its own, but the account has had five.
    assert _app_server(shared, tmp_path, "second", 3) == [400, 400, 429]

    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = [key.decode() for key in client.scan_iter(match=f"*{redis_prefix}*")]
    client.close()
    assert keys and any("login-account" in key and "dana@example.com" in key for key in keys)


def test_with_memory_storage_each_process_counts_alone(settings, tmp_path):
    alone = _settings(settings, "memory://", f"portal-test-{uuid.uuid4().hex}")
    assert _app_server(alone, tmp_path, "first", 3) == [400, 400, 400]
    assert _app_server(alone, tmp_path, "second", 3) == [400, 400, 400]  # not limited: apart


def test_redis_down_falls_back_to_limits_per_process_instead_of_failing(settings, tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    down = _settings(settings, closed, f"portal-test-{uuid.uuid4().hex}")
    # Sign-in keeps working, and the limit still holds within the process: no 500.
    assert _app_server(down, tmp_path, "alone", 6) == [400, 400, 400, 400, 400, 429]
