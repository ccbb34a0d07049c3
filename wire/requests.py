"""Reading the common parts of requests: bill keys, operators, numbers, dates.

Each reader refuses a malformed value with InvalidArgument naming its field, the
path the caller sent, so every servicer (gRPC now, HTTP next) words it the same.
"""

from __future__ import annotations

from datetime import date, datetime

from engine.errors import InvalidArgument
from engine.lifecycle import BillKey
from engine.model import CST
from engine.operator import Operator
from engine.validation import parse_stamp, quote
from protos.ebill.v1 import issuance_pb2, lifecycle_pb2

__all__ = [
    "bill_key",
    "code8",
    "day",
    "digits",
    "number_range",
    "office",
    "operator_any",
    "operator_office",
    "operator_point",
    "point",
    "stamp",
]


def bill_key(req: issuance_pb2.GetBillRequest, *, unit_code: str = "", field: str = "") -> BillKey:
    """The bill a request names. ``unit_code`` fills in a serial's unit (the
    operator's); ``field`` is the path of the key in the request, if nested."""

    def path(name: str) -> str:
        return f"{field}.{name}" if field else name

    which = req.WhichOneof("key")
    if which == "by_number":
        k = req.by_number
        if not k.bill_code or not k.bill_no:
            raise InvalidArgument(
                f"{path('by_number')}: bill_code and bill_no are required", field=path("by_number")
            )
        return BillKey.number(k.bill_code, k.bill_no)
    if which == "by_bus":
        b = req.by_bus
        unit = b.unit_code or unit_code
        if not unit or not b.bus_no:
            raise InvalidArgument(
                f"{path('by_bus')}: unit_code and bus_no are required", field=path("by_bus")
            )
        return BillKey.serial(unit, b.bus_no)
    where = field or "key"
    raise InvalidArgument(f"{where}: by_number or by_bus is required", field=where)


def operator_any(op: lifecycle_pb2.Operator) -> tuple[str, str]:
    """(unit_code, person) of a call the bill office or an issuing point may make."""
    for name in ("unit_code", "operator"):
        if not getattr(op, name).strip():
            raise InvalidArgument(f"operator.{name}: is required", field=f"operator.{name}")
    return op.unit_code, op.operator.strip()


def operator_office(op: lifecycle_pb2.Operator) -> tuple[str, str]:
    """A bill-office call: an issuing point may not make it."""
    unit, who = operator_any(op)
    if op.place_code:
        raise InvalidArgument(
            "operator.place_code: this is done by the unit's bill office (leave it empty)",
            field="operator.place_code",
        )
    return unit, who


def operator_point(op: lifecycle_pb2.Operator) -> tuple[str, str, str]:
    """(unit_code, place_code, person) of an issuing point's call."""
    unit, who = operator_any(op)
    if not op.place_code.strip():
        raise InvalidArgument(
            "operator.place_code: an issuing point makes this call", field="operator.place_code"
        )
    return unit, op.place_code, who


def digits(value: str, n: int, field: str) -> int:
    if not (len(value) == n and value.isdigit()):
        raise InvalidArgument(f"{field}: must be {n} digits, got {quote(value)}", field=field)
    return int(value)


def code8(value: str, field: str = "bill_code") -> str:
    """A bill code or paper code: 8 digits."""
    digits(value, 8, field)
    return value


def number_range(start: str, end: str) -> tuple[int, int]:
    """``start_no`` .. ``end_no``, 10 digits each, inclusive and not backwards."""
    lo, hi = digits(start, 10, "start_no"), digits(end, 10, "end_no")
    if hi < lo:
        raise InvalidArgument("end_no: must not be below start_no", field="end_no")
    return lo, hi


def day(value: str, field: str) -> date:
    try:
        return datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        raise InvalidArgument(
            f"{field}: must be yyyyMMdd, got {quote(value)}", field=field
        ) from None


def stamp(text: str, field: str) -> datetime:
    """yyyyMMddHHmmssSSS (local time, UTC+8) as an aware datetime."""
    if not (len(text) == 17 and text.isdigit()):
        raise InvalidArgument(f"{field}: must be yyyyMMddHHmmssSSS, got {quote(text)}", field=field)
    try:
        return parse_stamp(text).replace(tzinfo=CST)
    except ValueError:
        raise InvalidArgument(f"{field}: not a valid time: {quote(text)}", field=field) from None


def point(op: lifecycle_pb2.Operator) -> Operator:
    """An issuing point's operator, as a value."""
    unit, place, who = operator_point(op)
    return Operator(unit_code=unit, person=who, place_code=place)


def office(op: lifecycle_pb2.Operator) -> Operator:
    """The bill office's operator, as a value."""
    unit, who = operator_office(op)
    return Operator(unit_code=unit, person=who)
