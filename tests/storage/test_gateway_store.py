"""The gateway's own rows: asynchronous batches and their refusals."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import AlreadyExists
from storage import gateway as store
from storage.gateway import DayBill
from usecases.gateway import runs


async def test_a_batch_is_recorded_once_and_its_refusals_kept(db: Any) -> None:
    args = dict(unit_code="U9", batch_no="B1", app_id="his", method="batchInvoiceEBillOutpatient")
    leaves = await db.fetchval("SELECT count(*) FROM log_entries")
    assert await store.record_batch(db, **args, bus_nos=["s1", "s2"]) is True
    assert await db.fetchval("SELECT count(*) FROM log_entries") == leaves + 1
    # Sent again with the same bills: the same batch, nothing more written.
    assert await store.record_batch(db, **args, bus_nos=["s1", "s2"]) is False
    assert await db.fetchval("SELECT count(*) FROM log_entries") == leaves + 1
    with pytest.raises(AlreadyExists):
        await store.record_batch(db, **args, bus_nos=["s1", "s3"])
    rec = await store.load_batch(db, "U9", "B1")
    assert rec is not None and not rec.finished and rec.bus_nos == ("s1", "s2")
    await store.finish_batch(
        db, unit_code="U9", batch_no="B1", failures=[("s2", "INVALID_ARGUMENT", "bad")]
    )
    rec = await store.load_batch(db, "U9", "B1")
    assert rec is not None and rec.finished
    assert rec.failures == {"s2": ("INVALID_ARGUMENT", "bad")} and rec.issued == {}
    assert await store.load_batch(db, "U9", "nope") is None


def test_day_bills_are_cut_into_runs_of_consecutive_numbers() -> None:
    bills = [
        DayBill("02", "001", "44060119", 1, 100),
        DayBill("02", "001", "44060119", 2, 250),
        DayBill("02", "001", "44060119", 4, 50),
        DayBill("02", "002", "44060119", 5, 10),
        DayBill("06", "002", "44060119", 6, -30),
    ]
    cut = runs(bills)
    assert [(r.place_code, r.first_no, r.last_no, r.count, r.total_fen) for r in cut] == [
        ("001", 1, 2, 2, 350),
        ("001", 4, 4, 1, 50),
        ("002", 5, 5, 1, 10),
        ("002", 6, 6, 1, 30),
    ]
