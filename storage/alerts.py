"""Low-stock warnings (库存预警): fired inside the transactions that change stock.

A rule per issuing point and bill code remembers whether it has fired (``below``),
so a warning marks the moment usable stock crosses under the threshold, once, and
the rule is re-armed when stock is topped up to the threshold or above. The
warning is kept in the system (read by the bill office) and, when the rule has an
address, emailed by the engine's mail loop.

Firing lives here, below storage.bills (whose reserve transaction fires warnings);
the rules, listing and mail bookkeeping are in storage.stock.alerts.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

__all__ = [
    "AlertKey",
    "evaluate_alerts",
    "unread_alerts",
    "usable_at",
]

AlertKey = tuple[str, str, str]  # unit_code, place_code, bill_code


def usable_at(alias: str) -> str:
    """SQL for the usable (enabled, unused) numbers at the issuing point and bill code
    of the row ``alias``: what warnings and automatic distribution watch."""
    return (
        "coalesce((SELECT sum(s.end_no - s.next_no + 1) FROM segments s"
        f" WHERE s.unit_code = {alias}.unit_code AND s.place_code = {alias}.place_code"
        f" AND s.bill_code = {alias}.bill_code AND s.status = 'enabled'), 0)"
    )


async def evaluate_alerts(conn: asyncpg.Connection, keys: Iterable[AlertKey]) -> int:
    """Fire the warnings whose threshold the stock just crossed going down, re-arm
    those topped back up. Called inside every transaction that changes a point's
    usable stock (the reserve transaction included). Returns how many fired."""
    keys = sorted(set(keys))
    if not keys:
        return 0
    rules = await conn.fetch(
        "SELECT r.*, " + usable_at("r") + " AS available"
        " FROM stock_alert_rules r"
        " JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(u, p, c)"
        "   ON r.unit_code = k.u AND r.place_code = k.p AND r.bill_code = k.c"
        " ORDER BY r.unit_code, r.place_code, r.bill_code FOR UPDATE OF r",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
    )
    fired = 0
    for r in rules:
        below = int(r["available"]) < int(r["threshold"])
        if below == r["below"]:
            continue
        await conn.execute(
            "UPDATE stock_alert_rules SET below = $4 WHERE unit_code = $1 AND place_code = $2"
            " AND bill_code = $3",
            r["unit_code"],
            r["place_code"],
            r["bill_code"],
            below,
        )
        if below:
            fired += 1
            await conn.execute(
                "INSERT INTO stock_alerts (unit_code, place_code, bill_code, threshold,"
                " available, message, email) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                r["unit_code"],
                r["place_code"],
                r["bill_code"],
                r["threshold"],
                r["available"],
                f"库存预警 low stock: issuing point {r['place_code']} has {r['available']} "
                f"numbers of bill code {r['bill_code']} left, under the threshold "
                f"{r['threshold']}",
                r["email"],
            )
    return fired


async def unread_alerts(pool: asyncpg.Pool) -> list[tuple[str, str, str, int]]:
    """(unit_code, place_code, bill_code, unread warnings) where any are unread."""
    rows = await pool.fetch(
        "SELECT unit_code, place_code, bill_code, count(*) AS n FROM stock_alerts"
        " WHERE read_at IS NULL GROUP BY 1, 2, 3"
    )
    return [(r["unit_code"], r["place_code"], r["bill_code"], int(r["n"])) for r in rows]
