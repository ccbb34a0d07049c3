"""Base data at the fiscal platform sandbox: each unit's charge item catalogue and
bill codes (单位基础信息), versioned, maintained by the finance bureau
(PublishBaseData) and downloaded by units (GetBaseData, the engine's sync).

A unit's catalogue starts as the standard list of medical charge items
(医疗收费项目) and the bill codes of its province the first time it is asked
for. Once a unit has a catalogue here, countersignature checks every charge item
of a bill against it, as of the bill's date: an item unknown to the platform or
withdrawn before the bill's date is refused (ITEM_NOT_IN_CATALOGUE). Red bills
are not checked: they cancel a bill that was valid when issued.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime
from typing import Any

import grpc

from protos.fiscal.v1 import fiscal_pb2

__all__ = ["BASE_SCHEMA", "DEFAULT_ITEMS", "BaseDataDesk", "default_bill_codes"]

BASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS base_items (
    unit_code TEXT, charge_code TEXT, charge_name TEXT, valid_from TEXT, valid_to TEXT,
    category TEXT, PRIMARY KEY (unit_code, charge_code));
CREATE TABLE IF NOT EXISTS base_bill_codes (
    unit_code TEXT, bus_type TEXT, bill_code TEXT, bill_name TEXT,
    PRIMARY KEY (unit_code, bus_type));
CREATE TABLE IF NOT EXISTS base_versions (unit_code TEXT PRIMARY KEY, version INTEGER);
"""

# 医疗收费项目: the categories of the medical charge bill (医疗收费票据).
DEFAULT_ITEMS: tuple[tuple[str, str, str], ...] = (
    ("0101", "西药费", "医疗收费"),
    ("0102", "中成药费", "医疗收费"),
    ("0103", "中药饮片费", "医疗收费"),
    ("0201", "床位费", "医疗收费"),
    ("0301", "诊察费", "医疗收费"),
    ("0302", "挂号费", "医疗收费"),
    ("0303", "一般诊疗费", "医疗收费"),
    ("0401", "检查费", "医疗收费"),
    ("0402", "化验费", "医疗收费"),
    ("0501", "治疗费", "医疗收费"),
    ("0502", "手术费", "医疗收费"),
    ("0503", "护理费", "医疗收费"),
    ("0601", "卫生材料费", "医疗收费"),
    ("0701", "其他门急诊收费", "医疗收费"),
    ("0702", "其他住院收费", "医疗收费"),
    ("0801", "住院预交金", "预交金"),
)
_ITEMS_FROM = "20200101"


def default_bill_codes(unit_code: str, year: int) -> list[tuple[str, str, str]]:
    """(bus_type, bill_code, name): province (2 digits of the unit code) + kind + year."""
    prov, yy = unit_code[:2], f"{year % 100:02d}"
    outpatient = (f"{prov}0601{yy}", "医疗门诊收费票据（电子）")
    return [
        ("01", f"{prov}0602{yy}", "医疗住院收费票据（电子）"),
        ("02", *outpatient),
        ("03", *outpatient),
        ("05", *outpatient),
        ("06", *outpatient),
        ("07", f"{prov}0603{yy}", "住院预交金凭证（电子）"),
    ]


def _day(text: str, field: str, context: grpc.ServicerContext) -> str:
    if not text:
        return ""
    try:
        datetime.strptime(text, "%Y%m%d")
    except ValueError:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: must be yyyyMMdd")
    return text


