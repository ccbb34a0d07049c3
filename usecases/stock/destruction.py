"""Destruction of used paper past its retention period (销毁申请)."""

from __future__ import annotations

import asyncpg

from engine.numbers import NumberRange
from storage.stock import destruction as store

__all__ = ["decide_destruction", "request_destruction"]

decide_destruction = store.decide_destruction


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
    return await store.request_destruction(
        pool,
        unit_code=unit_code,
        paper_code=paper_code,
        numbers=numbers,
        retention_days=retention_days,
        operator=operator,
        reason=reason,
    )
