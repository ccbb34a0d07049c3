"""Stock of bill numbers: levels, movements, warnings, the stock identity.

Segments live at the unit's bill office (``place_code`` NULL) or at an issuing
point. Every movement carves a range out of a segment (``_carve``) and gives the
piece a new place or status, inside one transaction that holds the unit's
advisory lock (the same lock the reserve transaction takes), so movements and
issuance never interleave on one unit and the stock identity

    granted = issued + available + voided + returned

holds at every commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from engine.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from engine.model import CST
from engine.stock import compress_ranges
from storage.alerts import evaluate_alerts, usable_at
from storage.bills import UNIT_LOCK_SQL
from storage.lifecycle import day_bounds

__all__ = [
    "HELD",
    "Identity",
    "SegmentView",
    "add_segment_at",
    "application",
    "audit_figures",
    "auto_distribute",
    "confirm_opening",
    "create_application",
    "create_write_off",
    "decide_destruction",
    "decide_requisition",
    "decide_return",
    "delete_application",
    "distribute_count",
    "distribute_range",
    "ebill_figures",
    "enable_grant",
    "enter_opening",
    "identity",
    "list_applications",
    "mark_submitted",
    "paper_figures",
    "record_audit_report",
    "record_decisions",
    "record_submission",
    "request_destruction",
    "request_requisition",
    "request_return",
    "segments",
    "set_alert_rule",
    "set_auto_distribution",
    "set_segment_status",
    "stock_return",
    "submitted_applications",
    "update_application",
    "update_write_off",
    "void_stock",
    "write_off",
    "write_off_history",
]

# Unused numbers of segments in these statuses are still the unit's stock.
HELD = ("enabled", "disabled", "returning")


def _level(place_code: str | None) -> str:
    return f"issuing point {place_code}" if place_code else "the bill office"


def _rng(bill_code: str, start: int, end: int) -> str:
    return f"{bill_code} {start:010d}-{end:010d}"


@dataclass(frozen=True, slots=True)
class SegmentView:
    id: int
    place_code: str  # "" for the bill office
    bill_code: str
    start_no: int
    end_no: int
    next_no: int
    status: str
    grant_id: str
    received_at: datetime

    @property
    def remaining(self) -> int:
        return self.end_no - self.next_no + 1 if self.status in HELD else 0


@dataclass(frozen=True, slots=True)
class Identity:
    """The stock identity of one bill code of a unit, in numbers."""

    bill_code: str
    granted: int
    issued: int
    available: int
    voided: int
    returned: int
    # Numbers used before go-live, entered with the opening stock (no bill rows here).
    issued_before_go_live: int
    bills: int

    @property
    def balanced(self) -> bool:
        return self.granted == self.issued + self.available + self.voided + self.returned


async def _lock_unit(conn: asyncpg.Connection, unit_code: str) -> None:
    await conn.execute(UNIT_LOCK_SQL, unit_code)


async def _event(
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


async def _locate(
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
            f"{_rng(bill_code, start, end)} is not within one segment held by "
            f"{_level(place_code)} in status {'/'.join(statuses)}",
            field="start_no",
        )
    if start < row["next_no"]:
        raise FailedPrecondition(
            f"numbers of {_rng(bill_code, start, end)} below {row['next_no']:010d} are already "
            "on bills; only unused numbers move",
            field="start_no",
        )
    return row


async def _carve(
    conn: asyncpg.Connection,
    row: asyncpg.Record,
    start: int,
    end: int,
    *,
    status: str,
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
    source: str,
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
            f"{_rng(bill_code, start_no, end_no)} overlaps numbers already in stock",
            field="start_no",
        ) from exc


# -- grant applications (赋码申请) ---------------------------------------------


async def _bill_code_of_unit(conn: asyncpg.Connection, unit_code: str, bill_code: str) -> None:
    if not await conn.fetchval(
        "SELECT 1 FROM bill_codes WHERE unit_code = $1 AND bill_code = $2", unit_code, bill_code
    ):
        raise InvalidArgument(
            f"bill_code: unit {unit_code} issues nothing on bill code {bill_code}",
            field="bill_code",
        )


async def create_application(
    pool: asyncpg.Pool, *, unit_code: str, bill_code: str, count: int, reason: str, operator: str
) -> int:
    async with pool.acquire() as conn, conn.transaction():
        await _bill_code_of_unit(conn, unit_code, bill_code)
        return int(
            await conn.fetchval(
                "INSERT INTO grant_applications (unit_code, bill_code, count, reason, status,"
                " created_by) VALUES ($1, $2, $3, $4, 'draft', $5) RETURNING id",
                unit_code,
                bill_code,
                count,
                reason,
                operator,
            )
        )


async def _application(conn: asyncpg.Connection, unit_code: str, app_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT * FROM grant_applications WHERE id = $1 AND unit_code = $2 FOR UPDATE",
        app_id,
        unit_code,
    )
    if row is None:
        raise NotFound(f"no grant application {app_id} of unit {unit_code}", field="id")
    return row


def _must_be(row: asyncpg.Record, what: str, *statuses: str) -> None:
    if row["status"] not in statuses:
        raise FailedPrecondition(
            f"{what} {row['id']} is {row['status']}; this needs it {' or '.join(statuses)}"
        )


async def update_application(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    app_id: int,
    bill_code: str,
    count: int,
    reason: str,
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        row = await _application(conn, unit_code, app_id)
        _must_be(row, "grant application", "draft")
        await _bill_code_of_unit(conn, unit_code, bill_code)
        await conn.execute(
            "UPDATE grant_applications SET bill_code = $2, count = $3, reason = $4,"
            " updated_at = now() WHERE id = $1",
            app_id,
            bill_code,
            count,
            reason,
        )


async def delete_application(pool: asyncpg.Pool, *, unit_code: str, app_id: int) -> None:
    async with pool.acquire() as conn, conn.transaction():
        row = await _application(conn, unit_code, app_id)
        _must_be(row, "grant application", "draft")
        await conn.execute("DELETE FROM grant_applications WHERE id = $1", app_id)


async def application(pool: asyncpg.Pool, unit_code: str, app_id: int) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT * FROM grant_applications WHERE id = $1 AND unit_code = $2", app_id, unit_code
    )
    if row is None:
        raise NotFound(f"no grant application {app_id} of unit {unit_code}", field="id")
    return row


async def mark_submitted(pool: asyncpg.Pool, *, unit_code: str, app_id: int, ref: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        row = await _application(conn, unit_code, app_id)
        _must_be(row, "grant application", "draft", "submitted")
        await conn.execute(
            "UPDATE grant_applications SET status = 'submitted', fiscal_ref = $2,"
            " updated_at = now() WHERE id = $1",
            app_id,
            ref,
        )


async def submitted_applications(pool: asyncpg.Pool, unit_code: str) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT * FROM grant_applications WHERE unit_code = $1 AND status = 'submitted'"
            " ORDER BY id",
            unit_code,
        )
    )


async def record_decisions(
    pool: asyncpg.Pool, unit_code: str, decisions: Iterable[tuple[str, str, str, int, int, str]]
) -> None:
    """(fiscal_ref, status, grant_id, start, end, reason) from the platform."""
    async with pool.acquire() as conn, conn.transaction():
        for ref, status, grant_id, start, end, reason in decisions:
            if status not in ("granted", "rejected"):
                continue
            await conn.execute(
                "UPDATE grant_applications SET status = $3, grant_id = nullif($4, ''),"
                " start_no = $5, end_no = $6, reject_reason = $7, updated_at = now()"
                " WHERE unit_code = $1 AND fiscal_ref = $2 AND status = 'submitted'",
                unit_code,
                ref,
                status,
                grant_id,
                start if status == "granted" else None,
                end if status == "granted" else None,
                reason,
            )


async def list_applications(pool: asyncpg.Pool, unit_code: str) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT * FROM grant_applications WHERE unit_code = $1 ORDER BY id", unit_code
        )
    )


async def enable_grant(pool: asyncpg.Pool, *, unit_code: str, app_id: int, operator: str) -> int:
    """Put a granted segment into the bill office's stock; returns the segment id."""
    async with pool.acquire() as conn, conn.transaction():
        await _lock_unit(conn, unit_code)
        row = await _application(conn, unit_code, app_id)
        _must_be(row, "grant application", "granted")
        seg = await add_segment_at(
            conn,
            unit_code=unit_code,
            place_code=None,
            bill_code=row["bill_code"],
            start_no=row["start_no"],
            end_no=row["end_no"],
            next_no=row["start_no"],
            grant_id=row["grant_id"],
            source="application",
        )
        await conn.execute(
            "UPDATE grant_applications SET status = 'enabled', updated_at = now() WHERE id = $1",
            app_id,
        )
        await _event(
            conn, unit_code, None, row["bill_code"], "enable_grant", row["start_no"],
            row["end_no"], operator, {"application": app_id},
        )  # fmt: skip
        return seg


