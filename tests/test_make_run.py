"""`make run` on a fresh instance: the commands it runs migrate, seed, print the demo login
and serve the demo; the demo login then works in the served app."""
from __future__ import annotations

import http.cookiejar
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import BACKEND

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _flask(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _make_run_commands() -> list[list[str]]:
    """The flask commands of the Makefile's run target, so this test follows the Makefile."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    return [line.split("$(FLASK)", 1)[1].split() for line in recipe.splitlines() if "$(FLASK)" in line]


@pytest.mark.skipif(BACKEND == "postgres", reason="make run is the SQLite set-up")
def test_make_run_serves_the_demo_with_a_working_login(tmp_path):
    env = {**os.environ, "PORTAL_INSTANCE_PATH": str(tmp_path / "instance"),
           "PORTAL_ENV": "development"}
    for name in ("SECRET_KEY", "DATABASE_URL", "TEST_DATABASE_URL"):
        env.pop(name, None)
    commands = _make_run_commands()
    assert commands[-1][0] == "run"
    output = "".join(_flask(env, *command) for command in commands[:-1])
    assert "admin@example.com / demo-password" in output
    assert re.search(r"http://127\.0\.0\.1:5000/welcome/t/\S+", output)
    assert (tmp_path / "instance" / "portal.sqlite3").exists()
    again = _flask(env, "seed-demo")  # the second run leaves the data alone
    assert "left alone" in again

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", *commands[-1][:1], "--host", "127.0.0.1",
         "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        for _ in range(100):
            try:
                page = opener.open(f"{base}/staff/login", timeout=2).read().decode()
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        else:
            pytest.fail("the demo server did not answer")
        assert "Blue Lagoon Pool Care" in page
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        body = urllib.parse.urlencode({"csrf_token": token, "email": "admin@example.com",
                                       "password": "demo-password"}).encode()
        dashboard = opener.open(f"{base}/staff/login", data=body, timeout=5).read().decode()
        assert "Dana Reyes" in dashboard
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stderr.close()


def _make_dry_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`make -n`: the commands a target would run, printed and not run."""
    return subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=env)


def _phony_targets() -> list[str]:
    makefile = (ROOT / "Makefile").read_text()
    return re.search(r"^\.PHONY:(.*)$", makefile, re.MULTILINE).group(1).split()


def test_every_target_the_makefile_names_has_a_rule_and_the_readme_lists_them_all():
    targets = _phony_targets()
    assert {"install", "lock", "run", "test", "test-sqlite", "test-postgres", "lint", "worker",
            "bench"} <= set(targets)
    for target in targets:
        result = _make_dry_run(target)
        assert result.returncode == 0, f"make {target}: {result.stderr}"
    readme = (ROOT / "README.md").read_text()
    listed = set(re.findall(r"^\| `make ([a-z-]+)", readme, re.MULTILINE))
    assert listed == set(targets)


def test_make_run_serves_on_the_port_given():
    assert _make_dry_run("run").stdout.splitlines()[-1].endswith("--port 5000")
    assert _make_dry_run("run", "PORT=5001").stdout.splitlines()[-1].endswith("--port 5001")
    from_env = _make_dry_run("run", env={**os.environ, "PORT": "5002"})
    assert from_env.stdout.splitlines()[-1].endswith("--port 5002")


def test_install_takes_the_versions_from_the_lockfile():
    lock = (ROOT / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([a-z0-9-]+)==(\S+)", lock, re.MULTILINE))
    assert {"flask", "sqlalchemy", "icalendar", "pytest", "ruff", "mypy", "uv"} <= set(pins)
    assert "--hash=sha256:" in lock
    commands = _make_dry_run("-W", "pyproject.toml", "install").stdout
    assert f'uv=={pins["uv"]}' in commands
    assert "--require-hashes requirements.lock" in commands
    assert "--no-deps -e ." in commands
