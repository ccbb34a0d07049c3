"""Write-off declarations (核销) and audit reports (审验): the figures of a period
computed from the data, declarations edited and their submissions recorded."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import asyncpg

from engine.errors import FailedPrecondition, InvalidArgument, NotFound
from engine.numbers import NumberRange
from engine.statuses import Medium, SubmissionOutcome, WriteOffStatus
from engine.stock import compress_ranges
from storage.lifecycle import day_bounds
from storage.stock._common import lock_unit, locked_row, must_be
from storage.stock.records import AuditFigure, WriteOff, WriteOffFigures

__all__ = [
    "audit_figures",
    "create_write_off",
    "ebill_figures",
    "paper_figures",
    "record_audit_report",
    "record_submission",
    "update_write_off",
    "write_off",
    "write_off_history",
]


def _runs(numbers: Sequence[int]) -> tuple[NumberRange, ...]:
    return tuple(NumberRange.of(s, e) for s, e in compress_ranges(numbers))


async def ebill_figures(
    conn: asyncpg.Connection | asyncpg.Pool,
    unit_code: str,
    bill_code: str,
    period_from: date,
    period_to: date,
) -> WriteOffFigures:
    lo, hi = day_bounds(period_from, period_to)
    row = await conn.fetchrow(
        # A red bill the platform refused ('rejected', migration 0006) cancelled
        # nothing and is final: not a red bill to declare, and not unfinished.
        "SELECT count(*) FILTER (WHERE red_of IS NULL) AS issued_count,"
        " coalesce(sum(total_fen) FILTER (WHERE red_of IS NULL), 0) AS issued_fen,"
        " count(*) FILTER (WHERE red_of IS NOT NULL) AS red_count,"
        " coalesce(sum(total_fen) FILTER (WHERE red_of IS NOT NULL), 0) AS red_fen,"
        " count(*) FILTER (WHERE status NOT IN ('issued', 'red_flushed')) AS unfinished"
        " FROM bills WHERE unit_code = $1 AND bill_code = $2 AND origin = 'engine'"
        " AND status <> 'rejected' AND issued_at >= $3 AND issued_at < $4",
        unit_code,
        bill_code,
        lo,
        hi,
    )
    assert row is not None
    flushed = await conn.fetchval(
        "SELECT count(*) FROM bills o JOIN bills r ON r.red_of = o.id"
        " WHERE r.unit_code = $1 AND r.bill_code = $2 AND r.status <> 'rejected'"
        " AND r.issued_at >= $3 AND r.issued_at < $4",
        unit_code,
        bill_code,
        lo,
        hi,
    )
    used = [
        int(r[0])
        for r in await conn.fetch(
            "SELECT bill_no FROM bills WHERE unit_code = $1 AND bill_code = $2"
            " AND origin = 'engine' AND issued_at >= $3 AND issued_at < $4 ORDER BY bill_no",
            unit_code,
            bill_code,
            lo,
            hi,
        )
    ]
    voided = tuple(
        NumberRange.of(r["start_no"], r["end_no"])
        for r in await conn.fetch(
            "SELECT start_no, end_no FROM stock_events WHERE unit_code = $1 AND bill_code = $2"
            " AND op = 'void' AND at >= $3 AND at < $4 ORDER BY start_no",
            unit_code,
            bill_code,
            lo,
            hi,
        )
    )
    return WriteOffFigures(
        issued_count=int(row["issued_count"]),
        issued_fen=int(row["issued_fen"]),
        red_count=int(row["red_count"]),
        red_fen=int(row["red_fen"]),
        red_flushed_count=int(flushed),
        unfinished=int(row["unfinished"]),
        used=_runs(used),
        voided=voided,
        voided_count=sum(v.count for v in voided),
        printed_count=0,
    )


async def paper_figures(
    conn: asyncpg.Connection | asyncpg.Pool,
    unit_code: str,
    paper_code: str,
    period_from: date,
    period_to: date,
) -> WriteOffFigures:
    lo, hi = day_bounds(period_from, period_to)
    printed = await conn.fetch(
        "SELECT p.paper_no, b.total_fen FROM paper_bills p LEFT JOIN bills b ON b.id = p.bill_id"
        " WHERE p.unit_code = $1 AND p.paper_code = $2 AND p.status = 'printed'"
        " AND p.printed_at >= $3 AND p.printed_at < $4 ORDER BY p.paper_no",
        unit_code,
        paper_code,
        lo,
        hi,
    )
    voided = await conn.fetch(
        "SELECT paper_no FROM paper_bills WHERE unit_code = $1 AND paper_code = $2"
        " AND status = 'voided' AND voided_at >= $3 AND voided_at < $4 ORDER BY paper_no",
        unit_code,
        paper_code,
        lo,
        hi,
    )
    return WriteOffFigures(
        issued_count=len(printed),
        issued_fen=sum(int(r["total_fen"] or 0) for r in printed),
        red_count=0,
        red_fen=0,
        red_flushed_count=0,
        unfinished=0,
        used=_runs([int(r["paper_no"]) for r in printed]),
        voided=_runs([int(r["paper_no"]) for r in voided]),
        voided_count=len(voided),
        printed_count=len(printed),
    )


async def create_write_off(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    medium: Medium,
    code: str,
    period_from: date,
    period_to: date,
    operator: str,
) -> int:
    async with pool.acquire() as conn, conn.transaction():
        await lock_unit(conn, unit_code)
        clash = await conn.fetchval(
            "SELECT id FROM write_offs WHERE unit_code = $1 AND medium = $2 AND code = $3"
            " AND status IN ('submitted', 'accepted') AND period_from <= $5"
            " AND period_to >= $4",
            unit_code,
            medium,
            code,
            period_from,
            period_to,
        )
        if clash:
            raise FailedPrecondition(
                f"write-off {clash} already declares part of this period for {medium} {code}",
                field="period_from",
            )
        figures = await _figures(conn, unit_code, medium, code, period_from, period_to)
        return int(
            await conn.fetchval(
                "INSERT INTO write_offs (unit_code, medium, code, period_from, period_to, status,"
                " figures, created_by) VALUES ($1, $2, $3, $4, $5, 'draft', $6, $7) RETURNING id",
                unit_code,
                medium,
                code,
                period_from,
                period_to,
                figures.to_json(),
                operator,
            )
        )


async def _figures(
    conn: asyncpg.Connection, unit_code: str, medium: str, code: str, lo: date, hi: date
) -> WriteOffFigures:
    if medium == Medium.EBILL:
        return await ebill_figures(conn, unit_code, code, lo, hi)
    return await paper_figures(conn, unit_code, code, lo, hi)


async def _write_off(conn: asyncpg.Connection, unit_code: str, wo_id: int) -> asyncpg.Record:
    return await locked_row(
        conn, "write_offs", wo_id, unit_code, f"no write-off declaration {wo_id}"
    )


async def update_write_off(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    wo_id: int,
    lost: Sequence[NumberRange],
    remark: str,
    recompute: bool,
) -> None:
    """Fix a draft or a rejected declaration: lost numbers, remark, figures recomputed
    from the data as it is now. It becomes a draft again."""
    async with pool.acquire() as conn, conn.transaction():
        row = await _write_off(conn, unit_code, wo_id)
        must_be(row, "write-off declaration", WriteOffStatus.DRAFT, WriteOffStatus.REJECTED)
        table = "segments" if row["medium"] == Medium.EBILL else "paper_stock"
        column = "bill_code" if row["medium"] == Medium.EBILL else "paper_code"
        for i, r in enumerate(lost):
            # Only numbers the unit held can be lost.
            if not await conn.fetchval(
                f"SELECT 1 FROM {table} WHERE unit_code = $1 AND {column} = $2"
                " AND start_no <= $3 AND end_no >= $4",
                unit_code,
                row["code"],
                r.start,
                r.end,
            ):
                raise InvalidArgument(
                    f"lost[{i}]: {row['code']} {r} is not within one range the unit holds",
                    field=f"lost[{i}]",
                )
        figures: dict[str, Any] = row["figures"]
        if recompute:
            fresh = await _figures(
                conn, unit_code, row["medium"], row["code"], row["period_from"], row["period_to"]
            )
            figures = fresh.to_json()
        await conn.execute(
            "UPDATE write_offs SET figures = $2, lost = $3, remark = $4, status = 'draft',"
            " updated_at = now() WHERE id = $1",
            wo_id,
            figures,
            [[int(r.start), int(r.end)] for r in lost],
            remark,
        )


async def write_off(pool: asyncpg.Pool, unit_code: str, wo_id: int) -> WriteOff:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT * FROM write_offs WHERE id = $1 AND unit_code = $2", wo_id, unit_code
        )
    if row is None:
        raise NotFound(f"no write-off declaration {wo_id}", field="id")
    return WriteOff.of(row)


async def record_submission(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    wo_id: int,
    accepted: bool,
    reason: str,
    fiscal_ref: str,
    operator: str,
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        row = await _write_off(conn, unit_code, wo_id)
        must_be(row, "write-off declaration", WriteOffStatus.DRAFT)
        status = SubmissionOutcome.ACCEPTED if accepted else SubmissionOutcome.REJECTED
        await conn.execute(
            "UPDATE write_offs SET status = $2, reject_reason = $3, fiscal_ref = $4,"
            " updated_at = now() WHERE id = $1",
            wo_id,
            status,
            reason,
            fiscal_ref,
        )
        await conn.execute(
            "INSERT INTO write_off_submissions (write_off_id, figures, lost, outcome, reason,"
            " submitted_by) VALUES ($1, $2, $3, $4, $5, $6)",
            wo_id,
            row["figures"],
            row["lost"],
            status,
            reason,
            operator,
        )


async def write_off_history(
    pool: asyncpg.Pool, unit_code: str, wo_id: int | None = None
) -> list[WriteOff]:
    """Declarations of the unit (or the one ``wo_id``), each with its submissions."""
    rows = await pool.fetch(
        "SELECT * FROM write_offs WHERE unit_code = $1 AND ($2::bigint IS NULL OR id = $2)"
        " ORDER BY id",
        unit_code,
        wo_id,
    )
    subs: dict[int, list[asyncpg.Record]] = {r["id"]: [] for r in rows}
    for sub in await pool.fetch(
        "SELECT * FROM write_off_submissions WHERE write_off_id = ANY($1::bigint[]) ORDER BY id",
        list(subs),
    ):
        subs[sub["write_off_id"]].append(sub)
    return [WriteOff.of(r, subs[r["id"]]) for r in rows]


async def audit_figures(
    pool: asyncpg.Pool, unit_code: str, period_from: date, period_to: date
) -> list[AuditFigure]:
    """Per bill code: bills issued here in the period, their total, and how many are
    not yet archived (the issued-vs-archived difference). Red bills the platform
    refused are not counted: they are on no platform record and cancel nothing."""
    lo, hi = day_bounds(period_from, period_to)
    rows = await pool.fetch(
        "SELECT bill_code, count(*) AS n, coalesce(sum(total_fen), 0) AS fen,"
        " count(*) FILTER (WHERE archived_at IS NULL) AS unarchived"
        " FROM bills WHERE unit_code = $1 AND origin = 'engine' AND status <> 'rejected'"
        " AND issued_at >= $2 AND issued_at < $3 GROUP BY 1 ORDER BY 1",
        unit_code,
        lo,
        hi,
    )
    return [
        AuditFigure(
            bill_code=r["bill_code"],
            count=int(r["n"]),
            total_fen=int(r["fen"]),
            unarchived=int(r["unarchived"]),
        )
        for r in rows
    ]


async def record_audit_report(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    period_from: date,
    period_to: date,
    lines: Sequence[AuditFigure],
    fiscal_ref: str,
    operator: str,
) -> int:
    return int(
        await pool.fetchval(
            "INSERT INTO audit_reports (unit_code, period_from, period_to, figures, fiscal_ref,"
            " reported_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            unit_code,
            period_from,
            period_to,
            {"lines": [x.to_json() for x in lines]},
            fiscal_ref,
            operator,
        )
    )