# -- opening stock (期初库存) ----------------------------------------------------


async def enter_opening(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    place_code: str | None,
    bill_code: str,
    start_no: int,
    end_no: int,
    next_no: int,
    operator: str,
) -> int:
    if not start_no <= next_no <= end_no + 1:
        raise InvalidArgument(
            "next_no: must lie within start_no .. end_no + 1 (the first unused number)",
            field="next_no",
        )
    async with pool.acquire() as conn, conn.transaction():
        await _bill_code_of_unit(conn, unit_code, bill_code)
        return int(
            await conn.fetchval(
                "INSERT INTO opening_stock (unit_code, place_code, bill_code, start_no, end_no,"
                " next_no, status, entered_by) VALUES ($1, $2, $3, $4, $5, $6, 'draft', $7)"
                " RETURNING id",
                unit_code,
                place_code,
                bill_code,
                start_no,
                end_no,
                next_no,
                operator,
            )
        )


async def confirm_opening(
    pool: asyncpg.Pool, *, unit_code: str, entry_id: int, operator: str
) -> int:
    """A second person confirms an opening entry; it then enters stock."""
    async with pool.acquire() as conn, conn.transaction():
        await _lock_unit(conn, unit_code)
        row = await conn.fetchrow(
            "SELECT * FROM opening_stock WHERE id = $1 AND unit_code = $2 FOR UPDATE",
            entry_id,
            unit_code,
        )
        if row is None:
            raise NotFound(f"no opening stock entry {entry_id}", field="id")
        _must_be(row, "opening stock entry", "draft")
        if row["entered_by"] == operator:
            raise FailedPrecondition(
                f"opening stock entry {entry_id} was entered by {operator}; another person "
                "confirms it",
                field="operator.operator",
            )
        seg = await add_segment_at(
            conn,
            unit_code=unit_code,
            place_code=row["place_code"],
            bill_code=row["bill_code"],
            start_no=row["start_no"],
            end_no=row["end_no"],
            next_no=row["next_no"],
            grant_id=f"opening-{entry_id}",
            source="opening",
        )
        await conn.execute(
            "UPDATE opening_stock SET status = 'confirmed', confirmed_by = $2 WHERE id = $1",
            entry_id,
            operator,
        )
        await _event(
            conn, unit_code, row["place_code"], row["bill_code"], "opening_stock",
            row["start_no"], row["end_no"], operator, {"entry": entry_id},
        )  # fmt: skip
        if row["place_code"]:
            await evaluate_alerts(conn, [(unit_code, row["place_code"], row["bill_code"])])
        return seg


