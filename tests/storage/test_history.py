"""History import against a real PostgreSQL: checked rows with their row and
column, nothing half-imported, deduplication, resume after an interruption,
numbers blocked in stock so reserve never leases them, bills found like any."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bench.history_data import history_rows
from engine.lifecycle import BillKey
from engine.model import BillStatus, Catalog
from engine.pipeline import Work
from engine.prepare import prepare
from engine.validation import validate
from storage.bills import get_bill, reserve
from storage.catalog import add_segment, ensure_unit
from storage.lifecycle import BillFilter, list_bills, load_original
from storage.stock.segments import identity
from tests.factories import RING, bill, catalog
from usecases import demo
from usecases.history import HistoryImport

UNIT = "T00000013"
CODE = "44060118"  # an old outpatient bill code
FIRST = 9_990_000_001


def rows(n: int, **kw: Any) -> list[dict[str, Any]]:
    return list(history_rows(n, unit_code=UNIT, bill_code=CODE, first_no=FIRST, **kw))


def write(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items), "utf-8")
    return path


async def setup(db: asyncpg.Pool) -> None:
    [u] = catalog().units.values()
    await ensure_unit(
        db, unit_code=UNIT, unit_name="历史测试医院",
        issuing_points=list(demo.ISSUING_POINTS),
        charge_codes=list(u.charge_codes.items()),
        bill_codes=[(t, c, c) for t, c in u.bill_codes.items()],
    )  # fmt: skip


async def test_a_file_is_imported_searchable_logged_and_balanced(
    db: asyncpg.Pool, tmp_path: Path
) -> None:
    await setup(db)
    items = rows(120)
    f = write(tmp_path / "h.jsonl", items)
    res = await HistoryImport(db, RING, batch=50).run(f, operator="迁移员")
    assert (res.imported, res.rejected, res.duplicates) == (120, 0, 0)
    # Found by number and by serial, with its request and document.
    first = items[0]
    got = await get_bill(db, BillKey.number(CODE, first["bill_no"]), RING)
    assert got is not None and got.origin == "history" and got.status is BillStatus.ISSUED
    assert got.check_code == first["check_code"]
    assert got.bus_no == first["bill"]["bus_no"]
    assert json.loads(got.canonical)["bill_no"] == first["bill_no"]  # opened
    assert await get_bill(db, BillKey.serial(UNIT, first["bill"]["bus_no"]), RING) is not None
    # Red-flushed in the old system: the original red_flushed, its red bill pointing at it.
    red = items[50]
    assert red.get("red_of")
    red_bill = await get_bill(db, BillKey.number(CODE, red["bill_no"]), RING)
    assert red_bill is not None and red_bill.total_fen < 0
    assert red_bill.red_of == f"{CODE}/{red['red_of']['bill_no']}"
    flushed = await get_bill(db, BillKey.number(CODE, red["red_of"]["bill_no"]), RING)
    assert flushed is not None and flushed.status is BillStatus.RED_FLUSHED
    # Searchable by payer at its issuing point.
    page, _ = await list_bills(
        db, BillFilter(UNIT, "001", payer_id_card_no=first["bill"]["payer"]["id_card_no"]), RING
    )
    assert [b.bill_no for b in page] == [first["bill_no"]]
    # Each bill a leaf of the transparency log; the previous system's signatures kept.
    assert await db.fetchval(
        "SELECT count(*) FROM log_entries WHERE op = 'bill.history_import' AND unit_code = $1", UNIT
    ) == 120  # fmt: skip
    assert await db.fetchval(
        "SELECT count(*) FROM history_bills h JOIN bills b ON b.id = h.bill_id"
        " WHERE b.unit_code = $1 AND h.unit_signature IS NOT NULL",
        UNIT,
    ) == sum(1 for r in items if "unit_signature" in r)  # fmt: skip
    # Numbers outside every segment entered stock used up; the identity holds.
    [ident] = [i for i in await identity(db, UNIT) if i.bill_code == CODE]
    assert ident.balanced and ident.issued == 120 and ident.available == 0
    assert ident.bills == 120
    # The charge items and pay channels of every bill, whole.
    assert await db.fetchval(
        "SELECT count(*) FROM bills b WHERE b.unit_code = $1 AND b.total_fen <>"
        " (SELECT sum(amt_fen) FROM bill_charge_items i WHERE i.bill_id = b.id)",
        UNIT,
    ) == 0  # fmt: skip


async def test_running_the_file_again_imports_nothing(db: asyncpg.Pool, tmp_path: Path) -> None:
    await setup(db)
    f = write(tmp_path / "h.jsonl", rows(40))
    imp = HistoryImport(db, RING, batch=25)
    assert (await imp.run(f, operator="迁移员")).imported == 40
    again = await imp.run(f, operator="迁移员")
    assert again.already_done and again.imported == 0
    checked = await imp.run(f, operator="迁移员", again=True)
    assert (checked.imported, checked.existing, checked.rejected) == (0, 40, 0)
    # Another file with the same bills and one more: only the new one comes in.
    more = write(tmp_path / "more.jsonl", rows(41))
    res = await imp.run(more, operator="迁移员")
    assert (res.imported, res.existing) == (1, 40)
    assert await db.fetchval("SELECT count(*) FROM bills WHERE unit_code = $1", UNIT) == 41


async def test_bad_rows_are_reported_by_row_and_column_and_not_half_imported(
    db: asyncpg.Pool, tmp_path: Path
) -> None:
    await setup(db)
    items = rows(10)
    items[1]["bill"]["charge_items"][0]["amt"] = "12.345"  # row 2
    items[2]["bill_no"] = "12345"  # row 3
    items[3]["bill"]["place_code"] = "404"  # row 4: unknown issuing point
    items[4] = {**items[5], "check_code": "ffffff"}  # row 5: row 6's number, other content
    items[6] = dict(items[0])  # row 7: a repeat of row 1, skipped
    items[7]["issued_at"] = "yesterday"  # row 8
    f = write(tmp_path / "bad.jsonl", items)
    (tmp_path / "garbage").write_text("")
    with f.open("a", encoding="utf-8") as out:
        out.write("{not json\n")  # row 11
    with f.open("ab") as raw:
        raw.write(b'{"bill_no": "\xff"}\n')  # row 12: not UTF-8
    imp = HistoryImport(db, RING)
    res = await imp.run(f, operator="迁移员")
    found = {(r.row_no, r.column) for r in await _rejects(db, res.job_id)}
    assert found == {
        (2, "bill.charge_items[0].amt"),
        (3, "bill_no"),
        (4, "bill.place_code"),
        (6, "bill_no"),
        (8, "issued_at"),
        (11, ""),
        (12, ""),
    }, found
    assert (res.imported, res.duplicates, res.rejected) == (4, 1, 7)
    # Row 5 came first with that number, so row 6 is the one refused.
    n5 = await get_bill(db, BillKey.number(CODE, items[4]["bill_no"]), RING)
    assert n5 is not None and n5.check_code == "ffffff"
    # Nothing of a refused row is anywhere: no bill, no items, no leaf.
    for r in (items[1], items[3], items[7]):
        assert await get_bill(db, BillKey.serial(UNIT, r["bill"]["bus_no"]), RING) is None
    assert await db.fetchval(
        "SELECT count(*) FROM bill_charge_items i JOIN bills b ON b.id = i.bill_id"
        " WHERE b.unit_code = $1 AND b.bus_no = $2",
        UNIT, items[1]["bill"]["bus_no"],
    ) == 0  # fmt: skip
    report = tmp_path / "rejects.csv"
    assert await imp.report(res.job_id, report) == 7
    lines = report.read_text("utf-8").splitlines()
    assert lines[0] == "row,column,reason" and lines[1].startswith("2,bill.charge_items[0].amt,")


async def _rejects(db: asyncpg.Pool, job_id: int) -> list[Any]:
    from storage.history import rejects

    return await rejects(db, job_id)


async def test_an_interrupted_import_resumes_where_it_stopped(
    db: asyncpg.Pool, tmp_path: Path
) -> None:
    await setup(db)
    f = write(tmp_path / "h.jsonl", rows(100))
    calls = 0

    def crash(phase: str, done: int, total: int) -> None:
        nonlocal calls
        if phase == "import" and done > 0:
            calls += 1
            if calls == 2:
                raise KeyboardInterrupt  # as an operator's Ctrl-C between batches

    with pytest.raises(KeyboardInterrupt):
        await HistoryImport(db, RING, batch=30).run(f, operator="迁移员", progress=crash)
    half = await db.fetchval("SELECT count(*) FROM bills WHERE unit_code = $1", UNIT)
    assert half == 60  # two batches committed, whole
    res = await HistoryImport(db, RING, batch=30).run(f, operator="迁移员")
    assert res.resumed and res.imported == 40 and res.imported_total == 100
    assert await db.fetchval("SELECT count(*) FROM bills WHERE unit_code = $1", UNIT) == 100
    assert await db.fetchval(
        "SELECT count(*) FROM log_entries WHERE op = 'bill.history_import' AND unit_code = $1", UNIT
    ) == 100  # fmt: skip


def unit_catalog() -> Catalog:
    [u] = catalog().units.values()
    return Catalog(units={UNIT: replace(u, unit_code=UNIT, bill_codes={"02": CODE})})


async def test_numbers_in_a_live_segment_are_never_leased_again(
    db: asyncpg.Pool, tmp_path: Path
) -> None:
    """The previous system used numbers of a segment we hold: they become a used
    piece of it, and reserve leases around them."""
    await setup(db)
    await db.execute(
        "UPDATE bill_codes SET bill_code = $2 WHERE unit_code = $1 AND bus_type = '02'", UNIT, CODE
    )
    await add_segment(
        db, unit_code=UNIT, place_code="001", bill_code=CODE, start_no=FIRST,
        end_no=FIRST + 29, grant_id="G-T-H",
    )  # fmt: skip
    items = [r for r in rows(20) if not r.get("red_of")][:10]
    used = [FIRST + 5 + i for i in range(len(items))]
    for r, no in zip(items, used, strict=True):
        r["bill_no"] = f"{no:010d}"
        r["status"] = "issued"
        r["bill"]["place_code"] = "002"
    res = await HistoryImport(db, RING).run(write(tmp_path / "h.jsonl", items), operator="迁移员")
    assert res.imported == 10 and res.ranges_added == 0
    fresh = [
        (i, prepare(validate(replace(bill(900 + i), unit_code=UNIT), unit_catalog())))
        for i in range(20)
    ]
    out = await reserve(db, fresh, ring=RING)
    leased = sorted(int(w.bill_no) for w in out.values() if isinstance(w, Work))
    assert leased == [FIRST + i for i in range(5)] + [FIRST + 15 + i for i in range(15)]
    [ident] = [i for i in await identity(db, UNIT) if i.bill_code == CODE]
    assert ident.balanced and ident.available == 0 and ident.bills == 30
    # A history bill of the live segment is red-flushable like a back entry.
    original = await load_original(db, BillKey.number(CODE, f"{used[0]:010d}"), RING)
    assert original is not None and original.state.origin == "history"


async def test_the_shipped_samples_import_cleanly(db: asyncpg.Pool) -> None:
    """samples/history: the JSON-lines file (a red-flushed bill and its red bill
    included) and the CSV file of the demo hospital."""
    from storage.catalog import ensure_unit as ensure

    [u] = catalog().units.values()
    await ensure(
        db, unit_code=demo.UNIT_CODE, unit_name=demo.UNIT_NAME,
        issuing_points=list(demo.ISSUING_POINTS), charge_codes=list(u.charge_codes.items()),
        bill_codes=[(t, c, c) for t, c in u.bill_codes.items()],
    )  # fmt: skip
    samples = Path(__file__).parents[2] / "samples" / "history"
    imp = HistoryImport(db, RING)
    jsonl = await imp.run(samples / "bills.jsonl", operator="迁移员")
    assert (jsonl.imported, jsonl.rejected) == (6, 0)
    csv_ = await imp.run(samples / "bills.csv", operator="迁移员")
    assert (csv_.imported, csv_.rejected) == (3, 0)


async def test_csv_rows_are_refused_by_their_header_column(
    db: asyncpg.Pool, tmp_path: Path
) -> None:
    await setup(db)
    samples = Path(__file__).parents[2] / "samples" / "history"
    lines = (samples / "bills.csv").read_text("utf-8").splitlines()
    lines = [lines[0]] + [line.replace("440823001", UNIT) for line in lines[1:]]
    lines[1] = lines[1].replace(",黄敏,", ",,")  # payer_name empty
    lines[2] = lines[2].replace("|", "|x|", 1)  # a charge item's amount is its name
    f = tmp_path / "h.csv"
    f.write_text("\n".join(lines) + "\n", "utf-8")
    res = await HistoryImport(db, RING).run(f, operator="迁移员")
    found = {(r.row_no, r.column) for r in await _rejects(db, res.job_id)}
    assert (1, "payer_name") in found and any(r == 2 and c == "charge_items" for r, c in found)
    assert res.imported == 1


async def test_quotes_and_backslashes_survive_the_copy(db: asyncpg.Pool, tmp_path: Path) -> None:
    await setup(db)
    [row] = rows(1)
    row["bill"]["payer"]["name"] = 'O"Brien\\张'
    row["bill"]["charge_items"][0]["charge_name"] = '检查"费\\{x,y}'
    await HistoryImport(db, RING).run(write(tmp_path / "q.jsonl", [row]), operator="迁移员")
    got = await get_bill(db, BillKey.number(CODE, row["bill_no"]), RING)
    assert got is not None and got.source is not None
    assert got.source.payer.name == 'O"Brien\\张'
    assert await db.fetchval(
        "SELECT charge_name FROM bill_charge_items WHERE bill_id = $1", got.bill_id
    ) == '检查"费\\{x,y}'  # fmt: skip


async def test_an_import_interrupted_while_staging_resumes_after_the_last_chunk(
    db: asyncpg.Pool, tmp_path: Path
) -> None:
    await setup(db)
    items = rows(45)
    items[30]["bill_no"] = "x"  # a refused row in the second part
    f = write(tmp_path / "h.jsonl", items)

    def crash(phase: str, done: int, total: int) -> None:
        if phase == "stage" and done < total:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await HistoryImport(db, RING, chunk=20).run(f, operator="迁移员", progress=crash)
    assert await db.fetchval("SELECT count(*) FROM bills WHERE unit_code = $1", UNIT) == 0
    res = await HistoryImport(db, RING, chunk=20).run(f, operator="迁移员")
    assert res.resumed and (res.imported, res.rejected) == (44, 1)


async def test_a_number_voided_in_our_stock_refuses_its_row(
    db: asyncpg.Pool, tmp_path: Path
) -> None:
    await setup(db)
    seg = await add_segment(
        db, unit_code=UNIT, place_code="001", bill_code=CODE, start_no=FIRST,
        end_no=FIRST + 9, grant_id="G-T-V",
    )  # fmt: skip
    await db.execute("UPDATE segments SET status = 'voided' WHERE id = $1", seg)
    items = rows(12)  # numbers FIRST .. FIRST + 11: the first ten were voided here
    res = await HistoryImport(db, RING).run(write(tmp_path / "v.jsonl", items), operator="迁移员")
    found = await _rejects(db, res.job_id)
    assert {(r.row_no, r.column) for r in found} == {(n, "bill_no") for n in range(1, 11)}
    assert "voided" in found[0].reason and res.imported == 2
