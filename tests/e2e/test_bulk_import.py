"""Bulk issuance from a file on the session stack (`ebill import charges`): every
row issued through the engine with a per-row result file, bad rows reported by
row and column, and the same file run again issues nothing twice."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import openpyxl
import pytest

from ops.stack import Stack
from usecases import demo
from usecases.bulk import CHARGE_COLUMNS

pytestmark = pytest.mark.slow


def run_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ebill.cli", "import", "charges", *args],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def row(bus_no: str, amount: str, **changes: str) -> dict[str, str]:
    r = {
        "unit_code": demo.UNIT_CODE,
        "place_code": "001",
        "bus_no": bus_no,
        "bus_type": "02",
        "bus_time": "20261123093000000",
        "payer_name": "张伟",
        "payer_type": "1",
        "payer_id_card_no": "440823198601010011",
        "payer_tel": "13800000011",
        "cashier": "收费员01",
        "total_amount": amount,
        "charge_items": f"A03|检查费|{amount}",
        "pay_channels": f"04|{amount}",
    }
    r.update(changes)
    return r


def results(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


async def test_a_csv_is_issued_once_with_a_result_per_row(
    stack: Stack, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    tag = f"BK{os.getpid()}"
    rows = [row(f"{tag}x{i}", f"{10 + i}.50") for i in range(4)]
    rows.insert(2, row(f"{tag}bad1", "9.00", charge_items="Z99|不存在|9.00"))  # row 3
    rows.append(row(f"{tag}bad2", "9.00", payer_tel="x"))  # row 6
    rows.append(row(f"{tag}bad3", "9.00", charge_items="A03|检查费|9.00|9|1|次|extra"))  # row 7
    f = tmp_path / "charges.csv"
    with f.open("w", encoding="utf-8", newline="") as out:
        w = csv.DictWriter(out, fieldnames=CHARGE_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    out_file = tmp_path / "results.csv"
    run = run_cli(stack, str(f), "--result", str(out_file))
    assert run.returncode == 1, run.stdout + run.stderr  # some rows failed
    first = results(out_file)
    assert [r["result"] for r in first] == ["issued"] * 2 + ["error"] + ["issued"] * 2 + [
        "error"
    ] * 2
    errors = {r["row"]: r["column"] for r in first if r["result"] == "error"}
    assert errors == {"3": "charge_items", "6": "payer_tel", "7": "charge_items"}, first
    assert all(
        r["bill_no"] and r["bill_code"] == "44060119" for r in first if r["result"] == "issued"
    )

    # The same file again: the same bills, nothing issued twice.
    run = run_cli(stack, str(f), "--result", str(out_file))
    second = results(out_file)
    assert [r["result"] for r in second if r["result"] != "error"] == ["already issued"] * 4
    assert [(r["bill_code"], r["bill_no"]) for r in second if r["result"] != "error"] == [
        (r["bill_code"], r["bill_no"]) for r in first if r["result"] != "error"
    ]
    assert await pool.fetchval("SELECT count(*) FROM bills WHERE bus_no LIKE $1", f"{tag}%") == 4


async def test_an_xlsx_with_amounts_typed_as_numbers(stack: Stack, tmp_path: Path) -> None:
    tag = f"BX{os.getpid()}"
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(list(CHARGE_COLUMNS))
    for i, amount in enumerate((12.3, 45)):
        r = row(f"{tag}x{i}", str(amount))
        values: list[object] = [r.get(c, "") for c in CHARGE_COLUMNS]
        values[CHARGE_COLUMNS.index("total_amount")] = amount  # a number cell, as Excel keeps it
        ws.append(values)
    f = tmp_path / "charges.xlsx"
    wb.save(f)
    out_file = tmp_path / "results.csv"
    run = run_cli(stack, str(f), "--result", str(out_file))
    assert run.returncode == 0, run.stdout + run.stderr
    assert [r["result"] for r in results(out_file)] == ["issued", "issued"]
