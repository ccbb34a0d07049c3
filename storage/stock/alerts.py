"""Low-stock warning rules (库存预警) and the warnings as read and mailed.

Firing lives in storage.alerts, beside the reserve transaction that calls it;
this module sets the rules and reads and marks what fired.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg

from storage.alerts import usable_at
from storage.stock._common import lock_unit, point_exists
from storage.stock.records import Alert

__all__ = ["claim_alert_email", "list_alerts", "mark_alert_emailed", "set_alert_rule"]


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
        await point_exists(conn, unit_code, place_code)
        await lock_unit(conn, unit_code)
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


async def list_alerts(
    pool: asyncpg.Pool, unit_code: str, place_code: str = "", *, mark_read: bool = False
) -> list[Alert]:
    """In-system warnings, newest first; ``mark_read`` marks the ones returned read
    (the records show them as they were before: unread)."""
    sql = "SELECT * FROM stock_alerts WHERE unit_code = $1"
    args: list[Any] = [unit_code]
    if place_code:
        sql += " AND place_code = $2"
        args.append(place_code)
    rows = list(await pool.fetch(sql + " ORDER BY id DESC LIMIT 500", *args))
    if mark_read and rows:
        await pool.execute(
            "UPDATE stock_alerts SET read_at = now() WHERE id = ANY($1::bigint[])"
            " AND read_at IS NULL",
            [r["id"] for r in rows],
        )
    return [Alert.of(r) for r in rows]


async def claim_alert_email(
    pool: asyncpg.Pool, owner: str, lease: timedelta
) -> tuple[Alert, bool] | None:
    """Claim the oldest warning due for email for ``owner`` until ``lease`` from now;
    None when none is due. The flag says whether it was claimed before by someone
    whose claim lapsed (that sender may have died after the mail went out).

    SKIP LOCKED: engines claiming at the same moment take different warnings, and
    a claim is a committed row, so it outlives this call; the lease lets another
    engine take the warning over only when the claimant is gone or far too slow.
    """
    row = await pool.fetchrow(
        "WITH due AS ("
        "  SELECT id, claimed_by <> '' AND claimed_until IS NOT NULL AS reclaimed"
        "  FROM stock_alerts"
        "  WHERE emailed_at IS NULL AND email <> '' AND attempts < 10"
        "  AND (claimed_until IS NULL OR claimed_until < now())"
        "  ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " UPDATE stock_alerts a SET claimed_by = $1, claimed_until = now() + $2::interval"
        " FROM due WHERE a.id = due.id RETURNING a.*, due.reclaimed",
        owner,
        lease,
    )
    if row is None:
        return None
    return Alert.of(row), bool(row["reclaimed"])


async def mark_alert_emailed(pool: asyncpg.Pool, alert_id: int, error: str = "") -> None:
    """After a send: emailed, or one more failed attempt. Either way the claim is
    released; a failed warning waits 2, 4 ... 300 s before it may be claimed again."""
    if error:
        await pool.execute(
            "UPDATE stock_alerts SET attempts = attempts + 1, last_error = $2, claimed_by = '',"
            " claimed_until = now() + least(300, 2 ^ (attempts + 1)) * interval '1 second'"
            " WHERE id = $1",
            alert_id,
            error[:500],
        )
    else:
        await pool.execute(
            "UPDATE stock_alerts SET emailed_at = coalesce(emailed_at, now()),"
            " attempts = attempts + 1, claimed_by = '', claimed_until = NULL WHERE id = $1",
            alert_id,
        )
