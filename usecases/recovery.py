"""Finishing what was left: bills the outbox says are due (their batch died with an
engine, or the fiscal platform could not take them) and offline paper bills that
still need their e-bill (补开). Runs beside issuance, in batches."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from actors.pipeline import Pipeline
from engine.model import BillStatus
from engine.pipeline import Work
from ops import metrics
from storage import bills as bill_store
from storage.offline import link_back_issued, waiting_offline

__all__ = ["back_issue_offline", "recover_forever", "recover_once"]

log = logging.getLogger(__name__)


async def back_issue_offline(pipeline: Pipeline, pool: asyncpg.Pool, limit: int) -> int:
    """Issue the e-bills of offline paper bills (补开) and link them; returns how many.

    Waits while the fiscal circuit is open: the platform being back is the point.
    A bill that then cannot be countersigned is finished by the outbox as usual.
    """
    waiting = await waiting_offline(pool, limit)
    if not waiting or await pipeline.fiscal_circuit_open():
        return 0
    outcomes = await pipeline.issue([raw for _, raw in waiting])
    links = [
        (offline_id, out.bill_id)
        for (offline_id, _), out in zip(waiting, outcomes, strict=True)
        if isinstance(out, Work) and out.status is not BillStatus.RESERVED
    ]
    await link_back_issued(pool, links)
    if links:
        log.info("back-issued %d offline bills", len(links))
    return len(links)


async def recover_once(pipeline: Pipeline, pool: asyncpg.Pool, batch: int) -> int:
    """One pass: offline bills, then up to ``batch`` due bills of the outbox.
    Returns how many due bills were claimed (``batch`` means more may be due)."""
    await back_issue_offline(pipeline, pool, batch)
    works = await bill_store.claim_due(pool, batch)
    if works:
        items = await pipeline.recover(works)
        done = sum(1 for it in items if isinstance(it, Work) and it.status is BillStatus.ISSUED)
        metrics.RECOVERED.labels("issued").inc(done)
        metrics.RECOVERED.labels("unfinished").inc(len(items) - done)
        log.info("recovery: %d of %d bills finished", done, len(items))
    return len(works)


async def recover_forever(
    pipeline: Pipeline, pool: asyncpg.Pool, *, batch: int, interval_s: float
) -> None:
    """Recovery passes until cancelled: back to back while whole batches are due,
    else one every ``interval_s``. A failed pass is logged and tried again."""
    while True:
        try:
            if await recover_once(pipeline, pool, batch) == batch:
                continue  # more are due: no pause
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("recovery pass failed")
        await asyncio.sleep(interval_s)
