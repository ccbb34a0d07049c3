"""Reference data and segments against a real PostgreSQL (storage.catalog)."""

from __future__ import annotations

import asyncpg
import pytest

from storage.catalog import PAY_CHANNELS, add_segment, ensure_unit, load_catalog, stock_summary
from storage.stock.segments import identity

UNIT = "T00000001"
BILL_CODE = "99000001"

# Set by the first isolation test, checked by the second: the rollback is real.
_written: list[str] = []


async def unit(db: asyncpg.Pool, code: str = UNIT, name: str = "test hospital") -> None:
    await ensure_unit(
        db,
        unit_code=code,
        unit_name=name,
        issuing_points=[("001", "window 1"), ("002", "window 2")],
        charge_codes=[("C01", "consultation")],
        bill_codes=[("02", BILL_CODE, "outpatient bill")],
    )


async def test_ensure_unit_is_loaded_back_as_the_catalog(db: asyncpg.Pool) -> None:
    await unit(db)
    u = (await load_catalog(db)).units[UNIT]
    assert u.unit_name == "test hospital"
    assert u.issuing_points == {"001": True, "002": True}
    assert u.charge_codes == {"C01": "consultation"}
    assert u.bill_codes == {"02": BILL_CODE}
    assert u.pay_channels == frozenset(PAY_CHANNELS)


async def test_ensure_unit_is_idempotent_and_renames(db: asyncpg.Pool) -> None:
    await unit(db)
    await unit(db, name="renamed")
    assert (await load_catalog(db)).units[UNIT].unit_name == "renamed"
    assert await db.fetchval("SELECT count(*) FROM issuing_points WHERE unit_code = $1", UNIT) == 2


async def test_a_segment_is_stock_and_keeps_the_identity(db: asyncpg.Pool) -> None:
    await unit(db)
    await add_segment(
        db, unit_code=UNIT, place_code="001", bill_code=BILL_CODE,
        start_no=1, end_no=100, grant_id="G-T-1",
    )  # fmt: skip
    [summary] = await stock_summary(db, UNIT)
    assert summary == {
        "place_code": "001", "bill_code": BILL_CODE, "granted": 100, "leased": 0, "available": 100
    }  # fmt: skip
    [ident] = await identity(db, UNIT)
    assert (ident.granted, ident.issued, ident.available) == (100, 0, 100)
    assert ident.balanced


async def test_overlapping_segments_are_refused_by_the_database(db: asyncpg.Pool) -> None:
    await unit(db)
    await add_segment(
        db, unit_code=UNIT, place_code="001", bill_code=BILL_CODE,
        start_no=1, end_no=100, grant_id="G-T-1",
    )  # fmt: skip
    with pytest.raises(asyncpg.ExclusionViolationError):
        await add_segment(
            db, unit_code=UNIT, place_code="002", bill_code=BILL_CODE,
            start_no=100, end_no=200, grant_id="G-T-2",
        )  # fmt: skip
    # The refused insert rolled back to its savepoint: the test's transaction goes on.
    [ident] = await identity(db, UNIT)
    assert ident.granted == 100


async def test_rollback_isolation_1_writes_a_unit(db: asyncpg.Pool) -> None:
    await unit(db, code="T00000999")
    assert "T00000999" in (await load_catalog(db)).units
    _written.append("T00000999")


async def test_rollback_isolation_2_the_unit_is_gone(db: asyncpg.Pool) -> None:
    if not _written:
        pytest.skip("runs after test_rollback_isolation_1_writes_a_unit")
    assert "T00000999" not in (await load_catalog(db)).units
    assert await db.fetchval("SELECT count(*) FROM units WHERE unit_code = $1", _written[0]) == 0
