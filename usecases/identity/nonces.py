"""Nonce claims of signed requests, coalesced: every call that arrives while one
INSERT is in flight waits for the next, which claims them all in one statement
(storage.identity.claim_nonces). Authentication then costs at most one database
round trip per event-loop turn, not one per call, and a replay is refused by the
table's primary key whichever engine saw the nonce first."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta

import asyncpg

from storage import identity as store

__all__ = ["NonceClaims"]

# Expired nonces are deleted at most this often (by whichever claim comes due).
PRUNE_INTERVAL_S = 60.0


class NonceClaims:
    def __init__(self, pool: asyncpg.Pool, window_s: float) -> None:
        self._pool = pool
        self._window_s = window_s
        self._pending: dict[tuple[str, str], list[asyncio.Future[bool]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._pruned = 0.0

    async def claim(self, app_id: str, nonce: str) -> bool:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.setdefault((app_id, nonce), []).append(fut)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, {}
            try:
                # A nonce is remembered twice the window: a timestamp may be up to
                # the window early, and its nonce must outlive its acceptance.
                expires = datetime.now(UTC) + timedelta(seconds=2 * self._window_s)
                new = await store.claim_nonces(self._pool, list(batch), expires)
                if time.monotonic() - self._pruned > PRUNE_INTERVAL_S:
                    self._pruned = time.monotonic()
                    await store.prune_nonces(self._pool)
            except Exception as exc:
                for futs in batch.values():
                    for fut in futs:
                        if not fut.done():
                            fut.set_exception(exc)
                continue
            for key, futs in batch.items():
                # The same nonce twice in one batch: only the first is new.
                for i, fut in enumerate(futs):
                    if not fut.done():
                        fut.set_result(key in new and i == 0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
