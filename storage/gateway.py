"""What the vendor-compatible gateway keeps: asynchronous batches and their
refusals, the bill on a paper number, and one business day's bills for
reconciliation. Everything else it reads and writes through the same storage
modules as gRPC (bills, lifecycle, paper)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

import asyncpg

from engine.errors import AlreadyExists
from engine.lifecycle import BillKey
from engine.model import CST, IssuedBill
from engine.sealing import KeyRing
from engine.translog import LogEntry, content_digest
from storage.bill_rows import BILL_SELECT, row_to_bill
from storage.personal import CARD, ID_CARD
from storage.translog import append_entries

__all__ = [
    "BatchRecord",
    "DayBill",
    "Listed",
    "PageQuery",
    "bill_on_paper",
    "bill_page",
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
    by_issue: bool = False,
) -> list[DayBill]:
    """The unit's bills of one business day (their bus_time's date, local time;
    with ``by_issue`` their issue date, China time): the bills issued (``red``
    False; red bills excluded, bills red-flushed since included: they were
    issued), or the red bills (``red`` True). Bills the platform refused for
    good are not counted. Ordered for cutting into runs."""
    start = datetime.combine(day, datetime.min.time(), CST)
    args: list[object] = [unit_code]
    if by_issue:
        args += [start, start + timedelta(days=1)]
        day_cond = "issued_at >= $2 AND issued_at < $3"
    else:
        args.append(day)
        day_cond = "bus_time::date = $2"
    sql = (
        "SELECT bus_type, place_code, bill_code, bill_no, total_fen FROM bills"
        f" WHERE unit_code = $1 AND {day_cond} AND status IN {_SHOWN}"
        + (" AND red_of IS NOT NULL" if red else " AND red_of IS NULL")
    )
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


# Bills that exist for the HIS: signed by the unit at least, not refused for good.
_SHOWN = "('pending_countersign', 'issued', 'red_flushed')"


class Listed(StrEnum):
    """Which bills a vendor listing wants."""

    ALL = "all"
    NORMAL = "normal"  # e-bills that are not red bills (dataType 1)
    RED = "red"  # red bills (dataType 2)
    PRINTED = "printed"  # converted to paper, the paper in use (dataType 3, getEBillPrintList)
    UNPRINTED = "unprinted"  # neither converted to paper nor cancelled (getEBillUnPrintList)


@dataclass(frozen=True, slots=True)
class PageQuery:
    """One page of a unit's bills between two instants: of business time (the
    HIS's busDateTime, local time) or, with ``by_issue``, of issue time."""

    unit_code: str
    start: datetime  # naive local time (bus_time) or aware (issued_at), inclusive
    end: datetime  # inclusive, as the vendor's ranges are
    by_issue: bool = False
    listed: Listed = Listed.ALL
    place_code: str = ""
    bus_type: str = ""
    card_no: str = ""
    id_card_no: str = ""
    limit: int = 200
    offset: int = 0


async def bill_page(
    pool: asyncpg.Pool, q: PageQuery, ring: KeyRing
) -> tuple[int, list[IssuedBill]]:
    """How many bills match, and the page asked for (oldest first, by id), each
    with its request opened and without canonical bytes."""
    where = ["b.unit_code = $1", f"b.status IN {_SHOWN}"]
    args: list[Any] = [q.unit_code]

    def add(cond: str, *values: Any) -> None:
        for v in values:
            args.append(v)
            cond = cond.replace("?", f"${len(args)}", 1)
        where.append(cond)

    if q.by_issue:
        add("b.issued_at >= ? AND b.issued_at <= ?", q.start, q.end)
    else:
        # The day bound lets the (unit_code, bus_time::date) index narrow it.
        add("b.bus_time::date BETWEEN ? AND ?", q.start.date(), q.end.date())
        add("b.bus_time >= ? AND b.bus_time <= ?", q.start, q.end)
    if q.place_code:
        add("b.place_code = ?", q.place_code)
    if q.bus_type:
        add("b.bus_type = ?", q.bus_type)
    for value, column, purpose in (
        (q.card_no, "payer_card_hash", CARD),
        (q.id_card_no, "payer_id_card_hash", ID_CARD),
    ):
        if value:
            # A value that cannot be a card (nothing to digest) matches nothing.
            add(f"b.{column} = ?", ring.index(value, purpose) or b"")
    if q.listed is Listed.NORMAL:
        where.append("b.red_of IS NULL")
    elif q.listed is Listed.RED:
        where.append("b.red_of IS NOT NULL")
    elif q.listed is Listed.PRINTED:
        where.append("b.red_of IS NULL AND p.status = 'printed'")
    elif q.listed is Listed.UNPRINTED:
        where.append(
            "b.red_of IS NULL AND b.status <> 'red_flushed' AND coalesce(p.status, 'none') = 'none'"
        )
    cond = " WHERE " + " AND ".join(where)
    total = await pool.fetchval(
        "SELECT count(*) FROM bills b"
        " LEFT JOIN paper_bills p ON p.paper_code = b.paper_code AND p.paper_no = b.paper_no"
        + cond,
        *args,
    )
    n = len(args)
    rows = await pool.fetch(
        BILL_SELECT + cond + f" ORDER BY b.id LIMIT ${n + 1} OFFSET ${n + 2}",
        *args,
        q.limit,
        q.offset,
    )
    return int(total), [row_to_bill(r, ring, with_canonical=False) for r in rows]
