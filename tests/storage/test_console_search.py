"""The bill office's search over every issuing point of its unit, and the
filters the console adds (payer name through its keyed digest, serial, code and
number, status), against a real PostgreSQL (issue #16 item 2)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
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
from storage.lifecycle import BillFilter, _list_query, list_bills
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


async def test_a_period_pages_by_issue_time_then_id_through_the_same_id_tokens(
    db: asyncpg.Pool,
) -> None:
    """Bills imported from the previous system get ids after the engine's own
    though they were issued before them: a period lists them by issue time,
    ties by id, and paging through the tokens list_bills hands out (still a
    bill's id) gives every bill once (migration 0018's keyset)."""
    await issued(db)
    rows = await db.fetch("SELECT id, place_code FROM bills WHERE unit_code = $1 ORDER BY id", UNIT)
    ids = [r["id"] for r in rows]
    at_002 = {r["id"] for r in rows if r["place_code"] == "002"}
    assert len(ids) == 4
    # The last bill is the oldest; the first two share one instant.
    at = ["2026-03-02 09:00", "2026-03-02 09:00", "2026-03-02 11:00", "2026-03-01 23:30"]
    for bill_id, when in zip(ids, at, strict=True):
        await db.execute(
            "UPDATE bills SET issued_at = $1::text::timestamp AT TIME ZONE 'Asia/Shanghai'"
            " WHERE id = $2",
            when, bill_id,
        )  # fmt: skip
    expected = [ids[3], ids[0], ids[1], ids[2]]
    first, last = date(2026, 3, 1), date(2026, 3, 2)
    for place, want in (("", expected), ("002", [i for i in expected if i in at_002])):
        seen: list[int] = []
        after = 0
        for _ in range(10):
            page, after = await list_bills(
                db,
                BillFilter(UNIT, place, from_date=first, to_date=last, limit=1, after_id=after),
                RING,
            )
            seen += [b.bill_id for b in page]
            if not after:
                break
        assert seen == want, place
    # One day only: the bill of 1 March alone; a bare listing keeps id order.
    page, _ = await list_bills(db, BillFilter(UNIT, "", to_date=date(2026, 3, 1)), RING)
    assert [b.bill_id for b in page] == [ids[3]]
    page, _ = await list_bills(db, BillFilter(UNIT, ""), RING)
    assert [b.bill_id for b in page] == ids


@pytest.mark.parametrize(("place", "index"), [("", "bills_unit_time"), ("001", "bills_place_time")])
async def test_a_period_page_is_read_in_order_from_its_index(
    db: asyncpg.Pool, place: str, index: str
) -> None:
    """The keyset's condition and order are what the index holds: an index
    scan, no sort, the page token an index condition (a sub-select's row would
    not be one). Sequential scans are off: the test table is tiny."""
    await issued(db)
    f = BillFilter(UNIT, place, from_date=date(2026, 3, 1), to_date=date(2026, 3, 31), after_id=1)
    sql, args = _list_query(f, RING, by_time=True)
    await db.execute("SET LOCAL enable_seqscan = off")
    plan = "\n".join(r[0] for r in await db.fetch("EXPLAIN " + sql, *args))
    assert f"Index Scan using {index} on bills b" in plan, plan
    assert "Sort" not in plan, plan
    cond = plan[plan.index(f"using {index} on bills b") :].split("\n")[1]
    assert "ROW(issued_at, id) > ROW(" in cond, plan
