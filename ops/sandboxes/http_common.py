"""Shared plumbing of the HTTP provider sandboxes (SMS, WeChat, Alipay): what
they record, the faults a test injects, and serving over HTTPS with uvicorn.

Each sandbox keeps the messages it accepted; tests read them at
``GET /sandbox/messages`` (filters: ``to``), clear them with
``DELETE /sandbox/messages``, and inject faults with ``POST /sandbox/faults``
(``{"fail": N, "status": 503}``: the next N calls answer that status;
``{"down": true}``: every call until ``{"down": false}``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from config.tls import TlsFiles
from ops.sandboxes.common import sandbox_tls

__all__ = ["Recorded", "Recorder", "serve_app", "tls_for"]


@dataclass
class Recorded:
    """One accepted message as the provider would deliver it."""

    to: str
    template: str
    params: dict[str, str]
    text: str
    message_id: str
    at: float = field(default_factory=time.time)
    extra: dict[str, Any] = field(default_factory=dict)


class Recorder:
    """Messages and injected faults of one sandbox (thread-safe: tests and the
    server may share a process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: list[Recorded] = []
        self.calls = 0
        self._fail = 0
        self._fail_status = 503
        self._down = False

    def add(self, message: Recorded) -> None:
        with self._lock:
            self.messages.append(message)

    def fault(self) -> Response | None:
        """The injected failure for this call, if any (counts every call)."""
        with self._lock:
            self.calls += 1
            if self._down:
                return JSONResponse({"error": "down"}, status_code=503)
            if self._fail > 0:
                self._fail -= 1
                return JSONResponse({"error": "injected"}, status_code=self._fail_status)
        return None

    async def _messages(self, request: Request) -> Response:
        if request.method == "DELETE":
            with self._lock:
                self.messages.clear()
            return JSONResponse({"cleared": True})
        to = request.query_params.get("to", "")
        with self._lock:
            found = [asdict(m) for m in self.messages if not to or m.to == to]
        return JSONResponse({"messages": found, "calls": self.calls})

    async def _faults(self, request: Request) -> Response:
        body = await request.json()
        with self._lock:
            if "down" in body:
                self._down = bool(body["down"])
            if "fail" in body:
                self._fail = int(body["fail"])
                self._fail_status = int(body.get("status", 503))
        return JSONResponse({"ok": True})

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/sandbox/messages", self._messages, methods=["GET", "DELETE"]),
            Route("/sandbox/faults", self._faults, methods=["POST"]),
        ]


def tls_for(data_dir: Path) -> TlsFiles | None:
    """The providers' HTTPS certificate of the local PKI (or EBILL_TLS_*)."""
    return sandbox_tls("providers", data_dir)


def serve_app(app: Starlette, addr: str, name: str, tls: TlsFiles | None) -> None:
    """Serve ``app`` on ``addr`` until SIGTERM/SIGINT (uvicorn handles both)."""
    host, _, port = addr.rpartition(":")
    logging.getLogger(name).info("%s listening on %s (%s)", name, addr, "TLS" if tls else "plain")
    config = uvicorn.Config(
        app,
        host=host,
        port=int(port),
        log_level="warning",
        ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
    )
    server = uvicorn.Server(config)
    print(f"{name} ready on {addr}", flush=True)
    server.run()
