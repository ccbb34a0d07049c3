"""A hospital's base-data file (基础数据) read into :class:`usecases.catalog.BaseData`.

The file is YAML: the unit inline, and each table (issuing_points, cashiers,
charge_items, bill_codes, pay_channels, mappings) either inline as a list of
rows or as the name of a CSV file or an XLSX sheet beside it (``mappings:
mappings.xlsx`` or ``{file: his.xlsx, sheet: 对照}``), as hospitals keep their
item lists in spreadsheets. Every problem is reported with its file, row and
column (rows as the spreadsheet numbers them, the header being row 1; inline
rows from 1), all of them in one pass, and nothing is returned unless the whole
file is good: an import never starts from a half-read file.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from engine.catalog import (
    BillCodeEntry,
    CashierEntry,
    Entry,
    ItemEntry,
    MappingEntry,
    PayChannelEntry,
    Period,
    PointEntry,
    UnitEntry,
)
from engine.model import BUS_TYPES
from usecases.catalog import BaseData

__all__ = ["TABLES", "FileError", "FileErrors", "read_base_data"]

_CODE = re.compile(r"^[A-Za-z0-9_\-]{1,20}$")
_ITEM = re.compile(r"^[A-Za-z0-9]{1,20}$")
_HIS = re.compile(r"^[A-Za-z0-9_\-./]{1,50}$")
_UNIT = re.compile(r"^[0-9A-Za-z]{6,20}$")
_TRUE = {"", "1", "true", "yes", "y", "是", "启用", "t"}
_FALSE = {"0", "false", "no", "n", "否", "停用", "f"}

# table -> (required columns, optional columns)
TABLES: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "issuing_points": (("place_code", "name"), ("enabled",)),
    "cashiers": (("cashier_code", "name"), ("place_code", "enabled")),
    "charge_items": (("charge_code", "charge_name"), ("valid_from", "valid_to")),
    "bill_codes": (("bus_type", "bill_code", "bill_name"), ("enabled",)),
    "pay_channels": (("code", "name"), ("enabled",)),
    "mappings": (("his_code", "charge_code", "valid_from"), ("his_name", "valid_to")),
}
UNIT_KEYS = ("unit_code", "unit_name", "credit_code", "region_code", "region_name", "nature")


@dataclass(frozen=True, slots=True)
class FileError:
    file: str
    row: int
    column: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.row:
            where += f" row {self.row}"
        if self.column:
            where += f" column {self.column}"
        return f"{where}: {self.message}"


class FileErrors(Exception):
    """Everything wrong with a base-data file."""

    def __init__(self, errors: list[FileError]) -> None:
        super().__init__(f"{len(errors)} problem(s) in the base-data file")
        self.errors = errors


@dataclass(frozen=True, slots=True)
class _Row:
    file: str
    row: int
    cells: Mapping[str, str]
    letters: Mapping[str, str]

    def col(self, name: str) -> str:
        letter = self.letters.get(name, "")
        return f"{name} ({letter})" if letter else name


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.date().isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def _letter(i: int) -> str:
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out


def _sheet_rows(path: Path, sheet: str, shown: str) -> Iterator[_Row]:
    if path.suffix.lower() == ".xlsx":
        import openpyxl  # only when a sheet is given: it takes a while to import

        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        ws = wb[sheet] if sheet else wb.worksheets[0]
        rows = [[_text(v) for v in r] for r in ws.iter_rows(values_only=True)]
        wb.close()
        shown = f"{shown}[{ws.title}]"
    else:
        with path.open(encoding="utf-8-sig", newline="") as f:
            rows = [[c.strip() for c in r] for r in csv.reader(f)]
    if not rows:
        return
    header = [h.strip().lower() for h in rows[0]]
    letters = {h: _letter(i) for i, h in enumerate(header) if h}
    for n, r in enumerate(rows[1:], start=2):
        if not any(r):
            continue  # blank lines between groups of rows
        cells = {h: (r[i] if i < len(r) else "") for i, h in enumerate(header) if h}
        yield _Row(shown, n, cells, letters)


class _Reader:
    def __init__(self, base: Path, shown: str) -> None:
        self.base = base
        self.shown = shown
        self.errors: list[FileError] = []

    def err(self, file: str, row: int, column: str, message: str) -> None:
        self.errors.append(FileError(file, row, column, message))

    def rows(self, table: str, spec: Any) -> list[_Row]:
        if spec is None:
            return []
        if isinstance(spec, list):
            out = []
            for i, item in enumerate(spec, start=1):
                if not isinstance(item, dict):
                    self.err(self.shown, 0, f"{table}[{i}]", "must be a mapping of column: value")
                    continue
                cells = {str(k).lower(): _text(v) for k, v in item.items()}
                out.append(_Row(f"{self.shown} {table}", i, cells, {}))
            return out
        file, sheet = "", ""
        if isinstance(spec, str):
            file = spec
        elif isinstance(spec, dict):
            file, sheet = str(spec.get("file", "")), str(spec.get("sheet", ""))
        if not file:
            self.err(self.shown, 0, table, "must be a list of rows, a file name or {file, sheet}")
            return []
        path = self.base / str(file)
        if not path.is_file():
            self.err(self.shown, 0, table, f"file {file} not found beside the base-data file")
            return []
        try:
            return list(_sheet_rows(path, str(sheet), str(file)))
        except (KeyError, OSError, ValueError, UnicodeDecodeError) as exc:
            self.err(str(file), 0, "", f"cannot be read: {exc}")
            return []

    def check_columns(self, table: str, rows: list[_Row]) -> None:
        """A sheet's header once (row 1); inline rows each, for unknown keys."""
        required, optional = TABLES[table]
        expected = ", ".join(required + optional)
        if rows and rows[0].letters:
            r = rows[0]
            for c in required:
                if c not in r.letters:
                    self.err(r.file, 1, c, "column is missing")
            for c in r.letters:
                if c not in required + optional:
                    self.err(r.file, 1, r.col(c), f"unknown column (expected {expected})")
            return
        for r in rows:
            for c in r.cells:
                if c not in required + optional:
                    self.err(r.file, r.row, c, f"unknown column (expected {expected})")

    def need(
        self, r: _Row, name: str, pattern: re.Pattern[str] | None = None, form: str = ""
    ) -> str:
        v = r.cells.get(name, "")
        if not v and r.letters and name not in r.letters:
            pass  # the whole column is missing: said once, at the header
        elif not v:
            self.err(r.file, r.row, r.col(name), "is required")
        elif len(v) > 100:
            self.err(r.file, r.row, r.col(name), "must be at most 100 characters")
        elif pattern is not None and not pattern.match(v):
            self.err(r.file, r.row, r.col(name), f"must be {form}, got {v[:32]!r}")
        return v

    def flag(self, r: _Row, name: str) -> bool:
        v = r.cells.get(name, "").lower()
        if v in _TRUE:
            return True
        if v not in _FALSE:
            self.err(r.file, r.row, r.col(name), f"must be yes/no (是/否), got {v[:32]!r}")
        return False

    def day(self, r: _Row, name: str, required: bool = False) -> date | None:
        v = r.cells.get(name, "")
        if not v:
            if required:
                self.err(r.file, r.row, r.col(name), "is required")
            return None
        for fmt in ("%Y-%m-%d", "%Y%m%d", "%Y/%m/%d"):
            try:
                return datetime.strptime(v, fmt).date()
            except ValueError:
                continue
        self.err(r.file, r.row, r.col(name), f"must be a date yyyy-MM-dd, got {v[:32]!r}")
        return None

    def unique(self, rows: list[_Row], key: Callable[[_Row], object], column: str) -> None:
        seen: dict[object, int] = {}
        for r in rows:
            k = key(r)
            if k in seen:
                self.err(r.file, r.row, r.col(column), f"repeats row {seen[k]}")
            else:
                seen[k] = r.row


