"""A TCP proxy that can cut every connection through it on demand.

Used to rehearse connection loss to PostgreSQL, the signer or the fiscal
platform mid-batch (the idea of asyncpg's TCPFuzzingProxy). It runs its own event
loop in a thread, so a test or an operator script can use it from anywhere.
The upstream is a TCP address or a Unix socket path (the embedded PostgreSQL
listens on a Unix socket only).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["FaultProxy"]


class FaultProxy:
    def __init__(
        self, *, upstream_host: str = "", upstream_port: int = 0, upstream_unix: str = ""
    ) -> None:
        self._host = upstream_host
        self._port = upstream_port
        self._unix = upstream_unix
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._conns: set[asyncio.StreamWriter] = set()
        self._refuse = False
        self.port = 0
        self.cuts = 0
        self._server: asyncio.base_events.Server | None = None

    def start(self) -> FaultProxy:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.port = fut.result(timeout=10)
        return self

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refuse:
            writer.transport.abort()
            return
        try:
            if self._unix:
                up_r, up_w = await asyncio.open_unix_connection(self._unix)
            else:
                up_r, up_w = await asyncio.open_connection(self._host, self._port)
        except OSError:
            writer.transport.abort()
            return
        self._conns.update((writer, up_w))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        # Cancelled by stop(): end quietly, or asyncio logs the cancellation as an error.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self._conns.discard(writer)
        self._conns.discard(up_w)

    def cut(self) -> int:
        """Abort every open connection, both sides, at once. Returns how many."""

        def _cut() -> int:
            n = len(self._conns) // 2
            for w in list(self._conns):
                w.transport.abort()
            self._conns.clear()
            return n

        n: int = asyncio.run_coroutine_threadsafe(_async(_cut), self._loop).result(timeout=10)
        self.cuts += 1
        return n

    def refuse(self, on: bool) -> None:
        """While on, new connections are accepted and dropped at once."""
        self._refuse = on

    def stop(self) -> None:
        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._conns):
                w.transport.abort()
            me = asyncio.current_task()
            others = [t for t in asyncio.all_tasks() if t is not me]
            for t in others:
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


T = TypeVar("T")


async def _async(fn: Callable[[], T]) -> T:
    return fn()
