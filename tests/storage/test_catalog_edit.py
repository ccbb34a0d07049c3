"""Catalogue maintenance against a real PostgreSQL: versions, change records,
transparency-log leaves, HIS mappings with periods (storage.catalog.edit)."""

from __future__ import annotations

from datetime import date

import asyncpg
import pytest

from engine.catalog import (
    ENTRY_TYPES,
    CashierEntry,
    CatalogKind,
    ChangeOp,
    ItemEntry,
    MappingEntry,
    PayChannelEntry,
    PointEntry,
    UnitEntry,
    resolve_his,
)
from engine.errors import InvalidArgument
from storage.catalog import load_units, unit_versions
from storage.catalog.edit import changes, list_entries, lock_unit, upsert, withdraw

UNIT = "T00000012"


async def _setup(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        await lock_unit(conn, UNIT)
        await upsert(
            conn,
            UNIT,
            [
                UnitEntry(UNIT, "测试医院", {"credit_code": "12440000MB0000000X"}),
                PointEntry("001", "门诊收费窗口1"),
                CashierEntry("C001", "张收费", "001"),
                ItemEntry("1101", "西药费"),
                ItemEntry("1201", "检查费"),
                PayChannelEntry("05", "微信"),
                MappingEntry("XY0001", "1101", date(2026, 1, 1), his_name="阿莫西林"),
            ],
            "tester",
        )


async def test_changes_bump_the_version_and_are_recorded_and_logged(db: asyncpg.Pool) -> None:
    await _setup(db)
    v1 = (await unit_versions(db, [UNIT]))[UNIT]
    assert v1 > 0
    recs = await changes(db, UNIT)
    assert {c.kind for _, c in recs} == set(ENTRY_TYPES) - {CatalogKind.BILL_CODE}
    assert all(c.op is ChangeOp.CREATE and c.actor == "tester" for _, c in recs)
    logged = await db.fetchval(
        "SELECT count(*) FROM log_entries WHERE unit_code = $1 AND op LIKE 'catalog.%'", UNIT
    )
    assert logged == len(recs)
    async with db.acquire() as conn:
        again = await upsert(conn, UNIT, [ItemEntry("1101", "西药费")], "tester")
        renamed = await upsert(conn, UNIT, [ItemEntry("1101", "西药费（口服）")], "tester")
    assert (again.unchanged, again.changed) == (1, 0)
    assert renamed.updated == 1
    [change] = renamed.changes
    assert change.before is not None and change.before["charge_name"] == "西药费"
    assert change.after is not None and change.after["charge_name"] == "西药费（口服）"
    assert (await unit_versions(db, [UNIT]))[UNIT] > v1


async def test_the_loaded_unit_maps_his_codes_by_date(db: asyncpg.Pool) -> None:
    await _setup(db)
    async with db.acquire() as conn:
        await withdraw(conn, UNIT, CatalogKind.MAPPING, "XY0001", "tester", on=date(2026, 6, 1))
        await upsert(conn, UNIT, [MappingEntry("XY0001", "1201", date(2026, 6, 1))], "tester")
        unit = (await load_units(conn, [UNIT]))[UNIT]
    assert resolve_his(unit.his_codes, "XY0001", date(2026, 5, 31)).charge_code == "1101"
    assert resolve_his(unit.his_codes, "XY0001", date(2026, 6, 1)).charge_code == "1201"
    assert (
        "not mapped on 2025-12-31"
        in resolve_his(unit.his_codes, "XY0001", date(2025, 12, 31)).error
    )
    assert unit.pay_channels == frozenset({"05"})


async def test_overlapping_mapping_periods_are_refused(db: asyncpg.Pool) -> None:
    await _setup(db)
    async with db.acquire() as conn:
        with pytest.raises(InvalidArgument, match="overlaps"):
            await upsert(conn, UNIT, [MappingEntry("XY0001", "1201", date(2026, 3, 1))], "t")
        with pytest.raises(InvalidArgument, match="unknown fiscal charge item"):
            await upsert(conn, UNIT, [MappingEntry("XY0002", "9999", date(2026, 3, 1))], "t")


async def test_a_withdrawn_item_keeps_its_row_with_an_end_date(db: asyncpg.Pool) -> None:
    await _setup(db)
    async with db.acquire() as conn:
        first = await withdraw(
            conn, UNIT, CatalogKind.CHARGE_ITEM, "1201", "t", on=date(2026, 7, 1)
        )
        second = await withdraw(
            conn, UNIT, CatalogKind.CHARGE_ITEM, "1201", "t", on=date(2026, 8, 1)
        )
        gone = await withdraw(conn, UNIT, CatalogKind.ISSUING_POINT, "001", "t")
    assert first is not None and first.after is not None
    assert first.after["valid_to"] == "2026-07-01"
    assert second is None  # already ended by then
    assert gone is not None and gone.after is not None and gone.after["enabled"] is False
    items = await list_entries(db, UNIT, CatalogKind.CHARGE_ITEM)
    assert ItemEntry("1201", "检查费", None, date(2026, 7, 1)) in items
