"""A red bill the fiscal platform refuses (issue #11 item 11): the original must
not stay red-flushed without a valid red bill. The archive transaction marks the
red bill rejected and issues the original again, with an event, in one go."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import asyncpg

from engine.lifecycle import BillKey, red_prepared
from engine.model import CST, BillStatus
from engine.pipeline import Work, finish
from storage.archive import archive
from storage.bills import get_bill, reserve
from storage.lifecycle import bill_events, load_original
from tests.factories import RING
from tests.storage.test_reserve import UNIT, prepared, setup, work


async def issued_original(db: asyncpg.Pool) -> Work:
    w = work((await reserve(db, [(0, prepared(1))], ring=RING))[0])
    signed = replace(w, unit_signature=b"unit", fiscal_signature=b"fiscal")
    await archive(db, [finish(signed)])
    return signed


async def red_flush(db: asyncpg.Pool, original: Work, bus_no: str) -> Work:
    orig = await load_original(db, BillKey.serial(UNIT, original.bus_no), ring=RING)
    assert orig is not None
    p = red_prepared(
        orig.state, orig.canonical, orig.request, bill_code=original.bill_code, bus_no=bus_no,
        bus_time=datetime.now(UTC).astimezone(CST), place_code=original.place_code,
        operator="op-1", reason="wrong patient", void_paper=False, op="red_flush",
    )  # fmt: skip
    return work((await reserve(db, [(0, p)], ring=RING))[0])


async def status(db: asyncpg.Pool, bill_id: int) -> str:
    return str(await db.fetchval("SELECT status FROM bills WHERE id = $1", bill_id))


async def test_a_refused_red_bill_gives_the_original_back(db: asyncpg.Pool) -> None:
    await setup(db, numbers=10)
    original = await issued_original(db)
    red = await red_flush(db, original, "RED-1")
    assert await status(db, original.bill_id) == BillStatus.RED_FLUSHED
    # The platform refuses the red bill (as CountersignStage reports it).
    refused = replace(
        red, unit_signature=b"unit-red", deferred="fiscal platform rejected: NOT_NEGATED",
        rejected=True, platform_refused=True,
    )  # fmt: skip
    await archive(db, [finish(refused)])
    assert await status(db, red.bill_id) == BillStatus.REJECTED
    assert await status(db, original.bill_id) == BillStatus.ISSUED
    # Not retried: a refusal is final.
    assert not await db.fetchval("SELECT 1 FROM outbox WHERE bill_id = $1", red.bill_id)
    events = await bill_events(db, original.bill_id)
    assert events[-1]["op"] == "red_flush_refused"
    assert events[-1]["detail"]["red_bill"] == f"{red.bill_code}/{red.bill_no}"
    bill = await get_bill(db, BillKey.serial(UNIT, original.bus_no), ring=RING)
    assert bill is not None and bill.status is BillStatus.ISSUED and bill.red_by == ""
    # The original may be red-flushed again, by a new red bill.
    again = await red_flush(db, original, "RED-2")
    assert again.bill_id != red.bill_id
    assert await status(db, original.bill_id) == BillStatus.RED_FLUSHED


async def test_a_refused_ordinary_bill_stays_pending(db: asyncpg.Pool) -> None:
    await setup(db, numbers=10)
    w = work((await reserve(db, [(0, prepared(2))], ring=RING))[0])
    refused = replace(
        w, unit_signature=b"unit", deferred="fiscal platform rejected: AMOUNTS",
        rejected=True, platform_refused=True,
    )  # fmt: skip
    await archive(db, [finish(refused)])
    assert await status(db, w.bill_id) == BillStatus.PENDING_COUNTERSIGN
