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


async def test_a_page_of_bills_counts_all_and_filters_as_the_vendor_lists(db: Any) -> None:
    from datetime import datetime, timedelta

    from engine.model import CST
    from storage.gateway import Listed, PageQuery, bill_page, day_bills
    from tests.factories import RING
    from tests.storage.test_console_search import issued
    from tests.storage.test_reserve import UNIT

    await issued(db)  # four bills: two at 001, two at 002
    await db.execute(
        "UPDATE bills SET status = 'issued', unit_signature = '\\x01', fiscal_signature = '\\x01'"
    )
    wide = PageQuery(UNIT, datetime(2000, 1, 1), datetime(2100, 1, 1), limit=3)
    total, page = await bill_page(db, wide, RING)
    assert total == 4 and len(page) == 3
    total, rest = await bill_page(db, PageQuery(**{**_fields(wide), "offset": 3}), RING)
    assert total == 4 and [b.bill_id for b in rest] == [max(b.bill_id for b in page) + 1]
    at_002 = PageQuery(**{**_fields(wide), "place_code": "002", "limit": 10})
    total, page = await bill_page(db, at_002, RING)
    assert total == 2 and {b.place_code for b in page} == {"002"}
    assert page[0].source is not None and page[0].source.payer.name  # the request opened
    for listed, want in ((Listed.RED, 0), (Listed.PRINTED, 0), (Listed.UNPRINTED, 4)):
        q = PageQuery(**{**_fields(wide), "listed": listed, "limit": 10})
        assert (await bill_page(db, q, RING))[0] == want, listed
    # By issue time: the bills were issued just now (China time).
    now = datetime.now(CST)
    by_issue = PageQuery(UNIT, now - timedelta(hours=1), now + timedelta(hours=1), by_issue=True)
    assert (await bill_page(db, by_issue, RING))[0] == 4
    assert len(await day_bills(db, unit_code=UNIT, day=now.date(), red=False, by_issue=True)) == 4
    # Nothing whose issue time falls outside the range.
    early = PageQuery(UNIT, now - timedelta(days=3), now - timedelta(days=2), by_issue=True)
    assert (await bill_page(db, early, RING))[0] == 0


def _fields(q: Any) -> dict[str, Any]:
    return {f: getattr(q, f) for f in q.__dataclass_fields__}
