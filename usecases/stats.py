"""Bring what the stage actors and the database count into this process's
Prometheus registry, every few seconds."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from prometheus_client import Counter

from actors.pipeline import Pipeline
from ops import metrics
from storage import archive as archive_store
from storage.alerts import unread_alerts
from storage.catalog import stock_available

__all__ = ["poll_stats"]

log = logging.getLogger(__name__)


async def poll_stats(pipeline: Pipeline, pool: asyncpg.Pool, interval_s: float) -> None:
    """Until cancelled: stage counters and latencies, stock left and unread alerts
    per point, the fiscal circuit, the unfinished backlog."""
    seen: dict[tuple[str, str], float] = {}

    def advance(counter: Counter, stage: str, key: str, total: float) -> None:
        # Stage totals are cumulative; counters take the increase since last time.
        delta = total - seen.get((stage, key), 0.0)
        if delta > 0:
            counter.labels(stage).inc(delta)
        seen[(stage, key)] = total

    while True:
        try:
            stats = await pipeline.stats()
            for stage, replicas in stats.items():
                advance(metrics.STAGE_ITEMS, stage, "items", sum(r["items"] for r in replicas))
                advance(
                    metrics.STAGE_BATCHES, stage, "batches", sum(r["batches"] for r in replicas)
                )
                advance(metrics.STAGE_BUSY, stage, "busy", sum(r["busy_s"] for r in replicas))
            for stage, durations in (await pipeline.drain_durations()).items():
                for d in durations:
                    metrics.STAGE_LATENCY.labels(stage).observe(d)
            for unit, place, bill_code, left in await stock_available(pool):
                metrics.STOCK_AVAILABLE.labels(unit, place, bill_code).set(left)
            metrics.STOCK_ALERTS_UNREAD.clear()
            for unit, place, bill_code, n in await unread_alerts(pool):
                metrics.STOCK_ALERTS_UNREAD.labels(unit, place, bill_code).set(n)
            metrics.FISCAL_CIRCUIT_OPEN.set(
                max(r.get("circuit_open", 0.0) for r in stats["countersign"])
            )
            b = await archive_store.backlog(pool)
            metrics.UNFINISHED.labels("reserved").set(b["reserved"])
            metrics.UNFINISHED.labels("pending_countersign").set(b["pending_countersign"])
            metrics.OLDEST_UNFINISHED.set(b["oldest_s"])
        except asyncio.CancelledError:
            raise
        except Exception:  # metrics must never take the server down
            log.exception("cannot read stats")
        await asyncio.sleep(interval_s)
