"""The reserve transaction against a real PostgreSQL, without the pipeline:
numbers are leased in order from the point's segment and a repeated bus_no gets
the bill stored the first time."""

from __future__ import annotations

from dataclasses import replace

import asyncpg
import pytest

from engine.errors import ResourceExhausted
from engine.model import Catalog
from engine.pipeline import Duplicate, Work
from engine.prepare import Prepared, prepare
from engine.validation import validate
from storage.bills import reserve
from storage.catalog import add_segment, ensure_unit
from storage.stock.segments import identity
from tests.factories import bill, catalog

# A unit and numbers of its own, so that the tests also run on a database other
# tests seeded (EBILL_TEST_DATABASE_URL): numbers are unique per bill code.
UNIT = "T00000003"
FIRST = 9_999_000_001


def unit_catalog() -> Catalog:
    [u] = catalog().units.values()
    return Catalog(units={UNIT: replace(u, unit_code=UNIT)})


async def setup(db: asyncpg.Pool, numbers: int) -> tuple[str, str]:
    """The test unit in the database, with ``numbers`` bill numbers at its point."""
    [u] = unit_catalog().units.values()
    await ensure_unit(
        db, unit_code=u.unit_code, unit_name=u.unit_name,
        issuing_points=[(p, p) for p in u.issuing_points],
        charge_codes=list(u.charge_codes.items()),
        bill_codes=[(t, c, c) for t, c in u.bill_codes.items()],
    )  # fmt: skip
    p = prepared(1)
    await add_segment(
        db, unit_code=p.unit_code, place_code=p.place_code, bill_code=p.bill_code,
        start_no=FIRST, end_no=FIRST + numbers - 1, grant_id="G-T-R",
    )  # fmt: skip
    return p.unit_code, p.bill_code


def prepared(seq: int) -> Prepared:
    return prepare(validate(replace(bill(seq), unit_code=UNIT), unit_catalog()))


def work(item: object) -> Work:
    assert isinstance(item, Work), item
    return item


async def test_numbers_are_leased_in_order_and_the_identity_holds(db: asyncpg.Pool) -> None:
    unit, bill_code = await setup(db, numbers=10)
    out = await reserve(db, [(i, prepared(i + 1)) for i in range(3)])
    assert [work(out[i]).bill_no for i in range(3)] == ["9999000001", "9999000002", "9999000003"]
    assert all(not work(w).replayed for w in out.values())
    [ident] = await identity(db, unit)
    assert (ident.bill_code, ident.issued, ident.available, ident.bills) == (bill_code, 3, 7, 3)
    assert ident.balanced


async def test_a_repeated_bus_no_gets_the_first_bill(db: asyncpg.Pool) -> None:
    await setup(db, numbers=10)
    first = work((await reserve(db, [(0, prepared(1))]))[0])
    again = await reserve(db, [(0, prepared(1)), (1, prepared(1))])
    assert work(again[0]).replayed
    assert (work(again[0]).bill_id, work(again[0]).bill_no) == (first.bill_id, first.bill_no)
    assert again[1] == Duplicate(0)
    bus_no = prepared(1).bus_no
    count = "SELECT count(*) FROM bills WHERE unit_code = $1 AND bus_no = $2"
    assert await db.fetchval(count, UNIT, bus_no) == 1


async def test_a_dry_point_refuses_the_rest_and_atomic_writes_nothing(db: asyncpg.Pool) -> None:
    unit, _ = await setup(db, numbers=2)
    out = await reserve(db, [(i, prepared(i + 1)) for i in range(3)])
    assert isinstance(out[2], ResourceExhausted)
    assert [work(out[i]).bill_no for i in range(2)] == ["9999000001", "9999000002"]
    with pytest.raises(ResourceExhausted):
        await reserve(db, [(0, replace(prepared(9), bus_no="ATOMIC-1"))], atomic=True)
    assert await db.fetchval("SELECT count(*) FROM bills WHERE bus_no = 'ATOMIC-1'") == 0
    [ident] = await identity(db, unit)
    assert (ident.issued, ident.available) == (2, 0)
