"""Bulk issuance from a file (批量导入开票): a CSV or XLSX of settled charges, one
bill per row, issued through the engine's pipeline, with one result per row.

The rows travel in batches through an ``issue`` function the caller gives (the
CLI sends IssueBatch over gRPC, so the engine's micro-batcher and every check
of an issuance apply). ``bus_no`` is the idempotency key: running the same
file again issues nothing twice; the rows come back as "already issued" with
the bills of the first run.
"""

from __future__ import annotations

import asyncio
import csv
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.model import BillInput
from engine.serde import input_from_dict
from usecases.history_rows import PackedCellError, RowError, bill_dict, column_of, csv_record

__all__ = [
    "CHARGE_COLUMNS",
    "Failed",
    "IssueFn",
    "Issued",
    "Outcome",
    "RowResult",
    "issue_rows",
    "read_charges",
    "write_results",
]

# The columns of a bulk file (the bill part of the history CSV, docs/history-import.md).
CHARGE_COLUMNS = (
    "unit_code", "place_code", "bus_no", "bus_type", "bus_time",
    "payer_name", "payer_type", "payer_id_card_no", "payer_card_type", "payer_card_no",
    "payer_tel", "payer_email", "cashier", "author", "checker", "total_amount",
    "charge_items", "pay_channels", "remark",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Issued:
    bill_code: str
    bill_no: str
    check_code: str
    replayed: bool  # issued by an earlier run (same bus_no)


@dataclass(frozen=True, slots=True)
class Failed:
    code: str  # gRPC status code name
    field: str  # field path within the bill, "" when none
    message: str


Outcome = Issued | Failed
# Issue bills (at most 200) and answer one outcome per bill, in order.
IssueFn = Callable[[list[BillInput]], Awaitable[list[Outcome]]]


@dataclass(frozen=True, slots=True)
class RowResult:
    row_no: int
    bus_no: str
    result: str  # issued / already issued / error
    bill_code: str = ""
    bill_no: str = ""
    check_code: str = ""
    column: str = ""
    message: str = ""


def _cell(v: Any) -> str:
    """A spreadsheet cell as the text a CSV would hold. Amounts typed as numbers
    come back from Excel as float: their shortest repr is the decimal the person
    typed (12.3 -> "12.3"), never a binary fraction."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return format(Decimal(repr(v)), "f")
    if isinstance(v, datetime):
        return v.strftime("%Y%m%d%H%M%S") + f"{v.microsecond // 1000:03d}"
    if isinstance(v, date):
        return v.strftime("%Y%m%d")
    return str(v).strip()


def _xlsx_records(path: Path) -> Iterator[dict[str, str]]:
    import openpyxl  # heavy: only for .xlsx

    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        rows = wb.worksheets[0].iter_rows(values_only=True)
        header = [_cell(h) for h in next(rows, ())]
        for values in rows:
            yield {h: _cell(v) for h, v in zip(header, values, strict=False) if h}
    finally:
        wb.close()


def _csv_records(path: Path) -> Iterator[dict[str, str]]:
    # utf-8-sig: Excel writes a byte-order mark at the start of a CSV.
    with path.open(encoding="utf-8-sig", newline="") as f:
        yield from csv.DictReader(f)


_BILL_PREFIX = re.compile(r"^bills\[\d+\]\.")


def read_charges(path: Path) -> Iterator[tuple[int, BillInput | RowError]]:
    """(row number, bill or why the row cannot be read); row 1 is the first data row.
    Blank rows (a spreadsheet's trailing ones) are skipped."""
    records = _xlsx_records(path) if path.suffix.lower() == ".xlsx" else _csv_records(path)
    for n, rec in enumerate(records, 1):
        if not any((v or "").strip() for v in rec.values()):
            continue
        try:
            bill = bill_dict(csv_record(rec)["bill"])
        except PackedCellError as exc:
            yield n, RowError(n, exc.column, str(exc))
            continue
        yield n, input_from_dict(bill)


def _result(row_no: int, bill: BillInput, out: Outcome) -> RowResult:
    if isinstance(out, Issued):
        return RowResult(
            row_no, bill.bus_no, "already issued" if out.replayed else "issued",
            out.bill_code, out.bill_no, out.check_code,
        )  # fmt: skip
    field = _BILL_PREFIX.sub("", out.field)
    column = column_of(field, "csv") if field else ""
    return RowResult(
        row_no, bill.bus_no, "error", column=column, message=f"{out.code}: {out.message}"
    )


async def issue_rows(
    rows: list[tuple[int, BillInput | RowError]],
    issue: IssueFn,
    *,
    batch: int = 200,
    concurrency: int = 4,
    progress: Callable[[int], None] | None = None,
) -> list[RowResult]:
    """Issue every readable row, ``batch`` bills a call with ``concurrency`` calls
    in flight; one result per row, in file order."""
    results: dict[int, RowResult] = {}
    good: list[tuple[int, BillInput]] = []
    for n, r in rows:
        if isinstance(r, RowError):
            results[n] = RowResult(n, "", "error", column=r.column, message=r.reason)
        else:
            good.append((n, r))
    gate = asyncio.Semaphore(concurrency)

    async def send(chunk: list[tuple[int, BillInput]]) -> None:
        async with gate:
            outcomes = await issue([b for _, b in chunk])
        for (n, b), out in zip(chunk, outcomes, strict=True):
            results[n] = _result(n, b, out)
        if progress is not None:
            progress(len(chunk))

    await asyncio.gather(*(send(good[i : i + batch]) for i in range(0, len(good), batch)))
    return [results[n] for n, _ in rows]


def write_results(path: Path, results: list[RowResult]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["row", "bus_no", "result", "bill_code", "bill_no", "check_code", "column", "message"]
        )
        for r in results:
            w.writerow(
                [
                    r.row_no,
                    r.bus_no,
                    r.result,
                    r.bill_code,
                    r.bill_no,
                    r.check_code,
                    r.column,
                    r.message,
                ]
            )
