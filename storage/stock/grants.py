"""Numbers coming into the unit: grant applications (赋码申请) to the fiscal
platform, and the opening stock (期初库存) held when the system went live."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from engine.errors import FailedPrecondition, InvalidArgument, NotFound
from engine.statuses import ApplicationStatus, GrantSource, OpeningStatus
from storage.alerts import evaluate_alerts
from storage.stock._common import (
    add_segment_at,
    bill_code_of_unit,
    event,
    lock_unit,
    locked_row,
    must_be,
)
from storage.stock.records import GrantApplication, GrantDecision

__all__ = [
    "application",
    "confirm_opening",
    "create_application",
    "delete_application",
    "enable_grant",
    "enter_opening",
    "list_applications",
    "mark_submitted",
    "record_decisions",
    "submitted_applications",
    "update_application",
]

_DRAFT = ApplicationStatus.DRAFT


async def create_application(
    pool: asyncpg.Pool, *, unit_code: str, bill_code: str, count: int, reason: str, operator: str
) -> int:
    async with pool.acquire() as conn, conn.transaction():
        await bill_code_of_unit(conn, unit_code, bill_code)
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
    return await locked_row(
        conn,
        "grant_applications",
        app_id,
        unit_code,
        f"no grant application {app_id} of unit {unit_code}",
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
        must_be(row, "grant application", _DRAFT)
        await bill_code_of_unit(conn, unit_code, bill_code)
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
        must_be(row, "grant application", _DRAFT)
        await conn.execute("DELETE FROM grant_applications WHERE id = $1", app_id)


async def application(pool: asyncpg.Pool, unit_code: str, app_id: int) -> GrantApplication:
    row = await pool.fetchrow(
        "SELECT * FROM grant_applications WHERE id = $1 AND unit_code = $2", app_id, unit_code
    )
    if row is None:
        raise NotFound(f"no grant application {app_id} of unit {unit_code}", field="id")
    return GrantApplication.of(row)


async def mark_submitted(pool: asyncpg.Pool, *, unit_code: str, app_id: int, ref: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        row = await _application(conn, unit_code, app_id)
        must_be(row, "grant application", _DRAFT, ApplicationStatus.SUBMITTED)
        await conn.execute(
            "UPDATE grant_applications SET status = 'submitted', fiscal_ref = $2,"
            " updated_at = now() WHERE id = $1",
            app_id,
            ref,
        )


async def submitted_applications(pool: asyncpg.Pool, unit_code: str) -> list[GrantApplication]:
    rows = await pool.fetch(
        "SELECT * FROM grant_applications WHERE unit_code = $1 AND status = 'submitted'"
        " ORDER BY id",
        unit_code,
    )
    return [GrantApplication.of(r) for r in rows]


async def record_decisions(
    pool: asyncpg.Pool, unit_code: str, decisions: Iterable[GrantDecision]
) -> None:
    """Record the platform's decisions; ones still pending are left alone."""
    async with pool.acquire() as conn, conn.transaction():
        for d in decisions:
            if d.status not in (ApplicationStatus.GRANTED, ApplicationStatus.REJECTED):
                continue
            start: int | None = None
            end: int | None = None
            if d.status == ApplicationStatus.GRANTED:
                # A grant without numbers is stored as 0-0, as it always was.
                start, end = (int(d.numbers.start), int(d.numbers.end)) if d.numbers else (0, 0)
            await conn.execute(
                "UPDATE grant_applications SET status = $3, grant_id = nullif($4, ''),"
                " start_no = $5, end_no = $6, reject_reason = $7, updated_at = now()"
                " WHERE unit_code = $1 AND fiscal_ref = $2 AND status = 'submitted'",
                unit_code,
                d.fiscal_ref,
                d.status,
                d.grant_id,
                start,
                end,
                d.reason,
            )


async def list_applications(pool: asyncpg.Pool, unit_code: str) -> list[GrantApplication]:
    rows = await pool.fetch(
        "SELECT * FROM grant_applications WHERE unit_code = $1 ORDER BY id", unit_code
    )
    return [GrantApplication.of(r) for r in rows]


async def enable_grant(pool: asyncpg.Pool, *, unit_code: str, app_id: int, operator: str) -> int:
    """Put a granted segment into the bill office's stock; returns the segment id."""
    async with pool.acquire() as conn, conn.transaction():
        await lock_unit(conn, unit_code)
        row = await _application(conn, unit_code, app_id)
        must_be(row, "grant application", ApplicationStatus.GRANTED)
        seg = await add_segment_at(
            conn,
            unit_code=unit_code,
            place_code=None,
            bill_code=row["bill_code"],
            start_no=row["start_no"],
            end_no=row["end_no"],
            next_no=row["start_no"],
            grant_id=row["grant_id"],
            source=GrantSource.APPLICATION,
        )
        await conn.execute(
            "UPDATE grant_applications SET status = 'enabled', updated_at = now() WHERE id = $1",
            app_id,
        )
        await event(
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
        await bill_code_of_unit(conn, unit_code, bill_code)
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
        await lock_unit(conn, unit_code)
        row = await locked_row(
            conn, "opening_stock", entry_id, unit_code, f"no opening stock entry {entry_id}"
        )
        must_be(row, "opening stock entry", OpeningStatus.DRAFT)
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
            source=GrantSource.OPENING,
        )
        await conn.execute(
            "UPDATE opening_stock SET status = 'confirmed', confirmed_by = $2 WHERE id = $1",
            entry_id,
            operator,
        )
        await event(
            conn, unit_code, row["place_code"], row["bill_code"], "opening_stock",
            row["start_no"], row["end_no"], operator, {"entry": entry_id},
        )  # fmt: skip
        if row["place_code"]:
            await evaluate_alerts(conn, [(unit_code, row["place_code"], row["bill_code"])])
        return seg
