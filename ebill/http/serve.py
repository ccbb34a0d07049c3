"""Serving the HTTP application in the engine process: uvicorn on the engine's
own event loop (a task beside the gRPC server), TLS with the engine's
certificate from the same local CA as gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from config.settings import Settings

__all__ = ["HttpServer", "split_addr"]


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"EBILL_HTTP_ADDR must be host:port, got {addr!r}")
    return host.strip("[]"), int(port)


class _Embedded(uvicorn.Server):
    # The engine owns SIGTERM/SIGINT and stops this server itself.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        host, port = split_addr(settings.http_addr)
        tls = settings.server_tls()
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            loop="none",  # the engine's running loop (uvloop when EBILL_UVLOOP)
            http="httptools",
            lifespan="off",
            access_log=False,
            server_header=False,
            log_level="warning",
            timeout_keep_alive=30,
            backlog=2048,
            ssl_certfile=str(tls.cert) if tls else None,
            ssl_keyfile=str(tls.key) if tls else None,
            ssl_ca_certs=str(tls.ca) if tls else None,
            ssl_cert_reqs=(
                ssl.CERT_REQUIRED if tls and settings.http_client_auth else ssl.CERT_NONE
            ),
        )
        self.server = _Embedded(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen; returns once the socket is bound (raises if it cannot be)."""
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self._task.done():
                try:
                    self._task.result()
                except SystemExit:  # uvicorn exits when it cannot bind
                    pass
                raise SystemExit(
                    f"cannot serve HTTP on {self.server.config.host}:{self.server.config.port}"
                )
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._task is None:
            return
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, SystemExit):
            await self._task
