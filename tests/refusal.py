"""A refused call names the right code and field and changes nothing."""

from __future__ import annotations

from typing import Any

import asyncpg
import grpc
import pytest

__all__ = ["refused", "snapshot"]


async def snapshot(pool: asyncpg.Pool) -> tuple[Any, ...]:
    """Everything a refused operation must leave as it was: bills and their status and
    paper, leased numbers, the outbox, paper, stock, stock requests and both logs."""
    return (
        await pool.fetchval("SELECT count(*) FROM bills"),
        await pool.fetchval("SELECT count(*) FROM outbox"),
        tuple(await pool.fetch("SELECT id, status, paper_code, paper_no FROM bills ORDER BY id")),
        tuple(await pool.fetch("SELECT * FROM segments ORDER BY id")),
        tuple(await pool.fetch("SELECT * FROM paper_bills ORDER BY paper_code, paper_no")),
        await pool.fetchval("SELECT sum(next_no) FROM paper_stock"),
        tuple(await pool.fetch("SELECT id, status FROM grant_applications ORDER BY id")),
        tuple(await pool.fetch("SELECT id, status FROM requisitions ORDER BY id")),
        tuple(await pool.fetch("SELECT id, status FROM stock_returns ORDER BY id")),
        await pool.fetchval("SELECT count(*) FROM bill_events"),
        await pool.fetchval("SELECT count(*) FROM stock_events"),
    )


async def refused(
    pool: asyncpg.Pool, call: Any, code: grpc.StatusCode, field: str = ""
) -> grpc.aio.AioRpcError:
    """Await ``call``; it must fail with ``code`` (and ``field`` in the trailing
    metadata, if given) and leave the database as it was."""
    before = await snapshot(pool)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    err = info.value
    assert err.code() == code, err.details()
    if field:
        md = dict(err.trailing_metadata() or ())
        assert md.get("ebill-field") == field, (md, err.details())
    assert await snapshot(pool) == before, "a refused call changed state"
    return err
