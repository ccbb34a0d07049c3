"""Rows of a history file (docs/history-import.md): reading JSON lines or CSV,
and checking one row into what the staging table holds. No I/O but the file.

Each row is checked by the same rules as an issuance (engine.validation), with
what history needs instead of today's catalogue: the bill code is the one the
row carries, and charge codes, pay channels and issuing points that have since
been withdrawn are accepted (the bill was issued and countersigned when they
were valid). Whether the unit and issuing point exist, duplicates and numbers
are checked in the database, set-based (storage.history).
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.canonical import document, render
from engine.errors import FieldError
from engine.lifecycle import red_document
from engine.model import CST, BillStatus, Catalog, Reservation, UnitCatalog
from engine.serde import input_from_dict, input_to_dict
from engine.validation import check, parse_stamp

__all__ = [
    "CSV_COLUMNS",
    "PackedCellError",
    "RowError",
    "StagedRow",
    "bill_dict",
    "check_row",
    "column_of",
    "csv_record",
    "csv_rows",
    "json_rows",
    "read_rows",
]

_BILL_CODE = re.compile(r"^[0-9]{8}$")
_BILL_NO = re.compile(r"^[0-9]{10}$")
_CHECK_CODE = re.compile(r"^[A-Za-z0-9]{4,20}$")
_STAMP = re.compile(r"^[0-9]{17}$")
# What the previous system may call a bill's state; red bills are told by red_of.
_STATUSES = {
    "issued": BillStatus.ISSUED,
    "normal": BillStatus.ISSUED,
    "正常": BillStatus.ISSUED,
    "red_flushed": BillStatus.RED_FLUSHED,
    "已冲红": BillStatus.RED_FLUSHED,
}

# The CSV form: one bill per line; charge items and pay channels packed in one
# cell each ("code|name|amt[|std|number|unit]" and "code|amount", ';' between).
CSV_COLUMNS = (
    "bill_code", "bill_no", "check_code", "issued_at", "status",
    "red_of_bill_code", "red_of_bill_no", "red_of_check_code",
    "unit_code", "place_code", "bus_no", "bus_type", "bus_time",
    "payer_name", "payer_type", "payer_id_card_no", "payer_card_type", "payer_card_no",
    "payer_tel", "payer_email", "cashier", "author", "checker", "total_amount",
    "charge_items", "pay_channels", "remark", "unit_signature", "fiscal_signature",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class RowError:
    """Why a file row is refused: its number (1 = first data row), the column
    (CSV header, or JSON field path) and the reason."""

    row_no: int
    column: str
    reason: str


# A row as the staging table holds it (storage.history.STAGING_COLUMNS, bill_id first).
StagedRow = tuple[Any, ...]


class _Anything(Mapping[str, Any]):
    """A catalogue member that knows every code: history keeps what was valid then."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def __getitem__(self, key: str) -> Any:
        return self._value

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class _AnyChannel(frozenset[str]):
    def __contains__(self, key: object) -> bool:
        return True


_ANY_POINT = _Anything(True)
_ANY_CODE = _Anything("")
_ANY_CHANNEL = _AnyChannel()


def _catalog(unit_code: str, bus_type: str, bill_code: str) -> Catalog:
    return Catalog(
        units={
            unit_code: UnitCatalog(
                unit_code=unit_code,
                unit_name="",
                issuing_points=_ANY_POINT,
                charge_codes=_ANY_CODE,
                pay_channels=_ANY_CHANNEL,
                bill_codes={bus_type: bill_code},
            )
        }
    )


# -- reading -----------------------------------------------------------------


