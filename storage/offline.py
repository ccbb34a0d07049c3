"""Offline bills: paper first, e-bill later."""

from __future__ import annotations

import asyncpg

from engine.errors import AlreadyExists
from engine.statuses import PaperStatus

__all__ = ["OfflineBill", "link_back_issued", "record_offline", "waiting_offline"]

OfflineBill = tuple[int, bytes]  # (offline id, serialised BillRequest)


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
) -> int:
    """Record a paper bill handed out offline. No e-bill number is taken."""
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(
            "SELECT 1 FROM bills WHERE unit_code = $1 AND bus_no = $2", unit_code, bus_no
        ):
            raise AlreadyExists(
                f"bus_no {bus_no} already has an e-bill; no offline bill is needed",
                field="bill.bus_no",
            )
        try:
            return int(
                await conn.fetchval(
                    "INSERT INTO offline_bills (unit_code, bus_no, place_code, paper_code,"
                    " paper_no, operator, request) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                    " RETURNING id",
                    unit_code,
                    bus_no,
                    place_code,
                    paper_code,
                    paper_no,
                    operator,
                    request,
                )
            )
        except asyncpg.UniqueViolationError as exc:
            field = "paper_no" if "paper" in (exc.constraint_name or "") else "bill.bus_no"
            what = (
                f"paper bill {paper_code}/{paper_no}" if field == "paper_no" else f"bus_no {bus_no}"
            )
            raise AlreadyExists(f"{what} is already recorded offline", field=field) from exc


async def waiting_offline(pool: asyncpg.Pool, limit: int) -> list[OfflineBill]:
    """Offline bills still without their e-bill, oldest first."""
    rows = await pool.fetch(
        "SELECT id, request FROM offline_bills WHERE bill_id IS NULL ORDER BY id LIMIT $1", limit
    )
    return [(r["id"], bytes(r["request"])) for r in rows]


async def link_back_issued(pool: asyncpg.Pool, links: list[tuple[int, int]]) -> None:
    """Tie offline bills to their back-issued e-bills: (offline id, bill id)."""
    if not links:
        return
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE offline_bills o SET bill_id = u.bill_id, back_issued_at = now()"
            " FROM unnest($1::bigint[], $2::bigint[]) AS u(id, bill_id) WHERE o.id = u.id",
            [o for o, _ in links],
            [b for _, b in links],
        )
        await conn.execute(
            "UPDATE bills b SET paper_code = o.paper_code, paper_no = o.paper_no,"
            " converted_at = o.recorded_at"
            " FROM offline_bills o WHERE o.id = ANY($1::bigint[]) AND b.id = o.bill_id",
            [o for o, _ in links],
        )
        # The paper handed out is the e-bill's paper bill: voided before a red-flush,
        # reprinted or reissued like any converted bill.
        await conn.execute(
            "INSERT INTO paper_bills (paper_code, paper_no, unit_code, place_code, bill_id,"
            " status, prints, printed_at, operator)"
            " SELECT o.paper_code, o.paper_no, o.unit_code, o.place_code, o.bill_id, $2,"
            " 1, o.recorded_at, o.operator FROM offline_bills o WHERE o.id = ANY($1::bigint[])"
            " ON CONFLICT DO NOTHING",
            [o for o, _ in links],
            PaperStatus.PRINTED,
        )
