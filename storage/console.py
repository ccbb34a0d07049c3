"""The few reads the finance console needs that no other use case makes: the
unit's issuing points for pickers, and the requisitions waiting for a decision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from storage.lifecycle import day_bounds

__all__ = [
    "AlertRule",
    "PendingRequisition",
    "alert_rules",
    "archived_count",
    "issuing_points",
    "pending_requisitions",
]


@dataclass(frozen=True, slots=True)
class PendingRequisition:
    id: int
    place_code: str
    bill_code: str
    count: int
    requested_by: str
    reason: str
    created_at: datetime


async def issuing_points(pool: asyncpg.Pool, unit_code: str) -> list[tuple[str, str]]:
    """(code, name) of every issuing point of the unit."""
    rows = await pool.fetch(
        "SELECT place_code, name FROM issuing_points WHERE unit_code = $1 ORDER BY 1",
        unit_code,
    )
    return [(r["place_code"], r["name"]) for r in rows]


async def pending_requisitions(
    pool: asyncpg.Pool, unit_code: str, *, place_code: str = ""
) -> list[PendingRequisition]:
    rows = await pool.fetch(
        "SELECT id, place_code, bill_code, count, requested_by, reason, created_at"
        " FROM requisitions WHERE unit_code = $1 AND status = 'pending'"
        " AND ($2 = '' OR place_code = $2) ORDER BY id",
        unit_code,
        place_code,
    )
    return [
        PendingRequisition(
            id=r["id"], place_code=r["place_code"], bill_code=r["bill_code"],
            count=int(r["count"]), requested_by=r["requested_by"], reason=r["reason"],
            created_at=r["created_at"],
        )
        for r in rows
    ]  # fmt: skip


async def archived_count(
    pool: asyncpg.Pool, unit_code: str, first: date, last: date, place_code: str
) -> int:
    """Bills of the period the archive holds (what the archive ZIP contains)."""
    start, end = day_bounds(first, last)
    n = await pool.fetchval(
        "SELECT count(*) FROM bills WHERE unit_code = $1 AND issued_at >= $2"
        " AND issued_at < $3 AND ($4 = '' OR place_code = $4)"
        " AND status IN ('issued', 'red_flushed') AND archived_at IS NOT NULL",
        unit_code, start, end, place_code,
    )  # fmt: skip
    return int(n)


@dataclass(frozen=True, slots=True)
class AlertRule:
    place_code: str
    bill_code: str
    threshold: int
    email: str
    below: bool  # stock is under the threshold now (warned once at the crossing)


async def alert_rules(pool: asyncpg.Pool, unit_code: str, place_code: str = "") -> list[AlertRule]:
    """The unit's stock alert rules (of one point, or all with ``place_code`` "")."""
    rows = await pool.fetch(
        "SELECT place_code, bill_code, threshold, email, below FROM stock_alert_rules"
        " WHERE unit_code = $1 AND ($2 = '' OR place_code = $2) ORDER BY 1, 2",
        unit_code,
        place_code,
    )
    return [
        AlertRule(r["place_code"], r["bill_code"], int(r["threshold"]), r["email"], r["below"])
        for r in rows
    ]
