"""Finishing what was left: bills the outbox says are due (their batch died with an
engine, or the fiscal platform could not take them) and offline paper bills that
still need their e-bill (补开). Runs beside issuance, in batches."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from actors.pipeline import Pipeline
from engine.errors import EbillError
from engine.model import BillStatus
from engine.pipeline import Work
from engine.sealing import KeyRing
from ops import metrics
from storage import archive as archive_store
from storage.offline import link_back_issued, quarantine_offline, waiting_offline

__all__ = ["back_issue_offline", "recover_forever", "recover_once"]

log = logging.getLogger(__name__)


async def back_issue_offline(
    pipeline: Pipeline, pool: asyncpg.Pool, limit: int, ring: KeyRing
) -> int:
    """Issue the e-bills of offline paper bills (补开) and link them; returns how many.

    Waits while the fiscal circuit is open: the platform being back is the point.
    A bill that then cannot be countersigned is finished by the outbox as usual.
    An offline bill that cannot be issued or linked is quarantined (counted in
    ``ebill_recovery_quarantined_total``, listed by GetBacklog), so that it is not
    tried forever and never holds up the others.
    """
    waiting = await waiting_offline(pool, limit, ring)
    if not waiting or await pipeline.fiscal_circuit_open():
        return 0
    outcomes = await pipeline.issue([raw for _, raw in waiting])
    links: list[tuple[int, int]] = []
    for (offline_id, _), out in zip(waiting, outcomes, strict=True):
        if isinstance(out, Work) and out.status is not BillStatus.RESERVED:
            links.append((offline_id, out.bill_id))
        elif isinstance(out, EbillError) and out.code in _REFUSED_FOR_GOOD:
            # The request no longer validates, or its bus_no now names other
            # content: every later pass would get the same answer.
            await _quarantine(pool, offline_id, None, f"{out.code}: {out}")
    try:
        await link_back_issued(pool, links)
    except _BAD_LINK:
        # One bad link fails the whole batch's transaction: link one by one to find
        # it. Rare (it takes bad data), so the slow path is fine. Anything else (the
        # database away) propagates: the bills stay waiting for the next pass.
        linked = []
        for link in links:
            try:
                await link_back_issued(pool, [link])
            except _BAD_LINK as exc:
                await _quarantine(pool, link[0], link[1], f"link failed: {exc}")
            else:
                linked.append(link)
        links = linked
    if links:
        log.info("back-issued %d offline bills", len(links))
    return len(links)


# Refusals that depend on the request alone; the others (a stage or the database
# away, numbers running out) may pass next time, so the bill stays waiting.
_REFUSED_FOR_GOOD = frozenset({"INVALID_ARGUMENT", "ALREADY_EXISTS"})
# A link the data refuses (the sheet is another bill's): trying again cannot help.
_BAD_LINK = (asyncpg.IntegrityConstraintViolationError, EbillError)


async def _quarantine(pool: asyncpg.Pool, offline_id: int, bill_id: int | None, why: str) -> None:
    await quarantine_offline(pool, offline_id, bill_id, why)
    metrics.RECOVERY_QUARANTINED.labels("offline").inc()
    log.error("offline bill %d quarantined (e-bill %s): %s", offline_id, bill_id, why)


async def recover_once(pipeline: Pipeline, pool: asyncpg.Pool, batch: int, ring: KeyRing) -> int:
    """One pass: offline bills, then up to ``batch`` due bills of the outbox.
    Returns how many due bills were claimed (``batch`` means more may be due).

    The two halves fail apart: offline bills that cannot be back-issued (the
    platform gone again, a bad record) never keep the outbox from draining.
    """
    try:
        await back_issue_offline(pipeline, pool, batch, ring)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("back-issuing offline bills failed; the outbox goes on")
    works = await archive_store.claim_due(pool, batch, ring)
    if works:
        items = await pipeline.recover(works)
        done = sum(1 for it in items if isinstance(it, Work) and it.status is BillStatus.ISSUED)
        metrics.RECOVERED.labels("issued").inc(done)
        metrics.RECOVERED.labels("unfinished").inc(len(items) - done)
        log.info("recovery: %d of %d bills finished", done, len(items))
    return len(works)


async def recover_forever(
    pipeline: Pipeline, pool: asyncpg.Pool, *, batch: int, interval_s: float, ring: KeyRing
) -> None:
    """Recovery passes until cancelled: back to back while whole batches are due,
    else one every ``interval_s``. A failed pass is logged and tried again."""
    while True:
        try:
            if await recover_once(pipeline, pool, batch, ring) == batch:
                continue  # more are due: no pause
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("recovery pass failed")
        await asyncio.sleep(interval_s)
