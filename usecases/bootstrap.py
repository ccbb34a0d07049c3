"""Setting a unit up: reference data, its key registered with the fiscal platform,
number segments granted by the platform and distributed to issuing points."""

from __future__ import annotations

import asyncpg

from clients.fiscal import FiscalClient
from clients.signer import SignerClient
from engine.numbers import NumberRange
from engine.sm2 import VerifyingKey
from storage.catalog import add_segment, ensure_unit, stock_summary
from usecases import demo

__all__ = ["bootstrap_demo", "grant_stock", "register_unit"]


async def register_unit(
    signer: SignerClient, fiscal: FiscalClient, unit_code: str, name: str
) -> VerifyingKey:
    """Tell the fiscal platform which public key the unit's signing server signs with."""
    key = await signer.public_key()
    await fiscal.register_unit(unit_code, name, key)
    return key


async def grant_stock(
    pool: asyncpg.Pool,
    fiscal: FiscalClient,
    *,
    unit_code: str,
    place_code: str,
    bill_code: str,
    count: int,
) -> NumberRange:
    """Ask the platform for a segment and give it to an issuing point."""
    grant = await fiscal.grant_segment(unit_code, bill_code, count)
    await add_segment(
        pool,
        unit_code=unit_code,
        place_code=place_code,
        bill_code=bill_code,
        start_no=int(grant.numbers.start),
        end_no=int(grant.numbers.end),
        grant_id=grant.grant_id,
    )
    return grant.numbers


async def bootstrap_demo(
    pool: asyncpg.Pool, signer: SignerClient, fiscal: FiscalClient, *, stock: int = 100_000
) -> None:
    """The demo hospital, ready to issue: every issuing point holds at least
    ``stock // 2`` numbers of every bill code it uses."""
    await ensure_unit(
        pool,
        unit_code=demo.UNIT_CODE,
        unit_name=demo.UNIT_NAME,
        issuing_points=demo.ISSUING_POINTS,
        charge_codes=demo.CHARGE_CODES,
        bill_codes=demo.BILL_CODES,
    )
    await register_unit(signer, fiscal, demo.UNIT_CODE, demo.UNIT_NAME)
    have = {
        (r["place_code"], r["bill_code"]): int(r["available"])
        for r in await stock_summary(pool, demo.UNIT_CODE)
    }
    for place, _ in demo.ISSUING_POINTS:
        for bill_code in sorted({c for _, c, _ in demo.BILL_CODES}):
            if have.get((place, bill_code), 0) < stock // 2:
                await grant_stock(
                    pool,
                    fiscal,
                    unit_code=demo.UNIT_CODE,
                    place_code=place,
                    bill_code=bill_code,
                    count=stock,
                )
