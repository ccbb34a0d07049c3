"""Numbers moving inside the unit and back up: the stock as it stands,
requisitions, distribution (by range or by count), automatic distribution,
enabling and disabling segments, voids and returns (the bill office's returns go
to the fiscal platform first)."""

from __future__ import annotations

import asyncpg

from clients.fiscal import FiscalClient
from engine.numbers import NumberRange
from engine.statuses import ReturnStatus
from storage.stock import movements as store
from storage.stock import segments as segment_store
from storage.stock.records import Identity, Moved, SegmentView
from usecases.stock._platform import platform

__all__ = [
    "decide_requisition",
    "decide_return",
    "distribute",
    "identity",
    "request_requisition",
    "request_return",
    "segments",
    "set_auto_distribution",
    "set_segment_enabled",
    "void_stock",
]

request_requisition = store.request_requisition
decide_requisition = store.decide_requisition
set_auto_distribution = store.set_auto_distribution
void_stock = store.void_stock
request_return = store.request_return


async def segments(
    pool: asyncpg.Pool, unit_code: str, *, place_code: str | None, office: bool
) -> list[SegmentView]:
    """An issuing point sees its own segments; the bill office all, or its own."""
    return await segment_store.segments(
        pool, unit_code, place_code=place_code, office=office and not place_code
    )


async def set_segment_enabled(
    pool: asyncpg.Pool, *, unit_code: str, segment_id: int, enabled: bool, operator: str
) -> None:
    await segment_store.set_segment_status(
        pool, unit_code=unit_code, segment_id=segment_id, enabled=enabled, operator=operator
    )


async def identity(pool: asyncpg.Pool, unit_code: str) -> list[Identity]:
    return await segment_store.identity(pool, unit_code)


async def distribute(
    pool: asyncpg.Pool,
    *,
    unit_code: str,
    bill_code: str,
    to_place: str,
    numbers: NumberRange | None,
    count: int,
    operator: str,
) -> Moved:
    """These numbers, or the oldest ``count`` unused ones, from the bill office to
    an issuing point."""
    if numbers is not None:
        return await store.distribute_range(
            pool,
            unit_code=unit_code,
            bill_code=bill_code,
            numbers=numbers,
            to_place=to_place,
            operator=operator,
        )
    return await store.distribute_count(
        pool,
        unit_code=unit_code,
        bill_code=bill_code,
        count=count,
        to_place=to_place,
        operator=operator,
    )


async def decide_return(
    pool: asyncpg.Pool,
    fiscal: FiscalClient,
    *,
    unit_code: str,
    ret_id: int,
    confirm: bool,
    operator: str,
) -> None:
    ret = await store.stock_return(pool, unit_code, ret_id)
    if confirm and ret.place_code is None and ret.status == ReturnStatus.PENDING:
        # The bill office's return goes to the platform, which confirms it.
        await platform(
            "the return",
            fiscal.return_segment(unit_code, ret.bill_code, ret.numbers, f"return-{ret.id}"),
        )
    await store.decide_return(
        pool, unit_code=unit_code, ret_id=ret_id, confirm=confirm, operator=operator
    )
