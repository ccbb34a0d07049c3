"""Blank paper ranges of an issuing point against a real PostgreSQL (storage.paper)."""

from __future__ import annotations

import asyncpg
import pytest

from engine.errors import AlreadyExists, NotFound
from storage.catalog import ensure_unit
from storage.paper import paper_stock, receive_paper, void_blank

UNIT = "T00000002"
PAPER = "99000002"


@pytest.fixture
async def point(db: asyncpg.Pool) -> asyncpg.Pool:
    await ensure_unit(
        db, unit_code=UNIT, unit_name="paper test", issuing_points=[("001", "window")],
        charge_codes=[], bill_codes=[],
    )  # fmt: skip
    return db


async def receive(db: asyncpg.Pool, start: int, end: int, place: str = "001") -> int:
    return await receive_paper(
        db, unit_code=UNIT, place_code=place, paper_code=PAPER,
        start_no=start, end_no=end, operator="clerk",
    )  # fmt: skip


async def test_received_paper_starts_at_its_first_number(point: asyncpg.Pool) -> None:
    stock_id = await receive(point, 1001, 1100)
    [r] = await paper_stock(point, UNIT, "001")
    assert (r.id, r.start_no, r.end_no, r.next_no, r.remaining) == (stock_id, 1001, 1100, 1001, 100)


async def test_voided_blanks_move_the_next_number(point: asyncpg.Pool) -> None:
    await receive(point, 1001, 1100)
    await void_blank(
        point, unit_code=UNIT, place_code="001", paper_code=PAPER,
        start_no=1001, end_no=1003, operator="clerk", reason="torn",
    )  # fmt: skip
    [r] = await paper_stock(point, UNIT, "001")
    assert (r.next_no, r.remaining) == (1004, 97)


async def test_overlapping_paper_is_refused_and_nothing_is_written(point: asyncpg.Pool) -> None:
    await receive(point, 1001, 1100)
    with pytest.raises(AlreadyExists):
        await receive(point, 1100, 1200)
    assert len(await paper_stock(point, UNIT, "001")) == 1
    await receive(point, 1101, 1200)  # adjacent is fine
    assert len(await paper_stock(point, UNIT, "001")) == 2


async def test_paper_for_an_unknown_point_is_refused(point: asyncpg.Pool) -> None:
    with pytest.raises(NotFound):
        await receive(point, 1, 10, place="777")
