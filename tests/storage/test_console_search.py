"""The bill office's search over every issuing point of its unit, and the
filters the console adds (payer name through its keyed digest, serial, code and
number, status), against a real PostgreSQL (issue #16 item 2)."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import asyncpg
import pytest

from engine.errors import InvalidArgument
from engine.model import BillStatus
from engine.operator import Operator
from engine.prepare import Prepared, prepare
from engine.validation import validate
from storage.bills import reserve
from storage.catalog import add_segment
from storage.lifecycle import BillFilter, list_bills
from storage.personal import normalise_name
from tests.factories import RING, bill
from tests.storage.test_reserve import FIRST, UNIT, setup, unit_catalog, work
from usecases.lifecycle import BillQuery, Lifecycle


def payer_bill(seq: int, place: str, name: str) -> Prepared:
    given = replace(bill(seq), unit_code=UNIT, place_code=place)
    given = replace(given, payer=replace(given.payer, name=name))
    return prepare(validate(given, unit_catalog()))


async def issued(db: asyncpg.Pool) -> dict[str, list[str]]:
    """Bills at points 001 and 002; bus_no by payer."""
    _, bill_code = await setup(db, numbers=10)
    await add_segment(
        db, unit_code=UNIT, place_code="002", bill_code=bill_code,
        start_no=FIRST + 100, end_no=FIRST + 109, grant_id="G-T-C2",
    )  # fmt: skip
    given = [
        payer_bill(1, "001", "买买提·艾力"),
        payer_bill(2, "002", "买买提・艾力"),  # the katakana dot a Japanese IME types
        payer_bill(3, "002", "张三"),
        payer_bill(4, "001", "John Smith"),
    ]
    out = await reserve(db, list(enumerate(given)), ring=RING)
    assert all(work(out[i]) for i in range(len(given)))
    by: dict[str, list[str]] = {}
    for p in given:
        by.setdefault(normalise_name(p.payer_name), []).append(p.bus_no)
    return by


async def serials(db: asyncpg.Pool, **f: object) -> list[str]:
    bills, _ = await list_bills(db, BillFilter(unit_code=UNIT, **f), RING)  # type: ignore[arg-type]
    return [b.bus_no for b in bills]


async def test_the_office_searches_every_point_and_names_match_as_people_write_them(
    db: asyncpg.Pool,
) -> None:
    by = await issued(db)
    everyone = sorted(s for v in by.values() for s in v)
    assert sorted(await serials(db, place_code="")) == everyone
    assert len(await serials(db, place_code="001")) == 2

    # The same name written with another middle dot, padded or in another case.
    uighur = sorted(by[normalise_name("买买提·艾力")])
    assert len(uighur) == 2
    for written in ("买买提·艾力", "买买提 • 艾力", " 买买提．艾力 "):
        assert sorted(await serials(db, place_code="", payer_name=written)) == uighur
    assert await serials(db, place_code="002", payer_name="买买提·艾力") == [
        s for s in uighur if s in await serials(db, place_code="002")
    ]
    assert len(await serials(db, place_code="", payer_name="john smith")) == 1
    assert await serials(db, place_code="", payer_name="张") == []  # exact match only
    # The name is kept only as a keyed digest: no row holds it in clear.
    assert await db.fetchval("SELECT count(*) FROM bills WHERE payer_name IS NOT NULL") == 0
    assert await db.fetchval("SELECT count(*) FROM bills WHERE payer_name_hash IS NULL") == 0

    # Serial, code and number, status.
    one = by[normalise_name("张三")][0]
    assert await serials(db, place_code="", bus_no=one) == [one]
    row = await db.fetchrow("SELECT bill_code, bill_no FROM bills WHERE bus_no = $1", one)
    assert await serials(db, place_code="", bill_code=row[0], bill_no=row[1]) == [one]
    assert await serials(db, place_code="001", bus_no=one) == []  # another point's bill
    reserved = await serials(db, place_code="", status=BillStatus.RESERVED)
    assert sorted(reserved) == everyone
    assert await serials(db, place_code="", status=BillStatus.ISSUED) == []


async def test_the_use_case_lets_only_the_office_leave_the_point_empty(db: asyncpg.Pool) -> None:
    await issued(db)
    # Listing never reaches the pipeline: nothing stands in for it.
    no_pipeline = SimpleNamespace(issue_prepared=None)
    lifecycle = Lifecycle(db, no_pipeline, 1.0, ring=RING)  # type: ignore[arg-type]
    anyone = Operator(UNIT, "clerk", "")
    with pytest.raises(InvalidArgument) as refused:
        await lifecycle.list_bills(anyone, BillQuery())
    assert refused.value.field == "operator.place_code"
    page = await lifecycle.list_bills(anyone, BillQuery(payer_name="张三"), office=True)
    [found] = [b.source.payer for b in page.bills if b.source]
    assert found.name == "张三" and "*" in found.id_card_no  # masked without bill.read_pii
    with pytest.raises(InvalidArgument):
        await lifecycle.list_bills(anyone, BillQuery(status="lost"), office=True)
