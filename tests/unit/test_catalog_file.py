"""Reading a hospital's base-data file: the sample reads whole, and every bad
cell is reported by file, row and column (YAML, CSV and XLSX)."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import openpyxl
import pytest

from engine.catalog import CashierEntry, MappingEntry
from usecases.catalog_file import FileErrors, read_base_data

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "hospital"


def test_the_sample_hospital_reads_whole() -> None:
    data = read_base_data(SAMPLE / "hospital.yaml")
    assert data.unit.unit_code == "350203001"
    assert CashierEntry("SF009", "吴建国", "001", False) in data.entries
    assert MappingEntry("GH-PT", "0303", date(2026, 1, 1), None, "普通门诊挂号") in data.entries
    assert len(data.ordered()) == 49


def _copy(tmp_path: Path) -> Path:
    for f in SAMPLE.iterdir():
        shutil.copy(f, tmp_path / f.name)
    return tmp_path / "hospital.yaml"


def test_bad_cells_are_reported_by_file_row_and_column(tmp_path: Path) -> None:
    main = _copy(tmp_path)
    (tmp_path / "cashiers.csv").write_text(
        "cashier_code,name,place_code,enabled\nSF001,陈丽华,001,是\nSF001,重复,099,也许\n",
        encoding="utf-8",
    )
    (tmp_path / "charge_items.csv").write_text(
        "charge_code,charge_name,valid_from,valid_to\n0101,西药费,2020-01-01,\n0102,,2020-13-01,\n",
        encoding="utf-8",
    )
    with pytest.raises(FileErrors) as got:
        read_base_data(main)
    found = {(e.file, e.row, e.column) for e in got.value.errors}
    assert ("cashiers.csv", 3, "cashier_code (A)") in found  # repeats row 2
    assert ("cashiers.csv", 3, "place_code (C)") in found  # no such point
    assert ("cashiers.csv", 3, "enabled (D)") in found  # not yes/no
    assert ("charge_items.csv", 3, "charge_name (B)") in found  # required
    assert ("charge_items.csv", 3, "valid_from (C)") in found  # not a date
    # Mappings naming items no longer in the file are each reported on their row.
    assert any(e.file == "mappings.csv" and e.column == "charge_code (C)" for e in got.value.errors)


def test_an_xlsx_sheet_is_read_with_its_rows_and_columns(tmp_path: Path) -> None:
    main = _copy(tmp_path)
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "对照"
    ws.append(["his_code", "his_name", "charge_code", "valid_from", "valid_to"])
    ws.append(["XY.0001", "阿莫西林胶囊", "0101", "2024-01-01", None])
    ws.append(["XY.0001", "阿莫西林胶囊", "0102", "2024-06-01", None])  # overlaps row 2
    wb.save(tmp_path / "his.xlsx")
    text = main.read_text(encoding="utf-8").replace(
        "mappings: mappings.csv", "mappings: {file: his.xlsx, sheet: 对照}"
    )
    main.write_text(text, encoding="utf-8")
    with pytest.raises(FileErrors) as got:
        read_base_data(main)
    [err] = got.value.errors
    assert (err.file, err.row, err.column) == ("his.xlsx[对照]", 3, "valid_from (D)")
    assert "overlaps row 2" in err.message


def test_unknown_tables_and_columns_are_named(tmp_path: Path) -> None:
    main = tmp_path / "h.yaml"
    main.write_text(
        "unit: {unit_code: '350203001', unit_name: 测试}\n"
        "issuing_points:\n  - {place_code: '001', name: 窗口, colour: red}\n"
        "printers: []\n",
        encoding="utf-8",
    )
    with pytest.raises(FileErrors) as got:
        read_base_data(main)
    cols = {(e.row, e.column) for e in got.value.errors}
    assert (1, "colour") in cols and (0, "printers") in cols