# -- distribution and requisitions (分发 / 申领) -----------------------------------


async def _distribute(
    conn: asyncpg.Connection,
    unit_code: str,
    bill_code: str,
    count: int,
    to_place: str,
    operator: str,
    op: str,
) -> list[tuple[int, int]]:
    """Move ``count`` unused numbers from the bill office to an issuing point, oldest
    first. Returns the ranges moved. Lock held by the caller."""
    rows = await conn.fetch(
        "SELECT * FROM segments WHERE unit_code = $1 AND place_code IS NULL AND bill_code = $2"
        " AND status = 'enabled' AND next_no <= end_no ORDER BY start_no FOR UPDATE",
        unit_code,
        bill_code,
    )
    have = sum(r["end_no"] - r["next_no"] + 1 for r in rows)
    if have < count:
        raise ResourceExhausted(
            f"the bill office holds {have} unused numbers of {bill_code}, {count} asked",
            field="count",
        )
    moved: list[tuple[int, int]] = []
    left = count
    for r in rows:
        if not left:
            break
        start = r["next_no"]
        end = min(r["end_no"], start + left - 1)
        await _carve(conn, r, start, end, status="enabled", place_code=to_place)
        moved.append((start, end))
        left -= end - start + 1
    for start, end in moved:
        await _event(conn, unit_code, to_place, bill_code, op, start, end, operator)
    await evaluate_alerts(conn, [(unit_code, to_place, bill_code)])
    return moved


