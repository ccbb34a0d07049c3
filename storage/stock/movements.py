"""Numbers moving inside the unit: distribution and requisitions (分发 / 申领),
automatic distribution, voiding unused numbers (作废) and returns one level up."""

from __future__ import annotations

import asyncpg

from engine.errors import FailedPrecondition, NotFound, ResourceExhausted
from engine.numbers import NumberRange
from engine.statuses import DecisionStatus, ReturnStatus, SegmentStatus
from storage.alerts import evaluate_alerts, usable_at
from storage.stock._common import (
    bill_code_of_unit,
    carve,
    event,
    locate,
    lock_unit,
    locked_row,
    must_be,
    point_exists,
)
from storage.stock.records import AutoDistributed, Moved, StockReturn

__all__ = [
    "auto_distribute",
    "decide_requisition",
    "decide_return",
    "distribute_count",
    "distribute_range",
    "request_requisition",
    "request_return",
    "second_person",
    "set_auto_distribution",
    "stock_return",
    "void_stock",
]


async def _distribute(
    conn: asyncpg.Connection,
    unit_code: str,
    bill_code: str,
    count: int,
    to_place: str,
    operator: str,
    op: str,
) -> list[NumberRange]:
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
    moved: list[NumberRange] = []
    left = count
    for r in rows:
        if not left:
            break
        start = r["next_no"]
        end = min(r["end_no"], start + left - 1)
        await carve(conn, r, start, end, status=SegmentStatus.ENABLED, place_code=to_place)
        moved.append(NumberRange.of(start, end))
        left -= end - start + 1
    for m in moved:
        await event(conn, unit_code, to_place, bill_code, op, m.start, m.end, operator)
    await evaluate_alerts(conn, [(unit_code, to_place, bill_code)])
    return moved


async def distribute_count(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    bill_code: str,
    count: int,
    to_place: str,
    operator: str,
) -> Moved:
    async with pool.acquire() as conn, conn.transaction():
        await point_exists(conn, unit_code, to_place)
        await lock_unit(conn, unit_code)
        moved = await _distribute(
            conn, unit_code, bill_code, count, to_place, operator, "distribute"
        )
        return Moved(bill_code, tuple(moved))


async def distribute_range(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    bill_code: str,
    numbers: NumberRange,
    to_place: str,
    operator: str,
) -> Moved:
    start_no, end_no = numbers.start, numbers.end
    async with pool.acquire() as conn, conn.transaction():
        await point_exists(conn, unit_code, to_place)
        await lock_unit(conn, unit_code)
        row = await locate(
            conn, unit_code, None, bill_code, start_no, end_no, (SegmentStatus.ENABLED,)
        )
        await carve(conn, row, start_no, end_no, status=SegmentStatus.ENABLED, place_code=to_place)
        await event(conn, unit_code, to_place, bill_code, "distribute", start_no, end_no, operator)
        await evaluate_alerts(conn, [(unit_code, to_place, bill_code)])
        return Moved(bill_code, (numbers,))


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
        await point_exists(conn, unit_code, place_code)
        await bill_code_of_unit(conn, unit_code, bill_code)
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


def second_person(row: asyncpg.Record, operator: str, what: str) -> None:
    """Two-person rule: who asked does not decide (the operator is the signed-in
    user, ebill.grpc.auth, so this compares authenticated people)."""
    if row["requested_by"] == operator:
        raise FailedPrecondition(
            f"{what} was made by {operator}; another person decides", field="operator.operator"
        )


async def decide_requisition(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    req_id: int,
    approve: bool,
    operator: str,
    reason: str,
) -> Moved:
    """Approve (the numbers are distributed at once) or reject a requisition;
    returns its bill code and the ranges moved."""
    async with pool.acquire() as conn, conn.transaction():
        await lock_unit(conn, unit_code)
        row = await locked_row(conn, "requisitions", req_id, unit_code, f"no requisition {req_id}")
        must_be(row, "requisition", DecisionStatus.PENDING)
        second_person(row, operator, f"requisition {req_id}")
        moved: list[NumberRange] = []
        if approve:
            moved = await _distribute(
                conn, unit_code, row["bill_code"], row["count"], row["place_code"], operator,
                "requisition",
            )  # fmt: skip
        await conn.execute(
            "UPDATE requisitions SET status = $2, decided_by = $3, reason = $4,"
            " decided_at = now() WHERE id = $1",
            req_id,
            DecisionStatus.APPROVED if approve else DecisionStatus.REJECTED,
            operator,
            reason or row["reason"],
        )
        return Moved(row["bill_code"], tuple(moved))


