"""The finance reports (seeds 001/004): issuance by day, point, cashier, business
type and pay channel; 收发存 of the stock per bill code; paper usage; back entries;
the peak trend. Each report is a :class:`Table` (title, headers, rows of plain
values) so every gateway shows and exports it the same way: CSV with a BOM (so
Excel opens the Chinese headers right) and XLSX (openpyxl).

Money leaves as yuan strings with two decimals made from integer fen, never a float.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

import asyncpg

from engine.errors import InvalidArgument
from engine.money import format_fen as fen_to_str
from storage import reports as store
from storage.reports import IssuanceGroup, TrendStep

__all__ = [
    "MAX_REPORT_DAYS",
    "ExportFormat",
    "IssuanceGroup",
    "Reports",
    "Table",
    "TrendStep",
    "export",
]

# A year and a day: a report over a longer period is a request for a data dump.
MAX_REPORT_DAYS = 366

Cell = str | int


class ExportFormat(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"


@dataclass(frozen=True, slots=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]

    def column(self, header: str) -> list[Cell]:
        i = self.headers.index(header)
        return [row[i] for row in self.rows]


def _period(first: date, last: date) -> None:
    if last < first:
        raise InvalidArgument(f"period ends ({last}) before it starts ({first})", field="last")
    if (last - first).days + 1 > MAX_REPORT_DAYS:
        raise InvalidArgument(
            f"period of {(last - first).days + 1} days; at most {MAX_REPORT_DAYS}", field="last"
        )


_GROUP_HEADERS = {
    IssuanceGroup.DAY: "日期",
    IssuanceGroup.PLACE: "开票点",
    IssuanceGroup.CASHIER: "收费员",
    IssuanceGroup.BUS_TYPE: "业务类型",
    IssuanceGroup.PAY_CHANNEL: "缴款渠道",
}


class Reports:
    """Reports of one database; every method checks its period first."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def issuance(
        self, unit_code: str, first: date, last: date, by: IssuanceGroup, *, place_code: str = ""
    ) -> Table:
        _period(first, last)
        rows = await store.issuance(self._pool, unit_code, first, last, by, place_code=place_code)
        body = [
            (r.key, r.bills, fen_to_str(r.issued_fen), r.reds, fen_to_str(r.red_fen),
             fen_to_str(r.net_fen))
            for r in rows
        ]  # fmt: skip
        total = (
            "合计",
            sum(r.bills for r in rows),
            fen_to_str(sum(r.issued_fen for r in rows)),
            sum(r.reds for r in rows),
            fen_to_str(sum(r.red_fen for r in rows)),
            fen_to_str(sum(r.net_fen for r in rows)),
        )
        return Table(
            title=f"开票统计（按{_GROUP_HEADERS[by]}） {first}~{last}",
            headers=(_GROUP_HEADERS[by], "开票张数", "开票金额", "红票张数", "红票金额", "净额"),
            rows=(*body, total) if rows else (),
        )

    async def stock_flow(self, unit_code: str, first: date, last: date) -> Table:
        _period(first, last)
        rows = await store.stock_flow(self._pool, unit_code, first, last)
        return Table(
            title=f"票据收发存 {first}~{last}",
            headers=("票据代码", "期初", "领入", "开具", "作废", "退回", "期末"),
            rows=tuple(
                (r.bill_code, r.opening, r.received, r.issued, r.voided, r.returned, r.closing)
                for r in rows
            ),
        )

    async def paper_usage(
        self, unit_code: str, first: date, last: date, *, place_code: str = ""
    ) -> Table:
        _period(first, last)
        rows = await store.paper_usage(self._pool, unit_code, first, last, place_code=place_code)
        return Table(
            title=f"纸质票据使用 {first}~{last}",
            headers=("开票点", "纸质票据代码", "领入", "打印", "作废", "现存空白"),
            rows=tuple(
                (r.place_code, r.paper_code, r.received, r.printed, r.voided, r.blank) for r in rows
            ),
        )

    async def back_entries(
        self, unit_code: str, first: date, last: date, *, place_code: str = ""
    ) -> Table:
        _period(first, last)
        rows = await store.back_entries(self._pool, unit_code, first, last, place_code=place_code)
        return Table(
            title=f"原票补录 {first}~{last}",
            headers=("票据代码", "票据号码", "开票点", "金额", "经办人", "录入时间", "状态"),
            rows=tuple(
                (
                    r.bill_code,
                    r.bill_no,
                    r.place_code,
                    fen_to_str(r.total_fen),
                    r.operator,
                    _stamp(r.issued_at),
                    r.status,
                )
                for r in rows
            ),
        )

    async def trend(self, unit_code: str, first: date, last: date, step: TrendStep) -> Table:
        _period(first, last)
        rows = await store.trend(self._pool, unit_code, first, last, step)
        fmt = "%Y-%m-%d %H:00" if step is TrendStep.HOUR else "%Y-%m-%d"
        return Table(
            title=f"开票峰值趋势（按{'小时' if step is TrendStep.HOUR else '日'}） {first}~{last}",
            headers=("时间", "开票张数"),
            rows=tuple((r.at.strftime(fmt), r.bills) for r in rows),
        )


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S")


def export(table: Table, fmt: ExportFormat) -> bytes:
    """The table as a file a finance clerk opens in Excel or WPS."""
    if fmt is ExportFormat.CSV:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(table.headers)
        writer.writerows(table.rows)
        return ("\ufeff" + out.getvalue()).encode("utf-8")
    return _xlsx(table.title, table.headers, table.rows)


def _xlsx(title: str, headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    # A sheet title is at most 31 characters and may not hold []:*?/\ .
    sheet.title = "".join(c for c in title if c not in "[]:*?/\\")[:31]
    sheet.append([title])
    sheet["A1"].font = Font(bold=True)
    sheet.append(list(headers))
    for row in rows:
        sheet.append(list(row))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
