"""Destruction requests (销毁申请): used paper past its retention period, asked to
be destroyed by one person and decided by another."""

from __future__ import annotations

import asyncpg

from engine.errors import AlreadyExists, FailedPrecondition
from engine.numbers import BillNo, NumberRange
from engine.statuses import DecisionStatus
from storage.stock._common import locked_row, must_be

__all__ = ["decide_destruction", "request_destruction"]


async def request_destruction(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    paper_code: str,
    numbers: NumberRange,
    retention_days: int,
    operator: str,
    reason: str,
) -> int:
    """Ask to destroy paper bills (stubs and voided paper) past their retention period."""
    start_no, end_no = numbers.start, numbers.end
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT paper_no, coalesce(voided_at, printed_at) AS last_at FROM paper_bills"
            " WHERE unit_code = $1 AND paper_code = $2 AND paper_no BETWEEN $3 AND $4"
            " ORDER BY paper_no",
            unit_code,
            paper_code,
            str(start_no),
            str(end_no),
        )
        have = {int(r["paper_no"]): r["last_at"] for r in rows}
        for n in range(start_no, end_no + 1):
            if n not in have:
                raise FailedPrecondition(
                    f"paper {paper_code}/{BillNo(n)} was never used; blank paper is voided, not "
                    "destroyed here",
                    field="start_no",
                )
        cutoff = await conn.fetchval("SELECT now() - make_interval(days => $1)", retention_days)
        young = [n for n, at in have.items() if at > cutoff]
        if young:
            raise FailedPrecondition(
                f"paper {paper_code}/{BillNo(min(young))} is within its retention period of "
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
                f"paper {paper_code} {numbers} overlaps another destruction request",
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
        row = await locked_row(
            conn, "destruction_requests", req_id, unit_code, f"no destruction request {req_id}"
        )
        must_be(row, "destruction request", DecisionStatus.PENDING)
        if row["requested_by"] == operator:
            raise FailedPrecondition(
                f"destruction request {req_id} was made by {operator}; another person decides",
                field="operator.operator",
            )
        await conn.execute(
            "UPDATE destruction_requests SET status = $2, decided_by = $3, decided_at = now()"
            " WHERE id = $1",
            req_id,
            DecisionStatus.APPROVED if approve else DecisionStatus.REJECTED,
            operator,
        )
