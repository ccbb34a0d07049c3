"""What every stock capability shares: the unit lock, the event log, the one
locked-row lookup, and cutting a range out of a segment.

Segments live at the unit's bill office (``place_code`` NULL) or at an issuing
point. Every movement carves a range out of a segment (:func:`carve`) and gives
the piece a new place or status, inside one transaction that holds the unit's
advisory lock (the same lock the reserve transaction takes), so movements and
issuance never interleave on one unit and the stock identity

    granted = issued + available + voided + returned

holds at every commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import asyncpg

from engine.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from engine.model import CST
from engine.numbers import BillNo
from engine.statuses import GrantSource, SegmentStatus
from storage.bills import UNIT_LOCK_SQL

__all__ = [
    "HELD",
    "add_segment_at",
    "bill_code_of_unit",
    "carve",
    "event",
    "level",
    "locate",
    "lock_unit",
    "locked_row",
    "must_be",
    "point_exists",
    "rng",
]

# Unused numbers of segments in these statuses are still the unit's stock.
HELD = (SegmentStatus.ENABLED, SegmentStatus.DISABLED, SegmentStatus.RETURNING)

# The tables whose rows are decided on one at a time, by id within a unit.
LockedTable = Literal[
    "destruction_requests",
    "grant_applications",
    "opening_stock",
    "requisitions",
    "segments",
    "stock_returns",
    "write_offs",
]


def level(place_code: str | None) -> str:
    return f"issuing point {place_code}" if place_code else "the bill office"


def rng(bill_code: str, start: int, end: int) -> str:
    return f"{bill_code} {BillNo(start)}-{BillNo(end)}"


async def lock_unit(conn: asyncpg.Connection, unit_code: str) -> None:
    await conn.execute(UNIT_LOCK_SQL, unit_code)


async def locked_row(
    conn: asyncpg.Connection,
    table: LockedTable,
    row_id: int,
    unit_code: str,
    missing: str,
    field: str = "id",
) -> asyncpg.Record:
    """The row ``row_id`` of the unit, locked FOR UPDATE, or NotFound(``missing``).

    A row of another unit is as absent as one that never was."""
    row = await conn.fetchrow(
        f"SELECT * FROM {table} WHERE id = $1 AND unit_code = $2 FOR UPDATE", row_id, unit_code
    )
    if row is None:
        raise NotFound(missing, field=field)
    return row


def must_be(row: asyncpg.Record, what: str, *statuses: str) -> None:
    if row["status"] not in statuses:
        raise FailedPrecondition(
            f"{what} {row['id']} is {row['status']}; this needs it {' or '.join(statuses)}"
        )


async def bill_code_of_unit(conn: asyncpg.Connection, unit_code: str, bill_code: str) -> None:
    if not await conn.fetchval(
        "SELECT 1 FROM bill_codes WHERE unit_code = $1 AND bill_code = $2", unit_code, bill_code
    ):
        raise InvalidArgument(
            f"bill_code: unit {unit_code} issues nothing on bill code {bill_code}",
            field="bill_code",
        )


async def point_exists(conn: asyncpg.Connection, unit_code: str, place_code: str) -> None:
    if not await conn.fetchval(
        "SELECT 1 FROM issuing_points WHERE unit_code = $1 AND place_code = $2",
        unit_code,
        place_code,
    ):
        raise NotFound(f"no issuing point {place_code} in unit {unit_code}", field="place_code")


async def event(
    conn: asyncpg.Connection,
    unit_code: str,
    place_code: str | None,
    bill_code: str | None,
    op: str,
    start: int | None,
    end: int | None,
    operator: str,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO stock_events (unit_code, place_code, bill_code, op, start_no, end_no,"
        " operator, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        unit_code,
        place_code,
        bill_code,
        op,
        start,
        end,
        operator,
        detail or {},
    )


async def locate(
    conn: asyncpg.Connection,
    unit_code: str,
    place_code: str | None,
    bill_code: str,
    start: int,
    end: int,
    statuses: Sequence[str],
) -> asyncpg.Record:
    """The segment at this level holding [start, end] unused, locked."""
    row = await conn.fetchrow(
        "SELECT * FROM segments WHERE unit_code = $1 AND place_code IS NOT DISTINCT FROM $2"
        " AND bill_code = $3 AND start_no <= $4 AND end_no >= $5 AND status = ANY($6::text[])"
        " FOR UPDATE",
        unit_code,
        place_code,
        bill_code,
        start,
        end,
        list(statuses),
    )
    if row is None:
        raise NotFound(
            f"{rng(bill_code, start, end)} is not within one segment held by "
            f"{level(place_code)} in status {'/'.join(statuses)}",
            field="start_no",
        )
    if start < row["next_no"]:
        raise FailedPrecondition(
            f"numbers of {rng(bill_code, start, end)} below {BillNo(row['next_no'])} are already "
            "on bills; only unused numbers move",
            field="start_no",
        )
    return row


async def carve(
    conn: asyncpg.Connection,
    row: asyncpg.Record,
    start: int,
    end: int,
    *,
    status: SegmentStatus,
    place_code: str | None,
    note: str = "",
) -> int:
    """Give the unused numbers [start, end] of segment ``row`` (locked) a new status
    and place; the rest of the segment keeps its own. Returns the piece's id."""
    s, e = row["start_no"], row["end_no"]
    assert s <= start <= end <= e and start >= row["next_no"]
    moved = place_code != row["place_code"]
    if start == s:
        # The whole head moves: the row itself becomes the piece.
        await conn.execute(
            "UPDATE segments SET end_no = $2, status = $3, place_code = $4, note = $5,"
            " received_at = CASE WHEN $6 THEN now() ELSE received_at END WHERE id = $1",
            row["id"],
            end,
            status,
            place_code,
            note,
            moved,
        )
        piece = int(row["id"])
    else:
        await conn.execute("UPDATE segments SET end_no = $2 WHERE id = $1", row["id"], start - 1)
        piece = await _insert(
            conn, row, start, end, status=status, place_code=place_code, note=note, fresh=moved
        )
    if end < e:
        await _insert(
            conn,
            row,
            end + 1,
            e,
            status=row["status"],
            place_code=row["place_code"],
            note=row["note"],
            fresh=False,
        )
    return piece