async def _point_exists(conn: asyncpg.Connection, unit_code: str, place_code: str) -> None:
    if not await conn.fetchval(
        "SELECT 1 FROM issuing_points WHERE unit_code = $1 AND place_code = $2",
        unit_code,
        place_code,
    ):
        raise NotFound(f"no issuing point {place_code} in unit {unit_code}", field="place_code")


async def distribute_count(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    bill_code: str,
    count: int,
    to_place: str,
    operator: str,
) -> list[tuple[int, int]]:
    async with pool.acquire() as conn, conn.transaction():
        await _point_exists(conn, unit_code, to_place)
        await _lock_unit(conn, unit_code)
        return await _distribute(
            conn, unit_code, bill_code, count, to_place, operator, "distribute"
        )


async def distribute_range(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    bill_code: str,
    start_no: int,
    end_no: int,
    to_place: str,
    operator: str,
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await _point_exists(conn, unit_code, to_place)
        await _lock_unit(conn, unit_code)
        row = await _locate(conn, unit_code, None, bill_code, start_no, end_no, ("enabled",))
        await _carve(conn, row, start_no, end_no, status="enabled", place_code=to_place)
        await _event(conn, unit_code, to_place, bill_code, "distribute", start_no, end_no, operator)
        await evaluate_alerts(conn, [(unit_code, to_place, bill_code)])


async def request_requisition(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    place_code: str,
    bill_code: str,
    count: int,
    operator: str,
    reason: str,
) -> int:
    async with pool.acquire() as conn, conn.transaction():
        await _point_exists(conn, unit_code, place_code)
        await _bill_code_of_unit(conn, unit_code, bill_code)
        return int(
            await conn.fetchval(
                "INSERT INTO requisitions (unit_code, place_code, bill_code, count, status,"
                " requested_by, reason) VALUES ($1, $2, $3, $4, 'pending', $5, $6) RETURNING id",
                unit_code,
                place_code,
                bill_code,
                count,
                operator,
                reason,
            )
        )


async def decide_requisition(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    req_id: int,
    approve: bool,
    operator: str,
    reason: str,
) -> tuple[str, list[tuple[int, int]]]:
    """Approve (the numbers are distributed at once) or reject a requisition;
    returns its bill code and the ranges moved."""
    async with pool.acquire() as conn, conn.transaction():
        await _lock_unit(conn, unit_code)
        row = await conn.fetchrow(
            "SELECT * FROM requisitions WHERE id = $1 AND unit_code = $2 FOR UPDATE",
            req_id,
            unit_code,
        )
        if row is None:
            raise NotFound(f"no requisition {req_id}", field="id")
        _must_be(row, "requisition", "pending")
        moved: list[tuple[int, int]] = []
        if approve:
            moved = await _distribute(
                conn, unit_code, row["bill_code"], row["count"], row["place_code"], operator,
                "requisition",
            )  # fmt: skip
        await conn.execute(
            "UPDATE requisitions SET status = $2, decided_by = $3, reason = $4,"
            " decided_at = now() WHERE id = $1",
            req_id,
            "approved" if approve else "rejected",
            operator,
            reason or row["reason"],
        )
        return row["bill_code"], moved


async def set_auto_distribution(
    pool: asyncpg.Pool, *, unit_code: str, place_code: str, bill_code: str, below: int, batch: int
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await _point_exists(conn, unit_code, place_code)
        if batch <= 0:
            await conn.execute(
                "DELETE FROM auto_distribution WHERE unit_code = $1 AND place_code = $2"
                " AND bill_code = $3",
                unit_code,
                place_code,
                bill_code,
            )
            return
        await conn.execute(
            "INSERT INTO auto_distribution VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (unit_code, place_code, bill_code)"
            " DO UPDATE SET below = excluded.below, batch = excluded.batch",
            unit_code,
            place_code,
            bill_code,
            below,
            batch,
        )


async def auto_distribute(pool: asyncpg.Pool) -> list[tuple[str, str, str, int]]:
    """Top up every issuing point that fell under its automatic-distribution level
    from the bill office; returns (unit, place, bill_code, numbers moved)."""
    done = []
    rules = await pool.fetch(
        "SELECT a.*, " + usable_at("a") + " AS available FROM auto_distribution a"
    )
    for r in rules:
        if r["available"] >= r["below"]:
            continue
        async with pool.acquire() as conn, conn.transaction():
            await _lock_unit(conn, r["unit_code"])
            office = await conn.fetchval(
                "SELECT coalesce(sum(end_no - next_no + 1), 0) FROM segments"
                " WHERE unit_code = $1 AND place_code IS NULL AND bill_code = $2"
                " AND status = 'enabled'",
                r["unit_code"],
                r["bill_code"],
            )
            count = min(int(r["batch"]), int(office))
            if count <= 0:
                continue
            await _distribute(
                conn, r["unit_code"], r["bill_code"], count, r["place_code"], "auto",
                "auto_distribute",
            )  # fmt: skip
            done.append((r["unit_code"], r["place_code"], r["bill_code"], count))
    return done


# -- query, enable/disable, void, returns ---------------------------------------


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
            start_no=r["start_no"],
            end_no=r["end_no"],
            next_no=r["next_no"],
            status=r["status"],
            grant_id=r["grant_id"],
            received_at=r["received_at"],
        )
        for r in rows
    ]