async def set_auto_distribution(
    pool: asyncpg.Pool, *, unit_code: str, place_code: str, bill_code: str, below: int, batch: int
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await point_exists(conn, unit_code, place_code)
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


async def auto_distribute(pool: asyncpg.Pool) -> list[AutoDistributed]:
    """Top up every issuing point that fell under its automatic-distribution level
    from the bill office; returns what was moved where."""
    done = []
    rules = await pool.fetch(
        "SELECT a.*, " + usable_at("a") + " AS available FROM auto_distribution a"
    )
    for r in rules:
        if r["available"] >= r["below"]:
            continue
        async with pool.acquire() as conn, conn.transaction():
            await lock_unit(conn, r["unit_code"])
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
            done.append(AutoDistributed(r["unit_code"], r["place_code"], r["bill_code"], count))
    return done


# -- void, returns ----------------------------------------------------------------


async def _set_aside(
    conn: asyncpg.Connection,
    unit_code: str,
    place_code: str | None,
    bill_code: str,
    start_no: int,
    end_no: int,
    status: SegmentStatus,
    note: str,
) -> int:
    """Take unused numbers held at one level out of use (voided, returning)."""
    await lock_unit(conn, unit_code)
    row = await locate(
        conn, unit_code, place_code, bill_code, start_no, end_no,
        (SegmentStatus.ENABLED, SegmentStatus.DISABLED),
    )  # fmt: skip
    return await carve(conn, row, start_no, end_no, status=status, place_code=place_code, note=note)


async def void_stock(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    place_code: str | None,
    bill_code: str,
    numbers: NumberRange,
    operator: str,
    reason: str,
) -> None:
    """Void unused numbers (作废): they leave stock and are declared in the write-off."""
    start_no, end_no = numbers.start, numbers.end
    async with pool.acquire() as conn, conn.transaction():
        await _set_aside(
            conn, unit_code, place_code, bill_code, start_no, end_no, SegmentStatus.VOIDED, reason
        )
        await event(
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
    numbers: NumberRange,
    operator: str,
    reason: str,
) -> int:
    """Send unused numbers one level up; they are held as 'returning' until confirmed."""
    start_no, end_no = numbers.start, numbers.end
    async with pool.acquire() as conn, conn.transaction():
        seg = await _set_aside(
            conn, unit_code, place_code, bill_code, start_no, end_no, SegmentStatus.RETURNING,
            reason,
        )  # fmt: skip
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
        await event(
            conn, unit_code, place_code, bill_code, "return_requested", start_no, end_no,
            operator, {"return": ret},
        )  # fmt: skip
        if place_code:
            await evaluate_alerts(conn, [(unit_code, place_code, bill_code)])
        return ret


async def stock_return(pool: asyncpg.Pool, unit_code: str, ret_id: int) -> StockReturn:
    row = await pool.fetchrow(
        "SELECT * FROM stock_returns WHERE id = $1 AND unit_code = $2", ret_id, unit_code
    )
    if row is None:
        raise NotFound(f"no stock return {ret_id}", field="id")
    return StockReturn.of(row)


async def decide_return(
    pool: asyncpg.Pool, *, unit_code: str, ret_id: int, confirm: bool, operator: str
) -> None:
    """Confirm a return (an issuing point's numbers go back to the bill office; the
    office's, already accepted by the platform, are returned) or reject it (the
    numbers go back into the sender's stock)."""
    async with pool.acquire() as conn, conn.transaction():
        await lock_unit(conn, unit_code)
        row = await locked_row(
            conn, "stock_returns", ret_id, unit_code, f"no stock return {ret_id}"
        )
        must_be(row, "stock return", ReturnStatus.PENDING)
        second_person(row, operator, f"stock return {ret_id}")
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
            ReturnStatus.CONFIRMED if confirm else ReturnStatus.REJECTED,
            operator,
        )
        await event(
            conn, unit_code, row["place_code"], row["bill_code"],
            "return_confirmed" if confirm else "return_rejected", row["start_no"], row["end_no"],
            operator, {"return": ret_id},
        )  # fmt: skip
        if row["place_code"]:
            await evaluate_alerts(conn, [(unit_code, row["place_code"], row["bill_code"])])