class BaseDataDesk:
    """The base-data calls of fiscal.v1.FiscalPlatform; FiscalService provides the store."""

    _db: sqlite3.Connection
    _lock: threading.Lock

    def _ensure_base(self, unit_code: str) -> None:
        """The unit's catalogue, made from the standard list on first use (lock held)."""
        if self._db.execute(
            "SELECT 1 FROM base_versions WHERE unit_code = ?", (unit_code,)
        ).fetchone():
            return
        self._db.executemany(
            "INSERT INTO base_items VALUES (?, ?, ?, ?, '', ?)",
            [(unit_code, c, n, _ITEMS_FROM, cat) for c, n, cat in DEFAULT_ITEMS],
        )
        self._db.executemany(
            "INSERT INTO base_bill_codes VALUES (?, ?, ?, ?)",
            [(unit_code, *b) for b in default_bill_codes(unit_code, datetime.now().year)],
        )
        self._db.execute("INSERT INTO base_versions VALUES (?, 1)", (unit_code,))

    def _base_data(self, unit_code: str) -> fiscal_pb2.BaseData:
        (version,) = self._db.execute(
            "SELECT version FROM base_versions WHERE unit_code = ?", (unit_code,)
        ).fetchone()
        name = self._db.execute(
            "SELECT unit_name FROM units WHERE unit_code = ?", (unit_code,)
        ).fetchone()
        return fiscal_pb2.BaseData(
            unit_code=unit_code,
            unit_name=name[0] if name else "",
            version=version,
            items=[
                fiscal_pb2.BaseItem(
                    charge_code=r[0],
                    charge_name=r[1],
                    valid_from=r[2],
                    valid_to=r[3],
                    category=r[4],
                )
                for r in self._db.execute(
                    "SELECT charge_code, charge_name, valid_from, valid_to, category"
                    " FROM base_items WHERE unit_code = ? ORDER BY charge_code",
                    (unit_code,),
                )
            ],
            bill_codes=[
                fiscal_pb2.BaseBillCode(bus_type=r[0], bill_code=r[1], bill_name=r[2])
                for r in self._db.execute(
                    "SELECT bus_type, bill_code, bill_name FROM base_bill_codes"
                    " WHERE unit_code = ? ORDER BY bus_type",
                    (unit_code,),
                )
            ],
        )

    def GetBaseData(
        self, request: fiscal_pb2.GetBaseDataRequest, context: grpc.ServicerContext
    ) -> fiscal_pb2.BaseData:
        if not (request.unit_code.isdigit() and 6 <= len(request.unit_code) <= 20):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unit_code: 6-20 digits")
        with self._lock, self._db:
            self._ensure_base(request.unit_code)
            return self._base_data(request.unit_code)

    def PublishBaseData(
        self, request: fiscal_pb2.PublishBaseDataRequest, context: grpc.ServicerContext
    ) -> fiscal_pb2.BaseData:
        withdraw_on = _day(request.withdraw_on, "withdraw_on", context)
        if request.withdraw and not withdraw_on:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "withdraw_on: is required")
        with self._lock, self._db:
            self._ensure_base(request.unit_code)
            for it in request.items:
                if not (it.charge_code and it.charge_name):
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "items: code and name")
                self._db.execute(
                    "INSERT INTO base_items VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
                    " charge_name = excluded.charge_name, valid_from = excluded.valid_from,"
                    " valid_to = excluded.valid_to, category = excluded.category",
                    (
                        request.unit_code,
                        it.charge_code,
                        it.charge_name,
                        _day(it.valid_from, "valid_from", context) or _ITEMS_FROM,
                        _day(it.valid_to, "valid_to", context),
                        it.category or "医疗收费",
                    ),
                )
            for code in request.withdraw:
                self._db.execute(
                    "UPDATE base_items SET valid_to = ? WHERE unit_code = ? AND charge_code = ?",
                    (withdraw_on, request.unit_code, code),
                )
            for b in request.bill_codes:
                self._db.execute(
                    "INSERT INTO base_bill_codes VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
                    " bill_code = excluded.bill_code, bill_name = excluded.bill_name",
                    (request.unit_code, b.bus_type, b.bill_code, b.bill_name),
                )
            self._db.execute(
                "UPDATE base_versions SET version = version + 1 WHERE unit_code = ?",
                (request.unit_code,),
            )
            return self._base_data(request.unit_code)

    def _check_items(self, unit_code: str, doc: dict[str, Any]) -> tuple[str, str]:
        """('', '') when every charge item of a (blue) bill is in the unit's
        catalogue on the bill's date, or the unit has no catalogue here (lock held)."""
        if (
            "red_of" in doc
            or not self._db.execute(
                "SELECT 1 FROM base_versions WHERE unit_code = ?", (unit_code,)
            ).fetchone()
        ):
            return "", ""
        day = str(doc.get("bus_time", ""))[:8]
        for i, c in enumerate(doc.get("charge_items") or []):
            code = str(c.get("charge_code", "")) if isinstance(c, dict) else ""
            row = self._db.execute(
                "SELECT valid_from, valid_to FROM base_items"
                " WHERE unit_code = ? AND charge_code = ?",
                (unit_code, code),
            ).fetchone()
            if row is None:
                return (
                    "ITEM_NOT_IN_CATALOGUE",
                    f"charge_items[{i}]: {code!r} is not in the catalogue",
                )
            if (row[0] and day < row[0]) or (row[1] and day >= row[1]):
                return (
                    "ITEM_NOT_IN_CATALOGUE",
                    f"charge_items[{i}]: {code!r} is not usable on {day} ({row[0]}..{row[1]})",
                )
        return "", ""
