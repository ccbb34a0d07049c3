"""Request counters in fixed windows (migration 0021), for the public pages' rate
limits (usecases/verification.py): one row per key and window, incremented in one
statement, so concurrent requests and several engines count exactly."""

from __future__ import annotations

import random
from dataclasses import dataclass

import asyncpg

__all__ = ["Count", "PgCounter", "hit", "peek"]

# Rows of windows that ended this long ago are of no use to any limit.
_KEEP = "1 day"
# One hit in this many also prunes old rows (no timer, no extra process).
_PRUNE_EVERY = 500

_WINDOW = "to_timestamp(floor(extract(epoch FROM now()) / $2) * $2)"
_LEFT = f"extract(epoch FROM {_WINDOW} + make_interval(secs => $2) - now())"


@dataclass(frozen=True, slots=True)
class Count:
    """Requests counted in the current window, and seconds until it ends."""

    n: int
    left_s: float


async def hit(pool: asyncpg.Pool, key: str, window_s: int) -> Count:
    """Count one request under ``key``; returns the window's count including it."""
    row = await pool.fetchrow(
        f"INSERT INTO rate_counts (key, window_start, n) VALUES ($1, {_WINDOW}, 1)"
        " ON CONFLICT (key, window_start) DO UPDATE SET n = rate_counts.n + 1"
        f" RETURNING n, {_LEFT} AS left_s",
        key,
        float(window_s),
    )
    assert row is not None
    if random.randrange(_PRUNE_EVERY) == 0:
        await pool.execute(
            f"DELETE FROM rate_counts WHERE window_start < now() - interval '{_KEEP}'"
        )
    return Count(int(row["n"]), float(row["left_s"]))


async def peek(pool: asyncpg.Pool, key: str, window_s: int) -> Count:
    """The current window's count under ``key``, counting nothing."""
    row = await pool.fetchrow(
        f"SELECT coalesce((SELECT n FROM rate_counts WHERE key = $1"
        f" AND window_start = {_WINDOW}), 0) AS n, {_LEFT} AS left_s",
        key,
        float(window_s),
    )
    assert row is not None
    return Count(int(row["n"]), float(row["left_s"]))


@dataclass(frozen=True, slots=True)
class PgCounter:
    """The counters of one pool, as usecases.verification.Counter."""

    pool: asyncpg.Pool

    async def hit(self, key: str, window_s: int) -> Count:
        return await hit(self.pool, key, window_s)

    async def peek(self, key: str, window_s: int) -> Count:
        return await peek(self.pool, key, window_s)
