"""Offline paper bills against a real PostgreSQL (storage.offline): the paper handed
out is a blank of the issuing point's paper stock and is taken from it, in either
order with a conversion to paper (issue #11, item 1)."""

from __future__ import annotations

import asyncpg
import pytest

from engine.errors import AlreadyExists, FailedPrecondition, NotFound
from engine.lifecycle import BillKey
from storage.bills import reserve
from storage.offline import (
    link_back_issued,
    quarantine_offline,
    quarantined_offline,
    record_offline,
    waiting_offline,
)
from storage.paper import convert_to_paper, paper_stock, receive_paper
from storage.personal import seal_offline
from tests.factories import RING
from tests.storage.test_reserve import UNIT, prepared, setup, work

PAPER = "99000011"


async def point(db: asyncpg.Pool) -> str:
    """The test unit with bill numbers and paper 1..10 at its issuing point."""
    await setup(db, numbers=10)
    place = prepared(1).place_code
    await receive_paper(
        db, unit_code=UNIT, place_code=place, paper_code=PAPER, start_no=1, end_no=10,
        operator="clerk",
    )  # fmt: skip
    return place


async def offline(db: asyncpg.Pool, seq: int, paper_no: int, place: str = "") -> int:
    p = prepared(seq)
    return await record_offline(
        db, unit_code=UNIT, bus_no=f"OFFLINE-{seq}", place_code=place or p.place_code,
        paper_code=PAPER, paper_no=f"{paper_no:010d}", operator="clerk", request=b"req", ring=RING,
    )  # fmt: skip


async def issued(db: asyncpg.Pool, seq: int) -> int:
    """A bill issued (countersigned) the quick way: reserved, then marked issued."""
    w = work((await reserve(db, [(0, prepared(seq))], ring=RING))[0])
    await db.execute(
        "UPDATE bills SET status = 'issued', unit_signature = 'u', fiscal_signature = 'f',"
        " countersigned_at = now() WHERE id = $1",
        w.bill_id,
    )
    return w.bill_id


async def convert(db: asyncpg.Pool, seq: int, place: str) -> str:
    out = await convert_to_paper(
        db, BillKey.serial(UNIT, prepared(seq).bus_no), unit_code=UNIT, place_code=place,
        operator="clerk",
    )  # fmt: skip
    assert out.paper_code == PAPER
    return out.paper_no


async def test_an_offline_bill_takes_its_blank_and_a_conversion_prints_on_the_next(
    db: asyncpg.Pool,
) -> None:
    place = await point(db)
    await offline(db, 1, paper_no=1)
    [r] = await paper_stock(db, UNIT, place)
    assert (r.next_no, r.remaining) == (2, 9)
    await issued(db, 2)
    # Offline first, then a conversion: it cannot print on the offline sheet.
    assert await convert(db, 2, place) == "0000000002"


async def test_a_sheet_a_conversion_printed_cannot_be_recorded_offline(db: asyncpg.Pool) -> None:
    place = await point(db)
    await issued(db, 2)
    no = await convert(db, 2, place)
    # Conversion first, then offline on the printed sheet: refused, nothing written.
    with pytest.raises(FailedPrecondition) as err:
        await offline(db, 1, paper_no=int(no))
    assert err.value.field == "paper_no" and "not blank" in str(err.value)
    assert await db.fetchval("SELECT count(*) FROM offline_bills WHERE unit_code = $1", UNIT) == 0


async def test_paper_outside_the_points_stock_is_refused(db: asyncpg.Pool) -> None:
    place = await point(db)
    with pytest.raises(NotFound) as err:
        await offline(db, 1, paper_no=11)  # beyond the range received
    assert err.value.field == "paper_no"
    other = "999"
    await db.execute(
        "INSERT INTO issuing_points (unit_code, place_code, name) VALUES ($1, $2, 'x')",
        UNIT,
        other,
    )
    with pytest.raises(NotFound):
        await offline(db, 1, paper_no=3, place=other)  # another point's paper
    assert place != other


async def test_the_same_sheet_twice_offline_is_refused(db: asyncpg.Pool) -> None:
    await point(db)
    await offline(db, 1, paper_no=4)
    with pytest.raises(AlreadyExists) as err:
        await offline(db, 2, paper_no=4)
    assert err.value.field == "paper_no"


async def test_back_issue_links_the_sheet_taken_when_recorded(db: asyncpg.Pool) -> None:
    place = await point(db)
    offline_id = await offline(db, 1, paper_no=5)
    bill_id = await issued(db, 1)
    await link_back_issued(db, [(offline_id, bill_id)])
    row = await db.fetchrow(
        "SELECT p.bill_id, p.status, b.paper_no FROM paper_bills p"
        " JOIN bills b ON b.id = p.bill_id WHERE p.paper_code = $1 AND p.paper_no = $2",
        PAPER,
        "0000000005",
    )
    assert row is not None and (row["bill_id"], row["status"]) == (bill_id, "printed")
    assert row["paper_no"] == "0000000005"
    [r] = await paper_stock(db, UNIT, place)
    assert r.remaining == 9


async def test_a_link_onto_another_bills_paper_fails_and_quarantine_sets_it_aside(
    db: asyncpg.Pool,
) -> None:
    place = await point(db)
    await issued(db, 2)
    no = await convert(db, 2, place)
    # A record from before the check (the way issue #11 found it): same sheet.
    offline_id = await db.fetchval(
        "INSERT INTO offline_bills (unit_code, bus_no, place_code, paper_code, paper_no,"
        " operator, request_sealed) VALUES ($1, 'LEGACY', $2, $3, $4, 'clerk', $5) RETURNING id",
        UNIT,
        place,
        PAPER,
        no,
        seal_offline(RING, UNIT, "LEGACY", b"x"),
    )
    bill_id = await issued(db, 1)
    with pytest.raises(asyncpg.UniqueViolationError):
        async with db.transaction():
            await link_back_issued(db, [(offline_id, bill_id)])
    await quarantine_offline(db, offline_id, bill_id, "link failed")
    assert offline_id not in [o for o, _ in await waiting_offline(db, 100, ring=RING)]
    [q] = [q for q in await quarantined_offline(db) if q.offline_id == offline_id]
    assert (q.bill_id, q.paper_no, q.reason) == (bill_id, no, "link failed")