def json_rows(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """(row number, row or why it cannot be read) of a JSON-lines file; blank lines skipped."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            yield n, RowError(n, "", f"not a JSON object: {exc}")
            continue
        if not isinstance(obj, dict):
            yield n, RowError(n, "", "not a JSON object")
            continue
        yield n, obj


class PackedCellError(ValueError):
    """A packed cell (charge_items, pay_channels) that cannot be read."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


def _packed(cell: str, names: tuple[str, ...], column: str) -> list[dict[str, str]]:
    out = []
    for part in cell.split(";"):
        if not part.strip():
            continue
        values = part.split("|")
        if len(values) > len(names):
            raise PackedCellError(column, f"{part[:40]!r} has more than {len(names)} '|' fields")
        out.append(dict(zip(names, values, strict=False)))
    return out


def csv_record(rec: Mapping[str, str]) -> dict[str, Any]:
    """A CSV record (header -> cell) as a history row; its ``bill`` member is also
    what a bulk-issuance row becomes (usecases.bulk)."""

    def g(k: str) -> str:
        return (rec.get(k) or "").strip()

    items = []
    for i, c in enumerate(
        _packed(g("charge_items"), ("code", "name", "amt", "std", "number", "unit"), "charge_items")
    ):
        amt = c.get("amt", "")
        items.append(
            {
                "sort_no": i + 1,
                "charge_code": c.get("code", ""),
                "charge_name": c.get("name", ""),
                "amt": amt,
                "std": c.get("std") or amt.lstrip("-"),
                "number": c.get("number") or "1",
                "unit": c.get("unit", ""),
            }
        )
    channels = [
        {"pay_channel_code": p.get("code", ""), "amount": p.get("amount", "")}
        for p in _packed(g("pay_channels"), ("code", "amount"), "pay_channels")
    ]
    row: dict[str, Any] = {
        k: g(k) for k in ("bill_code", "bill_no", "check_code", "issued_at", "status")
    }
    for k in ("unit_signature", "fiscal_signature"):
        if g(k):
            row[k] = g(k)
    if g("red_of_bill_code") or g("red_of_bill_no"):
        row["red_of"] = {
            "bill_code": g("red_of_bill_code"),
            "bill_no": g("red_of_bill_no"),
            "check_code": g("red_of_check_code"),
        }
    row["bill"] = {
        "unit_code": g("unit_code"),
        "bus_no": g("bus_no"),
        "bus_type": g("bus_type"),
        "bus_time": g("bus_time"),
        "place_code": g("place_code"),
        "payer": {
            "name": g("payer_name"),
            "payer_type": g("payer_type") or "1",
            "id_card_no": g("payer_id_card_no"),
            "card_type": g("payer_card_type"),
            "card_no": g("payer_card_no"),
            "tel": g("payer_tel"),
            "email": g("payer_email"),
        },
        "cashier": g("cashier"),
        "author": g("author") or g("cashier"),
        "checker": g("checker"),
        "total_amount": g("total_amount"),
        "charge_items": items,
        "pay_channels": channels,
        "remark": g("remark"),
    }
    return row


def csv_rows(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """(row number, row or why it cannot be read) of a CSV file with a header line.

    Row numbers count data rows from 1 (the header is row 0), so a spreadsheet
    shows row n at line n + 1.
    """
    reader = csv.DictReader(lines)
    missing = [
        c
        for c in ("bill_code", "bill_no", "unit_code", "bus_no")
        if c not in (reader.fieldnames or [])
    ]
    if missing:
        yield 0, RowError(0, missing[0], f"the header has no column {missing[0]}")
        return
    for n, rec in enumerate(reader, 1):
        try:
            yield n, csv_record(rec)
        except PackedCellError as exc:
            yield n, RowError(n, exc.column, str(exc))


def read_rows(lines: Iterable[str], fmt: str) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """Rows of a file in ``fmt`` ('jsonl' or 'csv')."""
    return csv_rows(lines) if fmt == "csv" else json_rows(lines)


# -- checking ----------------------------------------------------------------


def column_of(path: str, fmt: str) -> str:
    """The column a field path lives in: itself for JSON, the CSV header for CSV."""
    if fmt != "csv":
        return path
    head = path.removeprefix("bill.")
    for packed in ("charge_items", "list_items", "pay_channels"):
        if head.startswith(packed):
            return "charge_items" if packed == "list_items" else packed
    if head.startswith("payer."):
        return "payer_" + head.removeprefix("payer.")
    if head.startswith("red_of."):
        return "red_of_" + head.removeprefix("red_of.")
    return head


def _issued_at(text: str) -> datetime:
    if _STAMP.match(text):
        return parse_stamp(text).replace(tzinfo=CST)
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError("needs a time zone offset (or yyyyMMddHHmmssSSS, China time)")
    return at


def _signature(row: dict[str, Any], key: str, errs: list[FieldError]) -> bytes | None:
    text = row.get(key)
    if not text:
        return None
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        errs.append(FieldError(key, "must be base64"))
        return None


# Amount members of a bill request, and of its lines.
_TOP_AMOUNTS = ("total_amount",)
_LINE_AMOUNTS = ("amt", "self_amt")
_INSURANCE_AMOUNTS = ("fund_pay", "other_fund_pay", "account_pay", "own_pay", "self_pay")


def _unsigned(bill: dict[str, Any], errs: list[FieldError]) -> dict[str, Any]:
    """A red bill's request with its amounts made positive, so that it is checked
    by the issuance rules; a red bill's amounts are all negative or zero."""

    def pos(path: str, value: Any) -> Any:
        text = str(value or "")
        if text.startswith("-"):
            return text[1:]
        if text.strip() and text.strip("0.") != "":
            errs.append(FieldError(path, "must be negative on a red bill"))
        return text

    out = dict(bill)
    for k in _TOP_AMOUNTS:
        out[k] = pos(f"bill.{k}", out.get(k))
    for section in ("charge_items", "list_items"):
        out[section] = [
            {**line, **{k: pos(f"bill.{section}[{i}].{k}", line.get(k)) for k in _LINE_AMOUNTS}}
            for i, line in enumerate(out.get(section) or [])
        ]
    out["pay_channels"] = [
        {**p, "amount": pos(f"bill.pay_channels[{i}].amount", p.get("amount"))}
        for i, p in enumerate(out.get("pay_channels") or [])
    ]
    ins = out.get("insurance")
    if ins:
        out["insurance"] = {
            **ins,
            **{k: pos(f"bill.insurance.{k}", ins.get(k)) for k in _INSURANCE_AMOUNTS if k in ins},
        }
    return out


def bill_dict(raw: Any) -> dict[str, Any]:
    """The ``bill`` member with every member a BillRequest has (absent ones empty)."""
    b = dict(raw) if isinstance(raw, dict) else {}
    for k in ("unit_code", "bus_no", "bus_type", "bus_time", "place_code", "cashier", "author",
              "checker", "total_amount", "remark"):  # fmt: skip
        b[k] = str(b.get(k) or "")
    b["author"] = b["author"] or b["cashier"]
    for k in ("payer", "insurance", "medical"):
        b[k] = {str(kk): str(v or "") for kk, v in dict(b.get(k) or {}).items()}
    b["payer"].setdefault("payer_type", "1")
    for k in ("charge_items", "list_items", "pay_channels"):
        b[k] = [dict(x) for x in (b.get(k) or []) if isinstance(x, dict)]
    for i, c in enumerate(b["charge_items"]):
        c.setdefault("sort_no", i + 1)
    for i, li in enumerate(b["list_items"]):
        li.setdefault("sort_no", i + 1)
    return b


def check_row(raw: dict[str, Any], row_no: int, fmt: str) -> StagedRow | list[RowError]:
    """A row checked into staging values (without bill_id), or every reason it is refused.

    Field-level: every problem of the row with its column, as a cashier would
    get them for an issuance, so a file is fixed in one round.
    """
    errs: list[FieldError] = []
    bill_code = str(raw.get("bill_code") or "")
    bill_no = str(raw.get("bill_no") or "")
    check_code = str(raw.get("check_code") or "")
    if not _BILL_CODE.match(bill_code):
        errs.append(FieldError("bill_code", "must be 8 digits"))
    if not _BILL_NO.match(bill_no):
        errs.append(FieldError("bill_no", "must be 10 digits"))
    if not _CHECK_CODE.match(check_code):
        errs.append(FieldError("check_code", "must be 4-20 letters or digits"))
    issued_at = datetime(1970, 1, 1, tzinfo=CST)
    try:
        issued_at = _issued_at(str(raw.get("issued_at") or ""))
    except ValueError as exc:
        errs.append(
            FieldError("issued_at", f"must be ISO 8601 with offset or yyyyMMddHHmmssSSS ({exc})")
        )
    status = _STATUSES.get(str(raw.get("status") or "issued"))
    if status is None:
        errs.append(FieldError("status", "must be issued or red_flushed"))
    red = raw.get("red_of")
    red_key: tuple[str, str, str] | None = None
    if red:
        if not isinstance(red, dict):
            red = {}
        red_key = tuple(str(red.get(k) or "") for k in ("bill_code", "bill_no", "check_code"))  # type: ignore[assignment]
        assert red_key is not None
        if not _BILL_CODE.match(red_key[0]):
            errs.append(FieldError("red_of.bill_code", "must be 8 digits"))
        if not _BILL_NO.match(red_key[1]):
            errs.append(FieldError("red_of.bill_no", "must be 10 digits"))
        if not _CHECK_CODE.match(red_key[2]):
            errs.append(FieldError("red_of.check_code", "must be 4-20 letters or digits"))
        if status is BillStatus.RED_FLUSHED:
            errs.append(FieldError("status", "a red bill cannot itself be red-flushed"))
    unit_sig = _signature(raw, "unit_signature", errs)
    fiscal_sig = _signature(raw, "fiscal_signature", errs)
    given = bill_dict(raw.get("bill"))
    checked_dict = _unsigned(given, errs) if red_key else given
    try:
        bill_in = input_from_dict(checked_dict)
    except TypeError as exc:
        errs.append(FieldError("bill", f"has a member a bill request does not: {exc}"))
        return [RowError(row_no, column_of(e.field, fmt), e.message) for e in errs]
    valid = check(bill_in, _catalog(bill_in.unit_code, bill_in.bus_type, bill_code))
    if isinstance(valid, list):
        errs.extend(e.prefixed("bill") for e in valid)
    if errs or isinstance(valid, list) or status is None:
        return [RowError(row_no, column_of(e.field, fmt), e.message) for e in errs]
    res = Reservation(bill_code, bill_no, check_code, issued_at)
    doc = document(valid)
    sign = 1
    if red_key:
        sign = -1
        original = dict(doc, bill_code=red_key[0], bill_no=red_key[1], check_code=red_key[2])
        doc = red_document(
            original,
            bus_no=bill_in.bus_no,
            bus_time=bill_in.bus_time,
            place_code=bill_in.place_code,
            operator=bill_in.cashier,
            reason=bill_in.remark,
        )
    canonical = render(doc, res)
    items = valid.charge_items
    staged: StagedRow = (
        bill_in.unit_code, bill_in.bus_no, bill_in.bus_type, valid.bill_kind,
        bill_in.place_code, bill_code, bill_no, check_code, status.value,
        sign * valid.total_fen, bill_in.payer.name, bill_in.payer.id_card_no,
        bill_in.payer.card_no, bill_in.payer.tel, bill_in.cashier, valid.bus_time, issued_at,
        input_to_dict(bill_in) if not red_key else given, canonical,
        hashlib.new("sm3", canonical).digest(),
        red_key[0] if red_key else None, red_key[1] if red_key else None,
        [c.sort_no for c in items], [c.charge_code for c in items],
        [c.charge_name for c in items], [sign * c.amt_fen for c in items],
        [sign * c.self_amt_fen for c in items],
        [p.pay_channel_code for p in valid.pay_channels],
        [sign * p.amount_fen for p in valid.pay_channels],
        unit_sig, fiscal_sig,
    )  # fmt: skip
    return staged