async def _insert(
    conn: asyncpg.Connection,
    row: asyncpg.Record,
    start: int,
    end: int,
    *,
    status: str,
    place_code: str | None,
    note: str,
    fresh: bool,
) -> int:
    return int(
        await conn.fetchval(
            "INSERT INTO segments (unit_code, bill_code, place_code, start_no, end_no, next_no,"
            " status, grant_id, granted_at, received_at, note)"
            " VALUES ($1, $2, $3, $4, $5, $4, $6, $7, $8, $9, $10) RETURNING id",
            row["unit_code"],
            row["bill_code"],
            place_code,
            start,
            end,
            status,
            row["grant_id"],
            row["granted_at"],
            datetime.now(CST) if fresh else row["received_at"],
            note,
        )
    )


async def add_segment_at(
    conn: asyncpg.Connection,
    *,
    unit_code: str,
    place_code: str | None,
    bill_code: str,
    start_no: int,
    end_no: int,
    next_no: int,
    grant_id: str,
    source: GrantSource,
) -> int:
    """Record what the platform granted and put it into stock at one level."""
    try:
        await conn.execute(
            "INSERT INTO segment_grants (grant_id, unit_code, bill_code, start_no, end_no, source)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            grant_id,
            unit_code,
            bill_code,
            start_no,
            end_no,
            source,
        )
        return int(
            await conn.fetchval(
                "INSERT INTO segments (unit_code, place_code, bill_code, start_no, end_no,"
                " next_no, grant_id) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                unit_code,
                place_code,
                bill_code,
                start_no,
                end_no,
                next_no,
                grant_id,
            )
        )
    except (asyncpg.ExclusionViolationError, asyncpg.UniqueViolationError) as exc:
        raise AlreadyExists(
            f"{rng(bill_code, start_no, end_no)} overlaps numbers already in stock",
            field="start_no",
        ) from exc