async def set_segment_status(
    pool: asyncpg.Pool, *, unit_code: str, segment_id: int, enabled: bool, operator: str
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await _lock_unit(conn, unit_code)
        row = await conn.fetchrow(
            "SELECT * FROM segments WHERE id = $1 AND unit_code = $2 FOR UPDATE",
            segment_id,
            unit_code,
        )
        if row is None:
            raise NotFound(f"no segment {segment_id} of unit {unit_code}", field="segment_id")
        _must_be(row, "segment", "enabled", "disabled")
        status = "enabled" if enabled else "disabled"
        await conn.execute("UPDATE segments SET status = $2 WHERE id = $1", segment_id, status)
        await _event(
            conn, unit_code, row["place_code"], row["bill_code"], status, row["start_no"],
            row["end_no"], operator,
        )  # fmt: skip
        if row["place_code"]:
            await evaluate_alerts(conn, [(unit_code, row["place_code"], row["bill_code"])])


async def _set_aside(
    conn: asyncpg.Connection,
    unit_code: str,
    place_code: str | None,
    bill_code: str,
    start_no: int,
    end_no: int,
    status: str,
    note: str,
) -> int:
    """Take unused numbers held at one level out of use (voided, returning)."""
    await _lock_unit(conn, unit_code)
    row = await _locate(
        conn, unit_code, place_code, bill_code, start_no, end_no, ("enabled", "disabled")
    )
    return await _carve(
        conn, row, start_no, end_no, status=status, place_code=place_code, note=note
    )


async def void_stock(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    place_code: str | None,
    bill_code: str,
    start_no: int,
    end_no: int,
    operator: str,
    reason: str,
) -> None:
    """Void unused numbers (作废): they leave stock and are declared in the write-off."""
    async with pool.acquire() as conn, conn.transaction():
        await _set_aside(conn, unit_code, place_code, bill_code, start_no, end_no, "voided", reason)
        await _event(
            conn, unit_code, place_code, bill_code, "void", start_no, end_no, operator,
            {"reason": reason},
        )  # fmt: skip
        if place_code:
            await evaluate_alerts(conn, [(unit_code, place_code, bill_code)])


async def request_return(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    place_code: str | None,
    bill_code: str,
    start_no: int,
    end_no: int,
    operator: str,
    reason: str,
) -> int:
    """Send unused numbers one level up; they are held as 'returning' until confirmed."""
    async with pool.acquire() as conn, conn.transaction():
        seg = await _set_aside(
            conn, unit_code, place_code, bill_code, start_no, end_no, "returning", reason
        )
        ret = int(
            await conn.fetchval(
                "INSERT INTO stock_returns (unit_code, place_code, bill_code, start_no, end_no,"
                " segment_id, status, reason, requested_by)"
                " VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8) RETURNING id",
                unit_code,
                place_code,
                bill_code,
                start_no,
                end_no,
                seg,
                reason,
                operator,
            )
        )
        await _event(
            conn, unit_code, place_code, bill_code, "return_requested", start_no, end_no,
            operator, {"return": ret},
        )  # fmt: skip
        if place_code:
            await evaluate_alerts(conn, [(unit_code, place_code, bill_code)])
        return ret


async def stock_return(pool: asyncpg.Pool, unit_code: str, ret_id: int) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT * FROM stock_returns WHERE id = $1 AND unit_code = $2", ret_id, unit_code
    )
    if row is None:
        raise NotFound(f"no stock return {ret_id}", field="id")
    return row


