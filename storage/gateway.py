"""What the vendor-compatible gateway keeps: asynchronous batches and their
refusals, the bill on a paper number, and one business day's bills for
reconciliation. Everything else it reads and writes through the same storage
modules as gRPC (bills, lifecycle, paper)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg

from engine.errors import AlreadyExists
from engine.lifecycle import BillKey
from engine.translog import LogEntry, content_digest
from storage.translog import append_entries

__all__ = [
    "BatchRecord",
    "DayBill",
    "bill_on_paper",
    "day_bills",
    "finish_batch",
    "load_batch",
    "record_batch",
]


@dataclass(frozen=True, slots=True)
class BatchRecord:
    unit_code: str
    batch_no: str
    bus_nos: tuple[str, ...]
    finished: bool
    # bus_no -> (code, message) of the bills refused
    failures: dict[str, tuple[str, str]]
    # bus_no -> bill_id of the bills issued
    issued: dict[str, int]


@dataclass(frozen=True, slots=True)
class DayBill:
    """One bill of a business day as reconciliation counts it."""

    bus_type: str
    place_code: str
    bill_code: str
    bill_no: int
    total_fen: int


async def record_batch(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    batch_no: str,
    app_id: str,
    method: str,
    bus_nos: Sequence[str],
) -> bool:
    """Record a batch; False when this batch number was recorded before with the
    same serials (a resent request), AlreadyExists when with others."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO gateway_batches (unit_code, batch_no, app_id, method, bus_nos)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING created_at",
            unit_code,
            batch_no,
            app_id,
            method,
            list(bus_nos),
        )
        if row is None:
            known = await conn.fetchval(
                "SELECT bus_nos FROM gateway_batches WHERE unit_code = $1 AND batch_no = $2",
                unit_code,
                batch_no,
            )
            if list(known) != list(bus_nos):
                raise AlreadyExists(
                    f"batchNo: batch {batch_no} was sent before with other bills",
                    field="batchNo",
                )
            return False
        await append_entries(
            conn,
            [
                LogEntry(
                    op="gateway.batch",
                    principal=f"app:{app_id}",
                    unit_code=unit_code,
                    ref=batch_no,
                    occurred_at=row["created_at"],
                    content_digest=content_digest({"method": method, "bus_nos": list(bus_nos)}),
                )
            ],
        )
        return True


async def finish_batch(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    batch_no: str,
    failures: Sequence[tuple[str, str, str]],
) -> None:
    """The refusals of a batch (bus_no, code, message), and the batch done."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            "INSERT INTO gateway_batch_failures (unit_code, batch_no, bus_no, code, message)"
            " VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (unit_code, batch_no, bus_no)"
            " DO UPDATE SET code = excluded.code, message = excluded.message",
            [(unit_code, batch_no, b, c, m) for b, c, m in failures],
        )
        await conn.execute(
            "UPDATE gateway_batches SET finished_at = $3 WHERE unit_code = $1 AND batch_no = $2",
            unit_code,
            batch_no,
            datetime.now(UTC),
        )


async def load_batch(pool: asyncpg.Pool, unit_code: str, batch_no: str) -> BatchRecord | None:
    row = await pool.fetchrow(
        "SELECT bus_nos, finished_at FROM gateway_batches WHERE unit_code = $1 AND batch_no = $2",
        unit_code,
        batch_no,
    )
    if row is None:
        return None
    failures = await pool.fetch(
        "SELECT bus_no, code, message FROM gateway_batch_failures"
        " WHERE unit_code = $1 AND batch_no = $2",
        unit_code,
        batch_no,
    )
    # Issued means numbered and signed: a bill still reserved (signer away) is
    # not generated yet, the vendor's 0.
    issued = await pool.fetch(
        "SELECT bus_no, id FROM bills WHERE unit_code = $1 AND bus_no = ANY($2::text[])"
        " AND status IN ('pending_countersign', 'issued', 'red_flushed')",
        unit_code,
        row["bus_nos"],
    )
    return BatchRecord(
        unit_code=unit_code,
        batch_no=batch_no,
        bus_nos=tuple(row["bus_nos"]),
        finished=row["finished_at"] is not None,
        failures={r["bus_no"]: (r["code"], r["message"]) for r in failures},
        issued={r["bus_no"]: int(r["id"]) for r in issued},
    )


async def bill_on_paper(
    pool: asyncpg.Pool, unit_code: str, paper_code: str, paper_no: str
) -> BillKey | None:
    """The e-bill printed on this paper number of the unit, if any."""
    row = await pool.fetchrow(
        "SELECT b.bill_code, b.bill_no FROM paper_bills p JOIN bills b ON b.id = p.bill_id"
        " WHERE p.unit_code = $1 AND p.paper_code = $2 AND p.paper_no = $3",
        unit_code,
        paper_code,
        paper_no,
    )
    return None if row is None else BillKey.number(row["bill_code"], row["bill_no"].strip())


async def day_bills(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    day: date,
    red: bool,
    place_code: str = "",
    bus_type: str = "",
) -> list[DayBill]:
    """The unit's bills of one business day (their bus_time's date, local time):
    the bills issued (``red`` False; red bills excluded, bills red-flushed since
    included: they were issued), or the red bills (``red`` True). Bills the
    platform refused for good are not counted. Ordered for cutting into runs."""
    sql = (
        "SELECT bus_type, place_code, bill_code, bill_no, total_fen FROM bills"
        " WHERE unit_code = $1 AND bus_time::date = $2"
        " AND status IN ('pending_countersign', 'issued', 'red_flushed')"
        + (" AND red_of IS NOT NULL" if red else " AND red_of IS NULL")
    )
    args: list[object] = [unit_code, day]
    if place_code:
        args.append(place_code)
        sql += f" AND place_code = ${len(args)}"
    if bus_type:
        args.append(bus_type)
        sql += f" AND bus_type = ${len(args)}"
    rows = await pool.fetch(sql + " ORDER BY bus_type, place_code, bill_code, bill_no", *args)
    return [
        DayBill(r["bus_type"], r["place_code"], r["bill_code"], int(r["bill_no"]), r["total_fen"])
        for r in rows
    ]
