"""The finance reports against a real PostgreSQL, cross-checked with each other
and with the stock identity on the same data (issue #16 item 3)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from engine.errors import InvalidArgument
from engine.model import CST
from engine.numbers import NumberRange
from engine.pipeline import finish
from storage.archive import archive
from storage.bills import reserve
from storage.stock.movements import void_stock
from storage.stock.segments import identity
from tests.factories import RING
from tests.storage.test_red_refused import red_flush
from tests.storage.test_reserve import FIRST, UNIT, prepared, setup, work
from usecases.reports import ExportFormat, IssuanceGroup, Reports, TrendStep, export


def today() -> date:
    return datetime.now(UTC).astimezone(CST).date()


async def issue(db: asyncpg.Pool, seqs: range) -> list[int]:
    out = await reserve(db, [(i, prepared(s)) for i, s in enumerate(seqs)], ring=RING)
    works = [work(out[i]) for i in range(len(seqs))]
    await archive(
        db, [finish(replace(w, unit_signature=b"u", fiscal_signature=b"f")) for w in works]
    )
    return [w.total_fen for w in works]


async def test_reports_agree_with_each_other_and_with_the_stock_identity(
    db: asyncpg.Pool,
) -> None:
    _, bill_code = await setup(db, numbers=100)
    totals = await issue(db, range(1, 8))
    first = work((await reserve(db, [(0, prepared(1))], ring=RING))[0])  # a replay: no new bill
    red = await red_flush(db, first, "RED-1")
    await archive(db, [finish(replace(red, unit_signature=b"u", fiscal_signature=b"f"))])
    place = first.place_code
    await void_stock(
        db, unit_code=UNIT, place_code=place, bill_code=bill_code,
        numbers=NumberRange.of(FIRST + 90, FIRST + 99), operator="clerk", reason="damaged",
    )  # fmt: skip
    reports = Reports(db)
    day = today()

    # Issuance: every grouping counts the same bills and money.
    by = {
        g: await reports.issuance(UNIT, day, day, g)
        for g in (IssuanceGroup.DAY, IssuanceGroup.PLACE, IssuanceGroup.CASHIER,
                  IssuanceGroup.BUS_TYPE)
    }  # fmt: skip
    for table in by.values():
        total = table.rows[-1]
        assert total[0] == "合计"
        assert total[1:] == (7, f"{sum(totals) / 100:.2f}", 1, f"{-totals[0] / 100:.2f}",
                             f"{(sum(totals) - totals[0]) / 100:.2f}")  # fmt: skip
    [day_row, _] = by[IssuanceGroup.DAY].rows
    assert day_row[0] == day.isoformat()
    # By pay channel: the channels' shares add up to the bills' totals.
    channels = await reports.issuance(UNIT, day, day, IssuanceGroup.PAY_CHANNEL)
    assert channels.rows[-1][2] == f"{sum(totals) / 100:.2f}"

    # 收发存 today: 100 received, 8 numbers used (7 bills and the red one), 10 voided.
    [flow] = (await reports.stock_flow(UNIT, day, day)).rows
    assert flow == (bill_code, 0, 100, 8, 10, 0, 82)
    # The closing stock is what the stock identity calls available.
    [ident] = await identity(db, UNIT)
    assert ident.available == flow[-1] and ident.issued == flow[3] and ident.voided == flow[4]
    # Tomorrow opens with yesterday's closing and nothing moved.
    later = day + timedelta(days=1)
    [next_day] = (await reports.stock_flow(UNIT, later, later)).rows
    assert next_day == (bill_code, 82, 0, 0, 0, 0, 82)
    # The peak trend counts the same bills per hour as the issuance report per day.
    hours = await reports.trend(UNIT, day, day, TrendStep.HOUR)
    assert sum(int(r[1]) for r in hours.rows) == 8
    days = await reports.trend(UNIT, day, day, TrendStep.DAY)
    assert days.rows == ((day.isoformat(), 8),)
    # No paper received: the paper report runs (its query once named a column of
    # two tables) and is empty.
    assert (await reports.paper_usage(UNIT, day, day)).rows == ()
    assert (await reports.paper_usage(UNIT, day, day, place_code=place)).rows == ()


async def test_a_period_that_ends_before_it_starts_is_refused(db: asyncpg.Pool) -> None:
    day = today()
    with pytest.raises(InvalidArgument) as err:
        await Reports(db).issuance(UNIT, day, day - timedelta(days=1), IssuanceGroup.DAY)
    assert err.value.field == "last"
    with pytest.raises(InvalidArgument):
        await Reports(db).stock_flow(UNIT, day - timedelta(days=400), day)


async def test_exports_hold_the_same_figures(db: asyncpg.Pool) -> None:
    await setup(db, numbers=10)
    await issue(db, range(1, 4))
    day = today()
    table = await Reports(db).issuance(UNIT, day, day, IssuanceGroup.PLACE)
    text = export(table, ExportFormat.CSV).decode("utf-8")
    assert text.startswith("\ufeff开票点,开票张数,")
    assert text.splitlines()[-1].startswith("合计,3,")

    from io import BytesIO

    from openpyxl import load_workbook

    sheet = load_workbook(BytesIO(export(table, ExportFormat.XLSX))).active
    assert sheet is not None
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert values[1] == list(table.headers)
    assert values[-1] == list(table.rows[-1])