async def decide_return(
    pool: asyncpg.Pool, *, unit_code: str, ret_id: int, confirm: bool, operator: str
) -> None:
    """Confirm a return (an issuing point's numbers go back to the bill office; the
    office's, already accepted by the platform, are returned) or reject it (the
    numbers go back into the sender's stock)."""
    async with pool.acquire() as conn, conn.transaction():
        await _lock_unit(conn, unit_code)
        row = await conn.fetchrow(
            "SELECT * FROM stock_returns WHERE id = $1 AND unit_code = $2 FOR UPDATE",
            ret_id,
            unit_code,
        )
        if row is None:
            raise NotFound(f"no stock return {ret_id}", field="id")
        _must_be(row, "stock return", "pending")
        if not confirm:
            await conn.execute(
                "UPDATE segments SET status = 'enabled' WHERE id = $1", row["segment_id"]
            )
        elif row["place_code"] is None:
            await conn.execute(
                "UPDATE segments SET status = 'returned' WHERE id = $1", row["segment_id"]
            )
        else:
            await conn.execute(
                "UPDATE segments SET status = 'enabled', place_code = NULL, received_at = now()"
                " WHERE id = $1",
                row["segment_id"],
            )
        await conn.execute(
            "UPDATE stock_returns SET status = $2, decided_by = $3, decided_at = now()"
            " WHERE id = $1",
            ret_id,
            "confirmed" if confirm else "rejected",
            operator,
        )
        await _event(
            conn, unit_code, row["place_code"], row["bill_code"],
            "return_confirmed" if confirm else "return_rejected", row["start_no"], row["end_no"],
            operator, {"return": ret_id},
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


# -- low-stock warnings (库存预警) ------------------------------------------------


async def set_alert_rule(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    place_code: str,
    bill_code: str,
    threshold: int,
    email: str,
) -> None:
    """Warn when the issuing point's usable numbers of a bill code fall under
    ``threshold``. The rule starts armed only if stock is at or above it now: a
    warning marks the crossing, not the state."""
    async with pool.acquire() as conn, conn.transaction():
        await _point_exists(conn, unit_code, place_code)
        await _lock_unit(conn, unit_code)
        available = await _available(conn, unit_code, place_code, bill_code)
        await conn.execute(
            "INSERT INTO stock_alert_rules (unit_code, place_code, bill_code, threshold, email,"
            " below) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (unit_code, place_code, bill_code) DO UPDATE SET"
            " threshold = excluded.threshold, email = excluded.email, below = excluded.below",
            unit_code,
            place_code,
            bill_code,
            threshold,
            email,
            available < threshold,
        )


async def _available(
    conn: asyncpg.Connection, unit_code: str, place_code: str, bill_code: str
) -> int:
    return int(
        await conn.fetchval(
            "SELECT " + usable_at("k") + " FROM (VALUES ($1::text, $2::text, $3::char(8)))"
            " AS k(unit_code, place_code, bill_code)",
            unit_code,
            place_code,
            bill_code,
        )
    )


# -- destruction requests (销毁申请) ----------------------------------------------


async def request_destruction(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    paper_code: str,
    start_no: int,
    end_no: int,
    retention_days: int,
    operator: str,
    reason: str,
) -> int:
    """Ask to destroy paper bills (stubs and voided paper) past their retention period."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT paper_no, coalesce(voided_at, printed_at) AS last_at FROM paper_bills"
            " WHERE unit_code = $1 AND paper_code = $2 AND paper_no BETWEEN $3 AND $4"
            " ORDER BY paper_no",
            unit_code,
            paper_code,
            f"{start_no:010d}",
            f"{end_no:010d}",
        )
        have = {int(r["paper_no"]): r["last_at"] for r in rows}
        for n in range(start_no, end_no + 1):
            if n not in have:
                raise FailedPrecondition(
                    f"paper {paper_code}/{n:010d} was never used; blank paper is voided, not "
                    "destroyed here",
                    field="start_no",
                )
        cutoff = await conn.fetchval("SELECT now() - make_interval(days => $1)", retention_days)
        young = [n for n, at in have.items() if at > cutoff]
        if young:
            raise FailedPrecondition(
                f"paper {paper_code}/{min(young):010d} is within its retention period of "
                f"{retention_days} days",
                field="start_no",
            )
        if await conn.fetchval(
            "SELECT 1 FROM destruction_requests WHERE unit_code = $1 AND paper_code = $2"
            " AND status <> 'rejected' AND start_no <= $4 AND end_no >= $3",
            unit_code,
            paper_code,
            start_no,
            end_no,
        ):
            raise AlreadyExists(
                f"paper {paper_code} {start_no:010d}-{end_no:010d} overlaps another "
                "destruction request",
                field="start_no",
            )
        return int(
            await conn.fetchval(
                "INSERT INTO destruction_requests (unit_code, paper_code, start_no, end_no,"
                " papers, status, reason, requested_by)"
                " VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7) RETURNING id",
                unit_code,
                paper_code,
                start_no,
                end_no,
                len(have),
                reason,
                operator,
            )
        )


async def decide_destruction(
    pool: asyncpg.Pool, *, unit_code: str, req_id: int, approve: bool, operator: str
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT * FROM destruction_requests WHERE id = $1 AND unit_code = $2 FOR UPDATE",
            req_id,
            unit_code,
        )
        if row is None:
            raise NotFound(f"no destruction request {req_id}", field="id")
        _must_be(row, "destruction request", "pending")
        if row["requested_by"] == operator:
            raise FailedPrecondition(
                f"destruction request {req_id} was made by {operator}; another person decides",
                field="operator.operator",
            )
        await conn.execute(
            "UPDATE destruction_requests SET status = $2, decided_by = $3, decided_at = now()"
            " WHERE id = $1",
            req_id,
            "approved" if approve else "rejected",
            operator,
        )


# -- write-off declarations (核销) and audit reports ------------------------------


async def ebill_figures(
    conn: asyncpg.Connection | asyncpg.Pool,
    unit_code: str,
    bill_code: str,
    period_from: date,
    period_to: date,
) -> dict[str, Any]:
    lo, hi = day_bounds(period_from, period_to)
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE red_of IS NULL) AS issued_count,"
        " coalesce(sum(total_fen) FILTER (WHERE red_of IS NULL), 0) AS issued_fen,"
        " count(*) FILTER (WHERE red_of IS NOT NULL) AS red_count,"
        " coalesce(sum(total_fen) FILTER (WHERE red_of IS NOT NULL), 0) AS red_fen,"
        " count(*) FILTER (WHERE status NOT IN ('issued', 'red_flushed')) AS unfinished"
        " FROM bills WHERE unit_code = $1 AND bill_code = $2 AND origin = 'engine'"
        " AND issued_at >= $3 AND issued_at < $4",
        unit_code,
        bill_code,
        lo,
        hi,
    )
    assert row is not None
    flushed = await conn.fetchval(
        "SELECT count(*) FROM bills o JOIN bills r ON r.red_of = o.id"
        " WHERE r.unit_code = $1 AND r.bill_code = $2 AND r.issued_at >= $3 AND r.issued_at < $4",
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
    voided = [
        (int(r["start_no"]), int(r["end_no"]))
        for r in await conn.fetch(
            "SELECT start_no, end_no FROM stock_events WHERE unit_code = $1 AND bill_code = $2"
            " AND op = 'void' AND at >= $3 AND at < $4 ORDER BY start_no",
            unit_code,
            bill_code,
            lo,
            hi,
        )
    ]
    return {
        "issued_count": int(row["issued_count"]),
        "issued_fen": int(row["issued_fen"]),
        "red_count": int(row["red_count"]),
        "red_fen": int(row["red_fen"]),
        "red_flushed_count": int(flushed),
        "unfinished": int(row["unfinished"]),
        "used": compress_ranges(used),
        "voided": voided,
        "voided_count": sum(e - s + 1 for s, e in voided),
        "printed_count": 0,
    }


async def paper_figures(
    conn: asyncpg.Connection | asyncpg.Pool,
    unit_code: str,
    paper_code: str,
    period_from: date,
    period_to: date,
) -> dict[str, Any]:
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
    return {
        "issued_count": len(printed),
        "issued_fen": sum(int(r["total_fen"] or 0) for r in printed),
        "red_count": 0,
        "red_fen": 0,
        "red_flushed_count": 0,
        "unfinished": 0,
        "used": compress_ranges([int(r["paper_no"]) for r in printed]),
        "voided": compress_ranges([int(r["paper_no"]) for r in voided]),
        "voided_count": len(voided),
        "printed_count": len(printed),
    }


async def create_write_off(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    medium: str,
    code: str,
    period_from: date,
    period_to: date,
    operator: str,
) -> int:
    async with pool.acquire() as conn, conn.transaction():
        await _lock_unit(conn, unit_code)
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
                figures,
                operator,
            )
        )


async def _figures(
    conn: asyncpg.Connection, unit_code: str, medium: str, code: str, lo: date, hi: date
) -> dict[str, Any]:
    if medium == "ebill":
        return await ebill_figures(conn, unit_code, code, lo, hi)
    return await paper_figures(conn, unit_code, code, lo, hi)


async def _write_off(conn: asyncpg.Connection, unit_code: str, wo_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT * FROM write_offs WHERE id = $1 AND unit_code = $2 FOR UPDATE", wo_id, unit_code
    )
    if row is None:
        raise NotFound(f"no write-off declaration {wo_id}", field="id")
    return row


async def update_write_off(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    wo_id: int,
    lost: list[tuple[int, int]],
    remark: str,
    recompute: bool,
) -> None:
    """Fix a draft or a rejected declaration: lost numbers, remark, figures recomputed
    from the data as it is now. It becomes a draft again."""
    async with pool.acquire() as conn, conn.transaction():
        row = await _write_off(conn, unit_code, wo_id)
        _must_be(row, "write-off declaration", "draft", "rejected")
        table = "segments" if row["medium"] == "ebill" else "paper_stock"
        column = "bill_code" if row["medium"] == "ebill" else "paper_code"
        for i, (start, end) in enumerate(lost):
            # Only numbers the unit held can be lost.
            if not await conn.fetchval(
                f"SELECT 1 FROM {table} WHERE unit_code = $1 AND {column} = $2"
                " AND start_no <= $3 AND end_no >= $4",
                unit_code,
                row["code"],
                start,
                end,
            ):
                raise InvalidArgument(
                    f"lost[{i}]: {row['code']} {start:010d}-{end:010d} is not within one range "
                    "the unit holds",
                    field=f"lost[{i}]",
                )
        figures = row["figures"]
        if recompute:
            figures = await _figures(
                conn, unit_code, row["medium"], row["code"], row["period_from"], row["period_to"]
            )
        await conn.execute(
            "UPDATE write_offs SET figures = $2, lost = $3, remark = $4, status = 'draft',"
            " updated_at = now() WHERE id = $1",
            wo_id,
            figures,
            [list(r) for r in lost],
            remark,
        )


async def write_off(pool: asyncpg.Pool, unit_code: str, wo_id: int) -> asyncpg.Record:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT * FROM write_offs WHERE id = $1 AND unit_code = $2", wo_id, unit_code
        )
    if row is None:
        raise NotFound(f"no write-off declaration {wo_id}", field="id")
    return row


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
        _must_be(row, "write-off declaration", "draft")
        status = "accepted" if accepted else "rejected"
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
) -> list[tuple[asyncpg.Record, list[asyncpg.Record]]]:
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
    return [(r, subs[r["id"]]) for r in rows]


async def audit_figures(
    pool: asyncpg.Pool, unit_code: str, period_from: date, period_to: date
) -> list[dict[str, Any]]:
    """Per bill code: bills issued here in the period, their total, and how many are
    not yet archived (the issued-vs-archived difference)."""
    lo, hi = day_bounds(period_from, period_to)
    rows = await pool.fetch(
        "SELECT bill_code, count(*) AS n, coalesce(sum(total_fen), 0) AS fen,"
        " count(*) FILTER (WHERE archived_at IS NULL) AS unarchived"
        " FROM bills WHERE unit_code = $1 AND origin = 'engine'"
        " AND issued_at >= $2 AND issued_at < $3 GROUP BY 1 ORDER BY 1",
        unit_code,
        lo,
        hi,
    )
    return [
        {
            "bill_code": r["bill_code"],
            "count": int(r["n"]),
            "total_fen": int(r["fen"]),
            "unarchived": int(r["unarchived"]),
        }
        for r in rows
    ]


async def record_audit_report(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    period_from: date,
    period_to: date,
    figures: dict[str, Any],
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
            figures,
            fiscal_ref,
            operator,
        )
    )
