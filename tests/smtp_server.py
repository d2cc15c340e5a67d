"""A real SMTP server for tests (aiosmtpd on 127.0.0.1, a free port), which records every
message it accepts and can be told to refuse the next few, or to answer slowly.

Use the `smtp_server` fixture: `from tests.smtp_server import smtp_server` in a test module.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller


class RecordingHandler:
    """aiosmtpd handler: refuses at RCPT while refusals are queued, else accepts and keeps."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refused: list[str] = []
        self.delay = 0.0
        self._refusals: list[str] = []
        self._lock = threading.Lock()  # the test thread and the server's loop thread share this

    def refuse_next(self, count: int, code: int = 451, text: str = "Try again later") -> None:
        with self._lock:
            self._refusals.extend([f"{code} {text}"] * count)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self._lock:
            refusal = self._refusals.pop(0) if self._refusals else None
        if refusal is not None:
            self.refused.append(address)
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)  # slow, without blocking other connections
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(message)
        return "250 Message accepted for delivery"


class _Controller(Controller):
    """Binds port 0; learns the real port before aiosmtpd's start-up probe connects to it."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpServer:
    def __init__(self) -> None:
        self.handler = RecordingHandler()
        self._controller = _Controller(
            self.handler, hostname="127.0.0.1", port=0, server_hostname="smtp.test"
        )

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self._controller.port

    @property
    def messages(self) -> list[EmailMessage]:
        with self.handler._lock:
            return list(self.handler.messages)

    def refuse_next(self, count: int, code: int = 451, text: str = "Try again later") -> None:
        self.handler.refuse_next(count, code, text)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
