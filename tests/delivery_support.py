"""In-process provider sandboxes and a real SMTP server (STARTTLS + login) for
the delivery tests: the same server code `make run` starts, on a thread."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from starlette.applications import Starlette

from config.tls import TlsFiles
from ops import pki
from ops.stack import free_port

__all__ = ["Mailbox", "mailbox", "provider_pki", "serve_app"]


def provider_pki(directory: Path) -> tuple[TlsFiles, str]:
    """The providers' certificate and the CA file clients trust."""
    d = pki.ensure(directory)
    return TlsFiles.in_dir(d, "providers"), str(d / "ca.pem")


@contextlib.contextmanager
def serve_app(app: Starlette, tls: TlsFiles) -> Iterator[str]:
    """Serve ``app`` over HTTPS on a free port in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                       ssl_certfile=str(tls.cert), ssl_keyfile=str(tls.key))
    )  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("sandbox did not start")
        time.sleep(0.02)
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)


@dataclass
class Mailbox:
    """A real SMTP server that wants STARTTLS and a login, and keeps what it got."""

    user: str = "ebill"
    password: str = "s3cret-pass"
    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    # Answer DATA with this code instead of 250 (e.g. 451, 550), while > 0 times.
    refuse: tuple[int, int] = (0, 0)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        code, times = self.refuse
        if times > 0:
            self.refuse = (code, times - 1)
            return f"{code} refused by test"
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.user
            and auth_data.password.decode() == self.password
        )
        if ok:
            self.logins.append(self.user)
        return AuthResult(success=ok)


@contextlib.contextmanager
def mailbox(tls: TlsFiles) -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    port = free_port()
    controller = Controller(
        box, hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True,
        authenticator=box.authenticate, auth_required=True, auth_require_tls=True,
    )  # fmt: skip
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


async def sandbox_messages(base_url: str, ca_file: str, to: str = "") -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base_url, verify=ssl.create_default_context(
            cafile=ca_file)) as c:  # fmt: skip
        resp = await c.get("/sandbox/messages", params={"to": to} if to else None)
        return list(resp.json()["messages"])


async def sandbox_faults(base_url: str, ca_file: str, **body: Any) -> None:
    async with httpx.AsyncClient(base_url=base_url, verify=ssl.create_default_context(
            cafile=ca_file)) as c:  # fmt: skip
        (await c.post("/sandbox/faults", json=body)).raise_for_status()


def run(coro: Any) -> Any:
    return asyncio.get_event_loop().run_until_complete(coro)
