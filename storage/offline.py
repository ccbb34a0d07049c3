"""Offline bills: paper first, e-bill later.

The paper handed out is a blank of the issuing point's paper stock, taken when the
offline bill is recorded (its paper bill row is written then, naming the offline
record), so a later conversion cannot print another bill on the same sheet and a
sheet already printed cannot be recorded offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from engine.errors import AlreadyExists, FailedPrecondition, NotFound
from engine.sealing import KeyRing
from engine.statuses import PaperStatus
from storage.personal import open_offline, seal_offline

__all__ = [
    "OfflineBill",
    "QuarantinedOffline",
    "link_back_issued",
    "quarantine_offline",
    "quarantined_count",
    "quarantined_offline",
    "record_offline",
    "waiting_offline",
]

OfflineBill = tuple[int, bytes]  # (offline id, serialised BillRequest)


@dataclass(frozen=True, slots=True)
class QuarantinedOffline:
    """An offline bill recovery set aside: its back-issue could not be finished."""

    offline_id: int
    unit_code: str
    bus_no: str
    paper_code: str
    paper_no: str
    bill_id: int | None  # the e-bill it got, if it got one
    reason: str
    quarantined_at: datetime


async def _take_blank(
    conn: asyncpg.Connection, unit_code: str, place_code: str, paper_code: str, paper_no: str
) -> int:
    """The stock range of the point holding this paper number, locked; the number
    must still be blank. Returns the range's id."""
    n = int(paper_no)
    # FOR UPDATE: the same lock a conversion takes (storage.paper._take) before it
    # looks for a blank, so the two cannot pick the same sheet unseen.
    stock_id = await conn.fetchval(
        "SELECT id FROM paper_stock WHERE unit_code = $1 AND place_code = $2"
        " AND paper_code = $3 AND start_no <= $4 AND end_no >= $4 FOR UPDATE",
        unit_code,
        place_code,
        paper_code,
        n,
    )
    if stock_id is None:
        raise NotFound(
            f"paper {paper_code}/{paper_no} is not in the paper stock of issuing point "
            f"{place_code}; an offline bill is written on a blank the point received",
            field="paper_no",
        )
    status = await conn.fetchval(
        "SELECT status FROM paper_bills WHERE paper_code = $1 AND paper_no = $2",
        paper_code,
        paper_no,
    )
    if status is not None:
        raise FailedPrecondition(
            f"paper {paper_code}/{paper_no} is not blank (it is {status}); an offline bill "
            "is written on a blank sheet",
            field="paper_no",
        )
    return int(stock_id)


async def record_offline(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    bus_no: str,
    place_code: str,
    paper_code: str,
    paper_no: str,
    operator: str,
    request: bytes,
    ring: KeyRing,
) -> int:
    """Record a paper bill handed out offline on a blank of the point's paper stock,
    which it consumes. No e-bill number is taken. The request is stored sealed."""
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(
            "SELECT 1 FROM bills WHERE unit_code = $1 AND bus_no = $2", unit_code, bus_no
        ):
            raise AlreadyExists(
                f"bus_no {bus_no} already has an e-bill; no offline bill is needed",
                field="bill.bus_no",
            )
        if await conn.fetchval(
            "SELECT 1 FROM offline_bills WHERE paper_code = $1 AND paper_no = $2",
            paper_code,
            paper_no,
        ):
            raise AlreadyExists(
                f"paper bill {paper_code}/{paper_no} is already recorded offline", field="paper_no"
            )
        stock_id = await _take_blank(conn, unit_code, place_code, paper_code, paper_no)
        try:
            offline_id = int(
                await conn.fetchval(
                    "INSERT INTO offline_bills (unit_code, bus_no, place_code, paper_code,"
                    " paper_no, operator, request_sealed) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                    " RETURNING id",
                    unit_code,
                    bus_no,
                    place_code,
                    paper_code,
                    paper_no,
                    operator,
                    seal_offline(ring, unit_code, bus_no, request),
                )
            )
            await conn.execute(
                "INSERT INTO paper_bills (paper_code, paper_no, unit_code, place_code, stock_id,"
                " offline_id, status, prints, printed_at, operator)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, 1, now(), $8)",
                paper_code,
                paper_no,
                unit_code,
                place_code,
                stock_id,
                offline_id,
                PaperStatus.PRINTED,
                operator,
            )
        except asyncpg.UniqueViolationError as exc:
            field = "paper_no" if "paper" in (exc.constraint_name or "") else "bill.bus_no"
            what = (
                f"paper bill {paper_code}/{paper_no}" if field == "paper_no" else f"bus_no {bus_no}"
            )
            raise AlreadyExists(f"{what} is already recorded offline", field=field) from exc
        return offline_id