def read_base_data(path: Path, known_items: Collection[str] = ()) -> BaseData:
    """Read and check a base-data file; FileErrors lists every problem.
    ``known_items``: fiscal codes the unit already has (synced), which mappings
    may name besides the file's own charge_items."""
    rd = _Reader(path.parent, path.name)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise FileErrors([FileError(path.name, 0, "", f"cannot be read: {exc}")]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        row = mark.line + 1 if mark is not None else 0
        raise FileErrors([FileError(path.name, row, "", f"is not YAML: {exc}")]) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("unit"), dict):
        raise FileErrors([FileError(path.name, 0, "unit", "the file must have a unit: mapping")])
    u = {k: _text(v) for k, v in doc["unit"].items()}
    unit_row = _Row(f"{path.name} unit", 0, u, {})
    code = rd.need(unit_row, "unit_code", _UNIT, "6-20 letters or digits")
    name = rd.need(unit_row, "unit_name")
    for k in u:
        if k not in UNIT_KEYS:
            rd.err(unit_row.file, 0, k, f"unknown key (expected {', '.join(UNIT_KEYS)})")
    unit = UnitEntry(code, name, {k: v for k, v in u.items() if k in UNIT_KEYS[2:] and v})
    for k in doc:
        if k != "unit" and k not in TABLES:
            rd.err(path.name, 0, str(k), f"unknown table (expected unit, {', '.join(TABLES)})")
    tables = {t: rd.rows(t, doc.get(t)) for t in TABLES}
    for t, rows in tables.items():
        rd.check_columns(t, rows)
    entries: list[Entry] = []
    points = tables["issuing_points"]
    rd.unique(points, lambda r: r.cells.get("place_code"), "place_code")
    for r in points:
        code_ = rd.need(r, "place_code", _CODE, "1-20 letters, digits, '_' or '-'")
        entries.append(PointEntry(code_, rd.need(r, "name"), rd.flag(r, "enabled")))
    known_points = {r.cells.get("place_code", "") for r in points}
    rd.unique(tables["cashiers"], lambda r: r.cells.get("cashier_code"), "cashier_code")
    for r in tables["cashiers"]:
        place = r.cells.get("place_code", "")
        if place and place not in known_points:
            rd.err(r.file, r.row, r.col("place_code"), f"{place!r} is not among issuing_points")
        entries.append(
            CashierEntry(
                rd.need(r, "cashier_code", _CODE, "1-20 letters, digits, '_' or '-'"),
                rd.need(r, "name"),
                place,
                rd.flag(r, "enabled"),
            )
        )
    items = tables["charge_items"]
    rd.unique(items, lambda r: r.cells.get("charge_code"), "charge_code")
    for r in items:
        lo, hi = rd.day(r, "valid_from"), rd.day(r, "valid_to")
        if lo and hi and hi <= lo:
            rd.err(r.file, r.row, r.col("valid_to"), "must be after valid_from")
        entries.append(
            ItemEntry(
                rd.need(r, "charge_code", _ITEM, "1-20 letters or digits"),
                rd.need(r, "charge_name"),
                lo,
                hi,
            )
        )
    known_items = {r.cells.get("charge_code", "") for r in items} | set(known_items)
    rd.unique(tables["bill_codes"], lambda r: r.cells.get("bus_type"), "bus_type")
    for r in tables["bill_codes"]:
        bus = r.cells.get("bus_type", "")
        if bus and bus not in BUS_TYPES:
            known = ", ".join(BUS_TYPES)
            rd.err(r.file, r.row, r.col("bus_type"), f"unknown business type {bus!r} ({known})")
        entries.append(
            BillCodeEntry(
                rd.need(r, "bus_type"),
                rd.need(r, "bill_code", re.compile(r"^[0-9]{8}$"), "8 digits"),
                rd.need(r, "bill_name"),
                rd.flag(r, "enabled"),
            )
        )
    rd.unique(tables["pay_channels"], lambda r: r.cells.get("code"), "code")
    for r in tables["pay_channels"]:
        code_ = rd.need(r, "code", _CODE, "1-20 letters or digits")
        entries.append(PayChannelEntry(code_, rd.need(r, "name"), rd.flag(r, "enabled")))
    maps = tables["mappings"]
    spans: dict[str, list[tuple[Period, int]]] = {}
    for r in maps:
        his = rd.need(r, "his_code", _HIS, "an HIS code of letters, digits, '_', '-', '.' or '/'")
        target = rd.need(r, "charge_code")
        if target and target not in known_items:
            rd.err(r.file, r.row, r.col("charge_code"), f"{target!r} is not among charge_items")
        lo, hi = rd.day(r, "valid_from", required=True), rd.day(r, "valid_to")
        if lo is None:
            continue
        if hi and hi <= lo:
            rd.err(r.file, r.row, r.col("valid_to"), "must be after valid_from")
            continue
        period = Period(lo, hi)
        for other, at in spans.get(his, []):
            if other.overlaps(period):
                msg = f"{his!r} {period} overlaps row {at} {other}"
                rd.err(r.file, r.row, r.col("valid_from"), msg)
        spans.setdefault(his, []).append((period, r.row))
        entries.append(MappingEntry(his, target, lo, hi, r.cells.get("his_name", "")))
    if rd.errors:
        raise FileErrors(rd.errors)
    return BaseData(unit, tuple(entries))
