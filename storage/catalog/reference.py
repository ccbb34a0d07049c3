"""Setting up units, issuing points, codes and segments in one call (the demo
hospital, tests, benchmarks); a real hospital goes through storage.catalog.edit."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from engine.statuses import GrantSource, SegmentStatus

__all__ = [
    "PAY_CHANNELS",
    "add_segment",
    "ensure_unit",
    "stock_available",
    "stock_summary",
]

# Pay channels (缴款渠道) every unit accepts.
PAY_CHANNELS = {
    "01": "POS",
    "02": "cash",
    "03": "transfer",
    "04": "Alipay",
    "05": "WeChat",
    "06": "cheque",
}


async def ensure_unit(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    unit_name: str,
    issuing_points: Iterable[tuple[str, str]],
    charge_codes: Iterable[tuple[str, str]],
    bill_codes: Iterable[tuple[str, str, str]],
) -> None:
    """Create or update a unit with its issuing points, charge codes and bill codes
    (bus_type, bill_code, name). Idempotent."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            "INSERT INTO pay_channel_codes (code, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            list(PAY_CHANNELS.items()),
        )
        await conn.execute(
            "INSERT INTO units (unit_code, unit_name) VALUES ($1, $2)"
            " ON CONFLICT (unit_code) DO UPDATE SET unit_name = excluded.unit_name",
            unit_code,
            unit_name,
        )
        await conn.executemany(
            "INSERT INTO issuing_points (unit_code, place_code, name) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING",
            [(unit_code, p, n) for p, n in issuing_points],
        )
        await conn.executemany(
            "INSERT INTO charge_codes (unit_code, charge_code, charge_name) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING",
            [(unit_code, c, n) for c, n in charge_codes],
        )
        await conn.executemany(
            "INSERT INTO bill_codes (unit_code, bus_type, bill_code, bill_name)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            [(unit_code, t, c, n) for t, c, n in bill_codes],
        )


async def add_segment(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    place_code: str,
    bill_code: str,
    start_no: int,
    end_no: int,
    grant_id: str,
) -> int:
    """Record a segment the platform granted, distributed straight to an issuing
    point (set-up and tests); returns its id."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO segment_grants (grant_id, unit_code, bill_code, start_no, end_no,"
            " source) VALUES ($1, $2, $3, $4, $5, $6)",
            grant_id,
            unit_code,
            bill_code,
            start_no,
            end_no,
            GrantSource.GRANT,
        )
        return int(
            await conn.fetchval(
                "INSERT INTO segments (unit_code, place_code, bill_code, start_no, end_no,"
                " next_no, grant_id) VALUES ($1, $2, $3, $4, $5, $4, $6) RETURNING id",
                unit_code,
                place_code,
                bill_code,
                start_no,
                end_no,
                grant_id,
            )
        )


async def stock_available(pool: asyncpg.Pool) -> list[tuple[str, str, str, int]]:
    """(unit_code, place_code, bill_code, numbers left) over enabled segments."""
    rows = await pool.fetch(
        "SELECT unit_code, place_code, bill_code, sum(end_no - next_no + 1) AS left"
        f" FROM segments WHERE status = '{SegmentStatus.ENABLED}' AND place_code IS NOT NULL"
        " GROUP BY 1, 2, 3"
    )
    return [(r["unit_code"], r["place_code"], r["bill_code"], int(r["left"])) for r in rows]


async def stock_summary(pool: asyncpg.Pool, unit_code: str) -> list[dict[str, int | str]]:
    """Per issuing point and bill code: granted, leased (issued) and available numbers."""
    rows = await pool.fetch(
        "SELECT coalesce(place_code, '') AS place_code, bill_code,"
        " sum(end_no - start_no + 1) AS granted, sum(next_no - start_no) AS leased,"
        " coalesce(sum(end_no - next_no + 1)"
        f"  FILTER (WHERE status = '{SegmentStatus.ENABLED}'), 0) AS available"
        " FROM segments WHERE unit_code = $1 GROUP BY 1, bill_code"
        " ORDER BY place_code, bill_code",
        unit_code,
    )
    return [
        {
            "place_code": r["place_code"],
            "bill_code": r["bill_code"],
            "granted": int(r["granted"]),
            "leased": int(r["leased"]),
            "available": int(r["available"]),
        }
        for r in rows
    ]
