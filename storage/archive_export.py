"""Reads and the one write behind the console's archive (issue #16 item 4): a
period's archived bills in pages, and the bills of the period issued but not
archived (the issued-versus-archived difference), with their retry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg

from engine.model import BillStatus, IssuedBill
from engine.sealing import KeyRing
from engine.translog import LogEntry, content_digest
from storage.bill_rows import BILL_SELECT, row_to_bill
from storage.lifecycle import day_bounds
from storage.translog import append_entries

__all__ = ["Unarchived", "archived_page", "retry_unarchived", "unarchived"]

# Bills that exist for a holder and are archived: countersigned by the platform.
_ARCHIVED = (BillStatus.ISSUED.value, BillStatus.RED_FLUSHED.value)


@dataclass(frozen=True, slots=True)
class Unarchived:
    """A bill of the period issued (a number reserved for it) but not archived."""

    bill_id: int
    place_code: str
    bill_code: str
    bill_no: str
    bus_no: str
    status: BillStatus
    issued_at: datetime
    attempts: int  # recovery attempts so far (0: not in the outbox)
    last_error: str
    next_attempt_at: datetime | None


async def archived_page(
    pool: asyncpg.Pool,
    unit_code: str,
    first: date,
    last: date,
    ring: KeyRing,
    *,
    place_code: str = "",
    after_id: int = 0,
    limit: int = 200,
) -> list[IssuedBill]:
    """Archived bills issued on CST days ``first`` .. ``last`` (of one point, or
    the unit with ``place_code`` ""), by id after ``after_id``, with their
    canonical bytes opened: the archive is written a page at a time."""
    start, end = day_bounds(first, last)
    rows = await pool.fetch(
        BILL_SELECT + " WHERE b.unit_code = $1 AND b.issued_at >= $2 AND b.issued_at < $3"
        " AND ($4 = '' OR b.place_code = $4) AND b.id > $5"
        " AND b.status = ANY($6::text[]) AND b.archived_at IS NOT NULL"
        " ORDER BY b.id LIMIT $7",
        unit_code, start, end, place_code, after_id, list(_ARCHIVED), limit,
    )  # fmt: skip
    return [row_to_bill(r, ring, with_request=False) for r in rows]


async def unarchived(
    pool: asyncpg.Pool, unit_code: str, first: date, last: date, *, place_code: str = ""
) -> list[Unarchived]:
    """Bills issued in the period that the archive does not hold: still waiting
    for the unit's or the platform's signature (reserved, pending countersign)
    or, though finished, without an archive time. Refused bills are not issued."""
    start, end = day_bounds(first, last)
    rows = await pool.fetch(
        "SELECT b.id, b.place_code, b.bill_code, b.bill_no, b.bus_no, b.status, b.issued_at,"
        " coalesce(o.attempts, 0) AS attempts, coalesce(o.last_error, '') AS last_error,"
        " o.next_attempt_at"
        " FROM bills b LEFT JOIN outbox o ON o.bill_id = b.id"
        " WHERE b.unit_code = $1 AND b.issued_at >= $2 AND b.issued_at < $3"
        " AND ($4 = '' OR b.place_code = $4) AND b.status <> $5"
        " AND (b.archived_at IS NULL OR b.status <> ALL($6::text[]))"
        " ORDER BY b.id",
        unit_code, start, end, place_code, BillStatus.REJECTED.value, list(_ARCHIVED),
    )  # fmt: skip
    return [
        Unarchived(
            bill_id=r["id"], place_code=r["place_code"], bill_code=r["bill_code"],
            bill_no=r["bill_no"], bus_no=r["bus_no"], status=BillStatus(r["status"]),
            issued_at=r["issued_at"], attempts=int(r["attempts"]), last_error=r["last_error"],
            next_attempt_at=r["next_attempt_at"],
        )
        for r in rows
    ]  # fmt: skip


async def retry_unarchived(
    pool: asyncpg.Pool, unit_code: str, bill_ids: list[int], *, operator: str
) -> int:
    """Make the recovery loop take these bills at its next pass (their next
    attempt now, not after the back-off); returns how many were due for it.
    Logged in the transparency log like every change."""
    async with pool.acquire() as conn, conn.transaction():
        moved = await conn.fetch(
            "UPDATE outbox o SET next_attempt_at = now() FROM bills b"
            " WHERE o.bill_id = b.id AND b.unit_code = $1 AND b.id = ANY($2::bigint[])"
            " RETURNING b.id, b.bill_code, b.bill_no",
            unit_code,
            bill_ids,
        )
        now = datetime.now(UTC)
        await append_entries(
            conn,
            [
                LogEntry(
                    op="archive.retry",
                    principal=operator,
                    unit_code=unit_code,
                    ref=f"{r['bill_code']}/{r['bill_no']}",
                    occurred_at=now,
                    content_digest=content_digest({"bill_id": r["id"]}),
                    bill_id=r["id"],
                )
                for r in moved
            ],
        )
    return len(moved)
