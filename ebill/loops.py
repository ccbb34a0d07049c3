"""The loops that run beside the edges in the engine process: health, stats,
recovery of unfinished bills, stock, the transparency log, delivery,
certificate expiry and the catalogue sync. Each gets the shared use cases and
clients (ebill/compose.py, ebill/wiring.py); none opens a client of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

import asyncpg
from grpc_health.v1 import health

from actors.pipeline import Pipeline
from config.settings import Settings
from config.tuning import STATS_INTERVAL_S
from ebill.compose import UseCases
from ebill.edges import set_health
from ebill.wiring import Clients
from engine.sealing import KeyRing
from usecases.catalog import sync_loop
from usecases.certificates import expiry_loop
from usecases.delivery import delivery_loop
from usecases.recovery import recover_forever
from usecases.stats import poll_stats
from usecases.stock.loop import stock_loop
from usecases.translog import translog_loop

__all__ = ["Background", "Serving", "start_loops", "watch_health"]

log = logging.getLogger(__name__)

HEALTH_INTERVAL_S = 1.0
HEALTH_TIMEOUT_S = 2.0


class Serving:
    """The engine's health as last set, for the plain HTTP probe."""

    ok = False


async def watch_health(
    servicer: health.aio.HealthServicer,
    pipeline: Pipeline,
    pool: asyncpg.Pool,
    state: Serving | None = None,
) -> None:
    """Health follows what issuing a bill needs: NOT_SERVING while the database
    does not answer or a pipeline stage is down (restarting), SERVING again when
    both are back. Signer and fiscal platform outages do not count: bills then
    still issue (pending) or wait in the outbox."""
    serving = True
    while True:
        await asyncio.sleep(HEALTH_INTERVAL_S)
        try:
            await asyncio.wait_for(pool.fetchval("SELECT 1"), HEALTH_TIMEOUT_S)
            ok = await pipeline.healthy(HEALTH_TIMEOUT_S)
        except Exception as exc:  # the database away, in whatever way it shows
            log.warning("health: database not answering (%s)", type(exc).__name__)
            ok = False
        if state is not None:
            state.ok = ok
        if ok != serving:
            serving = ok
            log.warning("health: %s", "SERVING" if ok else "NOT_SERVING")
            await set_health(servicer, ok)


class Background:
    """The running loops; the health watcher first, so it stops first."""

    def __init__(self, health_watch: asyncio.Task[None]) -> None:
        self.health_watch = health_watch
        self.tasks: list[asyncio.Task[Any]] = [health_watch]

    def start(self, loop: Coroutine[Any, Any, Any]) -> None:
        self.tasks.append(asyncio.create_task(loop))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def start_loops(
    settings: Settings,
    pool: asyncpg.Pool,
    ring: KeyRing,
    pipeline: Pipeline,
    uc: UseCases,
    clients: Clients,
    health_servicer: health.aio.HealthServicer,
    serving: Serving,
) -> Background:
    """Start every loop the settings turn on, on the running event loop."""
    s = settings
    bg = Background(asyncio.create_task(watch_health(health_servicer, pipeline, pool, serving)))
    bg.start(poll_stats(pipeline, pool, STATS_INTERVAL_S))
    bg.start(
        recover_forever(
            pipeline, pool, batch=s.recovery_batch, interval_s=s.recovery_interval_s, ring=ring
        )
    )
    bg.start(stock_loop(pool, clients.mail, s.stock_interval_s))
    # Sequences the transparency log and signs its heads with the unit key.
    bg.start(translog_loop(pool, clients.signer, s.log_head_interval_s))
    if s.delivery:
        # Sends the bills archived to their payers (SMS, email, WeChat, Alipay).
        bg.start(delivery_loop(uc.delivery, s.delivery_interval_s))
    # Expiry of the units' signing certificates: gauge and warnings, hourly.
    bg.start(expiry_loop(uc.certificates))
    if s.catalog_sync_s > 0:
        bg.start(sync_loop(uc.catalogue, s.catalog_sync_s))
    return bg
