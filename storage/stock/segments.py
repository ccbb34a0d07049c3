"""Segments as they stand: the query, enabling and disabling, and the stock
identity granted = issued + available + voided + returned."""

from __future__ import annotations

from typing import Any

import asyncpg

from engine.numbers import BillNo
from engine.statuses import SegmentStatus
from storage.alerts import evaluate_alerts
from storage.stock._common import HELD, event, lock_unit, locked_row, must_be
from storage.stock.records import Identity, SegmentView

__all__ = ["identity", "segments", "set_segment_status"]


async def segments(
    pool: asyncpg.Pool, unit_code: str, *, place_code: str | None = None, office: bool = False
) -> list[SegmentView]:
    """Segments of a unit: all, one issuing point's, or the bill office's."""
    sql = "SELECT * FROM segments WHERE unit_code = $1"
    args: list[Any] = [unit_code]
    if office:
        sql += " AND place_code IS NULL"
    elif place_code:
        sql += " AND place_code = $2"
        args.append(place_code)
    rows = await pool.fetch(sql + " ORDER BY bill_code, start_no", *args)
    return [
        SegmentView(
            id=r["id"],
            place_code=r["place_code"] or "",
            bill_code=r["bill_code"],
            start_no=BillNo(r["start_no"]),
            end_no=BillNo(r["end_no"]),
            next_no=r["next_no"],
            status=SegmentStatus(r["status"]),
            grant_id=r["grant_id"],
            received_at=r["received_at"],
        )
        for r in rows
    ]


async def set_segment_status(
    pool: asyncpg.Pool, *, unit_code: str, segment_id: int, enabled: bool, operator: str
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await lock_unit(conn, unit_code)
        row = await locked_row(
            conn,
            "segments",
            segment_id,
            unit_code,
            f"no segment {segment_id} of unit {unit_code}",
            field="segment_id",
        )
        must_be(row, "segment", SegmentStatus.ENABLED, SegmentStatus.DISABLED)
        status = SegmentStatus.ENABLED if enabled else SegmentStatus.DISABLED
        await conn.execute("UPDATE segments SET status = $2 WHERE id = $1", segment_id, status)
        await event(
            conn, unit_code, row["place_code"], row["bill_code"], status, row["start_no"],
            row["end_no"], operator,
        )  # fmt: skip
        if row["place_code"]:
            await evaluate_alerts(conn, [(unit_code, row["place_code"], row["bill_code"])])


async def identity(pool: asyncpg.Pool, unit_code: str) -> list[Identity]:
    """granted = issued + available + voided + returned, per bill code of the unit."""
    rows = await pool.fetch(
        "WITH g AS (SELECT bill_code, sum(end_no - start_no + 1) AS granted FROM segment_grants"
        "   WHERE unit_code = $1 GROUP BY 1),"
        " s AS (SELECT bill_code, sum(next_no - start_no) AS issued,"
        "   coalesce(sum(end_no - next_no + 1) FILTER (WHERE status = ANY($2::text[])), 0)"
        "     AS available,"
        "   coalesce(sum(end_no - start_no + 1) FILTER (WHERE status = 'voided'), 0) AS voided,"
        "   coalesce(sum(end_no - start_no + 1) FILTER (WHERE status = 'returned'), 0)"
        "     AS returned"
        "   FROM segments WHERE unit_code = $1 GROUP BY 1),"
        " o AS (SELECT bill_code, sum(next_no - start_no) AS before FROM opening_stock"
        "   WHERE unit_code = $1 AND status = 'confirmed' GROUP BY 1),"
        " b AS (SELECT bill_code, count(*) AS bills FROM bills"
        "   WHERE unit_code = $1 AND segment_id IS NOT NULL GROUP BY 1)"
        " SELECT g.bill_code, g.granted, coalesce(s.issued, 0) AS issued,"
        " coalesce(s.available, 0) AS available, coalesce(s.voided, 0) AS voided,"
        " coalesce(s.returned, 0) AS returned, coalesce(o.before, 0) AS before,"
        " coalesce(b.bills, 0) AS bills"
        " FROM g LEFT JOIN s USING (bill_code) LEFT JOIN o USING (bill_code)"
        " LEFT JOIN b USING (bill_code) ORDER BY g.bill_code",
        unit_code,
        list(HELD),
    )
    return [
        Identity(
            bill_code=r["bill_code"],
            granted=int(r["granted"]),
            issued=int(r["issued"]),
            available=int(r["available"]),
            voided=int(r["voided"]),
            returned=int(r["returned"]),
            issued_before_go_live=int(r["before"]),
            bills=int(r["bills"]),
        )
        for r in rows
    ]
