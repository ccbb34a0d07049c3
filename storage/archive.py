"""After signing: the archive statement and the outbox that finishes every bill.

The reserve transaction (storage.bills) writes each bill with an outbox row. The
archive transaction writes the signatures of a whole batch with one UPDATE and
deletes the outbox rows of bills that are done, or pushes the next attempt of
those still pending; the recovery loop (usecases.recovery) claims the due ones.
A red bill the platform refused for good restores its original here, in the same
transaction (migration 0006).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

import asyncpg

from engine.model import BillStatus
from engine.pipeline import Work
from engine.sealing import KeyRing
from storage.bill_rows import row_to_work

__all__ = ["OUTBOX_LEASE", "archive", "backlog", "claim_due"]

log = logging.getLogger(__name__)

# How long a claimed bill is left to the claimer before another may take it.
OUTBOX_LEASE = timedelta(seconds=60)


async def archive(pool: asyncpg.Pool, works: Sequence[Work]) -> None:
    """Write the signatures and final status of a batch in one transaction.

    A bill already issued is left as it is: a replayed or resumed bill archived
    twice keeps its first archived form. Issued bills leave the outbox; the
    others get their next attempt pushed back.
    """
    todo = [w for w in works if w.status is not BillStatus.RESERVED or w.unit_signature]
    unfinished = [w for w in works if w.status is not BillStatus.ISSUED]
    if not todo and not unfinished:
        return
    async with pool.acquire() as conn, conn.transaction():
        if todo:
            await conn.execute(
                "UPDATE bills b SET status = u.status, unit_signature = u.us,"
                " fiscal_signature = NULLIF(u.fs, ''::bytea),"
                " countersigned_at = CASE WHEN u.fs = ''::bytea THEN NULL ELSE now() END,"
                " qr_signature = NULLIF(u.qs, ''::bytea),"
                " archived_at = CASE WHEN u.status = 'issued' THEN now() END"
                " FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::bytea[], $5::bytea[])"
                "   AS u(id, status, us, fs, qs)"
                " WHERE b.id = u.id AND b.status IN ('reserved', 'pending_countersign')",
                [w.bill_id for w in todo],
                [w.status.value for w in todo],
                [w.unit_signature for w in todo],
                [w.fiscal_signature for w in todo],
                [w.qr_signature for w in todo],
            )
        refused = [w.bill_id for w in works if w.platform_refused]
        done = set(await _compensate_refused_reds(conn, refused)) if refused else set()
        unfinished = [w for w in unfinished if w.bill_id not in done]
        issued = [w.bill_id for w in works if w.status is BillStatus.ISSUED] + sorted(done)
        if issued:
            await conn.execute("DELETE FROM outbox WHERE bill_id = ANY($1::bigint[])", issued)
        if unfinished:
            # Backoff 1, 2, 4 ... 60 s. attempts counts failed tries.
            await conn.execute(
                "UPDATE outbox o SET attempts = o.attempts + 1, last_error = u.err,"
                " next_attempt_at = now() + least(60, 2 ^ o.attempts) * interval '1 second'"
                " FROM unnest($1::bigint[], $2::text[]) AS u(id, err) WHERE o.bill_id = u.id",
                [w.bill_id for w in unfinished],
                [w.deferred or "unfinished" for w in unfinished],
            )


async def _compensate_refused_reds(conn: asyncpg.Connection, ids: list[int]) -> list[int]:
    """Red bills among ``ids`` that the platform refused become ``rejected`` and
    their originals ``issued`` again (a bill must not stay red-flushed without a
    valid red bill). Paper voided with the red-flush stays voided: the sheet is
    spent. Each original gets a ``red_flush_refused`` event. Returns the red bills."""
    rows = await conn.fetch(
        "WITH red AS ("
        "  UPDATE bills r SET status = $2 WHERE r.id = ANY($1::bigint[])"
        "  AND r.red_of IS NOT NULL AND r.status IN ('reserved', 'pending_countersign')"
        "  RETURNING r.id, r.red_of, r.bill_code, r.bill_no, r.operator)"
        " , orig AS ("
        "  UPDATE bills o SET status = $3 FROM red"
        "  WHERE o.id = red.red_of AND o.status = $4"
        "  RETURNING o.id, o.unit_code, o.place_code)"
        " SELECT red.id AS red_id, red.bill_code, red.bill_no, red.operator, orig.*"
        " FROM red LEFT JOIN orig ON orig.id = red.red_of",
        ids,
        BillStatus.REJECTED,
        BillStatus.ISSUED,
        BillStatus.RED_FLUSHED,
    )
    restored = [r for r in rows if r["id"] is not None]
    if restored:
        await conn.executemany(
            "INSERT INTO bill_events (unit_code, place_code, operator, op, bill_id, detail)"
            " VALUES ($1, $2, $3, 'red_flush_refused', $4, $5)",
            [
                (r["unit_code"], r["place_code"], r["operator"], r["id"],
                 {"red_bill": f"{r['bill_code']}/{r['bill_no']}", "status": "issued again"})
                for r in restored
            ],
        )  # fmt: skip
    for r in rows:
        log.error(
            "fiscal platform refused red bill %s/%s; its original is issued again",
            r["bill_code"],
            r["bill_no"],
        )
    return [r["red_id"] for r in rows]


async def claim_due(
    pool: asyncpg.Pool, limit: int, ring: KeyRing, lease: timedelta = OUTBOX_LEASE
) -> list[Work]:
    """Take up to ``limit`` unfinished bills whose next attempt is due, their
    canonical bytes opened for signing.

    Claiming pushes their next attempt ``lease`` ahead, so several engines can
    run recovery side by side without working on the same bills.
    """
    rows = await pool.fetch(
        "WITH due AS ("
        "  SELECT bill_id FROM outbox WHERE next_attempt_at <= now()"
        "  ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
        " , claimed AS ("
        "  UPDATE outbox o SET next_attempt_at = now() + $2::interval"
        "  FROM due WHERE o.bill_id = due.bill_id RETURNING o.bill_id)"
        " SELECT b.* FROM bills b JOIN claimed c ON b.id = c.bill_id ORDER BY b.id",
        limit,
        lease,
    )
    return [row_to_work(r, ring, replayed=False) for r in rows]


async def backlog(pool: asyncpg.Pool) -> dict[str, float]:
    """How much is unfinished: counts by status and the age of the oldest."""
    row = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE b.status = 'reserved') AS reserved,"
        " count(*) FILTER (WHERE b.status = 'pending_countersign') AS pending,"
        " coalesce(extract(epoch FROM now() - min(o.created_at)), 0) AS oldest_s,"
        " coalesce(max(o.attempts), 0) AS max_attempts"
        " FROM outbox o JOIN bills b ON b.id = o.bill_id"
    )
    assert row is not None
    return {
        "reserved": int(row["reserved"]),
        "pending_countersign": int(row["pending"]),
        "oldest_s": float(row["oldest_s"]),
        "max_attempts": int(row["max_attempts"]),
    }
