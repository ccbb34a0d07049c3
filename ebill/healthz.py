"""Plain HTTP health (EBILL_HEALTH_ADDR) for load balancers, systemd and
Kubernetes probes that do not speak gRPC: ``GET /healthz`` answers 200 while
the engine's gRPC health is SERVING and 503 otherwise; ``/livez`` answers 200
while the process runs. Nothing else is served: it binds wherever the operator
says without exposing the API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from config.settings import split_addr

__all__ = ["serve_health"]

_MAX_REQUEST = 8192


async def serve_health(addr: str, serving: Callable[[], bool]) -> asyncio.Server:
    """Listen on ``addr`` (host:port); ``serving()`` says whether the engine is."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            # Drain the headers; a probe sends no body.
            while len(line) < _MAX_REQUEST:
                header = await asyncio.wait_for(reader.readline(), 5)
                if header in (b"\r\n", b"\n", b""):
                    break
            parts = line.decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 else ""
            if path == "/livez":
                status, body = "200 OK", "alive\n"
            elif path == "/healthz":
                ok = serving()
                status, body = (
                    ("200 OK", "SERVING\n") if ok else ("503 Service Unavailable", "NOT_SERVING\n")
                )
            else:
                status, body = "404 Not Found", "not found\n"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode()
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    host, port = split_addr(addr)
    return await asyncio.start_server(answer, host, port)