async def waiting_offline(pool: asyncpg.Pool, limit: int, ring: KeyRing) -> list[OfflineBill]:
    """Offline bills still without their e-bill and not quarantined, oldest first,
    their requests opened."""
    rows = await pool.fetch(
        "SELECT id, unit_code, bus_no, request_sealed FROM offline_bills"
        " WHERE bill_id IS NULL AND quarantined_at IS NULL ORDER BY id LIMIT $1",
        limit,
    )
    return [(r["id"], open_offline(ring, r)) for r in rows]


async def link_back_issued(pool: asyncpg.Pool, links: list[tuple[int, int]]) -> None:
    """Tie offline bills to their back-issued e-bills: (offline id, bill id).
    All or nothing: a link that cannot be made fails the call (the caller retries
    one by one to find it)."""
    if not links:
        return
    ids = [o for o, _ in links]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE offline_bills o SET bill_id = u.bill_id, back_issued_at = now()"
            " FROM unnest($1::bigint[], $2::bigint[]) AS u(id, bill_id) WHERE o.id = u.id",
            ids,
            [b for _, b in links],
        )
        await conn.execute(
            "UPDATE bills b SET paper_code = o.paper_code, paper_no = o.paper_no,"
            " converted_at = o.recorded_at"
            " FROM offline_bills o WHERE o.id = ANY($1::bigint[]) AND b.id = o.bill_id",
            ids,
        )
        # The paper handed out is the e-bill's paper bill: voided before a red-flush,
        # reprinted or reissued like any converted bill. Recorded since migration
        # 0008 it exists already and only gets its e-bill.
        await conn.execute(
            "UPDATE paper_bills p SET bill_id = o.bill_id FROM offline_bills o"
            " WHERE o.id = ANY($1::bigint[]) AND p.offline_id = o.id",
            ids,
        )
        # Recorded before: the sheet was never taken from stock. If it is blank it is
        # taken now; if something else was printed on it, the bills update above has
        # already failed on the unique paper index.
        await conn.execute(
            "INSERT INTO paper_bills (paper_code, paper_no, unit_code, place_code, bill_id,"
            " offline_id, status, prints, printed_at, operator)"
            " SELECT o.paper_code, o.paper_no, o.unit_code, o.place_code, o.bill_id, o.id, $2,"
            " 1, o.recorded_at, o.operator FROM offline_bills o WHERE o.id = ANY($1::bigint[])"
            " ON CONFLICT DO NOTHING",
            ids,
            PaperStatus.PRINTED,
        )
        mismatched = await conn.fetchval(
            "SELECT o.id FROM offline_bills o JOIN paper_bills p"
            " ON p.paper_code = o.paper_code AND p.paper_no = o.paper_no"
            " WHERE o.id = ANY($1::bigint[]) AND p.bill_id IS DISTINCT FROM o.bill_id LIMIT 1",
            ids,
        )
        if mismatched is not None:
            raise FailedPrecondition(
                f"offline bill {mismatched}: its paper bill belongs to another e-bill",
                field="paper_no",
            )


async def quarantine_offline(
    pool: asyncpg.Pool, offline_id: int, bill_id: int | None, reason: str
) -> None:
    """Set an offline bill aside: recovery skips it from now on."""
    await pool.execute(
        "UPDATE offline_bills SET quarantined_at = now(), quarantine_reason = $2,"
        " quarantine_bill_id = $3 WHERE id = $1 AND bill_id IS NULL",
        offline_id,
        reason[:500],
        bill_id,
    )


async def quarantined_offline(pool: asyncpg.Pool, limit: int = 100) -> list[QuarantinedOffline]:
    """Offline bills set aside by recovery and not yet resolved, oldest first."""
    rows = await pool.fetch(
        "SELECT id, unit_code, bus_no, paper_code, paper_no, quarantine_bill_id,"
        " quarantine_reason, quarantined_at FROM offline_bills"
        " WHERE quarantined_at IS NOT NULL AND bill_id IS NULL ORDER BY id LIMIT $1",
        limit,
    )
    return [
        QuarantinedOffline(
            offline_id=r["id"],
            unit_code=r["unit_code"],
            bus_no=r["bus_no"],
            paper_code=r["paper_code"],
            paper_no=r["paper_no"],
            bill_id=r["quarantine_bill_id"],
            reason=r["quarantine_reason"],
            quarantined_at=r["quarantined_at"],
        )
        for r in rows
    ]


async def quarantined_count(pool: asyncpg.Pool) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM offline_bills WHERE quarantined_at IS NOT NULL"
            " AND bill_id IS NULL"
        )
    )
