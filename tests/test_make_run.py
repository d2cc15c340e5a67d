"""`make run` on a fresh instance, run as a developer runs it: it migrates, seeds, prints the
demo login and a link on the port asked for, serves the demo with a working login, and its worker
delivers a welcome email to instance/outbox/ within seconds, which the account page then shows.
Ctrl-C stops the web server and the worker both."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from tests.conftest import BACKEND

ROOT = Path(__file__).resolve().parents[1]
WAIT = 90.0  # seconds; a limit on waiting, not an assertion about speed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _flask(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _until(check, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"{what} did not happen within {WAIT:g} s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")


class MakeRun:
    """`make run` in its own process group, as a terminal runs it; output collected."""

    def __init__(self, env: dict[str, str]) -> None:
        # -o install: the venv this suite runs in is installed; make run would only check it.
        self.process = subprocess.Popen(
            ["make", "--no-print-directory", "-o", "install", "run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def ctrl_c(self) -> int:
        os.killpg(self.process.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground group
        code = self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        """Whatever is left (after a failure above); then the pipe is closed."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.mark.skipif(BACKEND == "postgres", reason="make run is the SQLite set-up")
def test_make_run_serves_the_demo_and_its_worker_delivers_the_welcome_email(tmp_path):
    instance = tmp_path / "instance"
    port = _free_port()
    env = {
        **os.environ,
        "PORTAL_INSTANCE_PATH": str(instance),
        "PORTAL_ENV": "development",
        "PORT": str(port),
        "MAIL_BACKEND": "file",
    }
    for name in (
        "SECRET_KEY",
        "DATABASE_URL",
        "TEST_DATABASE_URL",
        "PUBLIC_BASE_URL",
        "MAIL_OUTBOX_DIR",
        "MAKEFLAGS",
        "MAKELEVEL",
    ):
        env.pop(name, None)
    run = MakeRun(env)
    try:
        base = f"http://127.0.0.1:{port}"
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

        def login_page() -> str | None:
            if run.process.poll() is not None:
                pytest.fail(f"make run stopped:\n{run.output}")
            try:
                return opener.open(f"{base}/staff/login", timeout=2).read().decode()
            except (urllib.error.URLError, ConnectionError):
                return None

        page = _until(login_page, "the demo server answering")
        assert "admin@example.com / demo-password" in run.output
        assert re.search(rf"http://127\.0\.0\.1:{port}/welcome/t/\S+", run.output)  # the port asked for
        assert (instance / "portal.sqlite3").exists()
        assert "Blue Lagoon Pool Care" in page

        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        body = urllib.parse.urlencode(
            {"csrf_token": token, "email": "admin@example.com", "password": "demo-password"}
        ).encode()
        dashboard = opener.open(f"{base}/staff/login", data=body, timeout=5).read().decode()
        assert "Dana Reyes" in dashboard

        account = opener.open(f"{base}/staff/accounts/1", timeout=5).read().decode()
        send = re.search(r'action="/staff/accounts/1/send".*?</form>', account, re.S).group(0)
        fields = dict(re.findall(r'name="(csrf_token|form_id)" type="hidden" value="([^"]+)"', send))
        opener.open(
            f"{base}/staff/accounts/1/send", data=urllib.parse.urlencode(fields).encode(), timeout=5
        ).read()

        # Nobody runs `outbox send`: the worker make run started delivers it.
        outbox = instance / "outbox"
        [eml] = _until(lambda: list(outbox.glob("*.eml")), "the welcome email reaching instance/outbox/")
        message = message_from_bytes(eml.read_bytes(), policy=policy.default)
        assert message["To"] == "dana@example.com"
        assert message["From"].addresses[0].display_name == "Blue Lagoon Pool Care"
        assert message["Reply-To"] == "hello@bluelagoon.example"
        assert f"{base}/welcome/t/" in message.get_body(("plain",)).get_content()

        shown = _until(
            lambda: (lambda html: html if eml.name in html else None)(
                opener.open(f"{base}/staff/accounts/1", timeout=5).read().decode()
            ),
            "the account page naming the .eml",
        )
        assert re.search(
            r"welcome to dana@example\.com.*?status-sent\">sent</span>.*?" + re.escape(eml.name), shown, re.S
        )

        pids = dict(re.findall(r"(web|worker)\.1 started \(pid=(\d+)\)", run.output))
        assert set(pids) == {"web", "worker"}
        run.ctrl_c()
    finally:
        run.kill()  # only if something above failed first

    # Ctrl-C stopped both: nothing answers on the port and neither process is left.
    assert not any(_alive(int(pid)) for pid in pids.values()), run.output
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{base}/staff/login", timeout=2)
    assert "left alone" in _flask(env, "seed-demo")  # a second make run keeps the data


def _make_dry_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`make -n`: the commands a target would run, printed and not run."""
    return subprocess.run(
        ["make", "--no-print-directory", "-n", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def _phony_targets() -> list[str]:
    makefile = (ROOT / "Makefile").read_text()
    return re.search(r"^\.PHONY:(.*)$", makefile, re.MULTILINE).group(1).split()


def test_every_target_the_makefile_names_has_a_rule_and_the_readme_lists_them_all():
    targets = _phony_targets()
    assert {
        "install",
        "lock",
        "run",
        "test",
        "test-sqlite",
        "test-postgres",
        "lint",
        "worker",
        "bench",
    } <= set(targets)
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
    assert f"uv=={pins['uv']}" in commands
    assert "--require-hashes requirements.lock" in commands
    assert "--no-deps -e ." in commands
