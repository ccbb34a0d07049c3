"""The names a rendered bill prints beside the codes it stores: the unit's name,
the bill's name (票据名称) for its bill code, and the pay channels' names."""

from __future__ import annotations

import asyncpg

__all__ = ["bill_names"]


async def bill_names(
    pool: asyncpg.Pool, unit_code: str, bill_code: str
) -> tuple[str, str, dict[str, str]]:
    """(unit name, bill name, {pay channel code: name}); empty names when unknown
    (a back-entered bill's code, a unit renamed away)."""
    async with pool.acquire() as conn:
        unit_name = await conn.fetchval(
            "SELECT unit_name FROM units WHERE unit_code = $1", unit_code
        )
        bill_name = await conn.fetchval(
            "SELECT bill_name FROM bill_codes WHERE unit_code = $1 AND bill_code = $2 LIMIT 1",
            unit_code,
            bill_code,
        )
        channels = await conn.fetch("SELECT code, name FROM pay_channel_codes")
    return unit_name or "", bill_name or "", {r["code"]: r["name"] for r in channels}
