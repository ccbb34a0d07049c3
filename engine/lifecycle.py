"""The life of a bill after issue: red-flush, refund, paper, back entry. Pure rules.

Storage reads the state of a bill under a row lock and asks these functions
whether an operation may proceed; the answer is an :class:`EbillError` naming what
stands in the way, so the caller is told why and nothing is written.

A red bill (红字票据) is an ordinary bill document with every amount negated and a
``red_of`` member naming the bill it cancels. It takes its own number and goes
through unit signature and fiscal countersignature like any bill.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from engine.canonical import RESERVATION_MEMBERS
from engine.errors import EbillError, FailedPrecondition, InvalidArgument, PermissionDenied
from engine.model import BillStatus, compact_pickle
from engine.money import format_fen
from engine.prepare import Prepared
from engine.state import may_become
from engine.statuses import PaperStatus

__all__ = [
    "BillKey",
    "BillState",
    "PaperStatus",
    "check_convert",
    "check_own",
    "check_printed",
    "check_red_flush",
    "check_refund",
    "negate_amount",
    "red_document",
    "red_prepared",
]


@dataclass(frozen=True, slots=True)
class BillKey:
    """A bill by number (bill_code + bill_no) or by serial (unit_code + bus_no)."""

    bill_code: str = ""
    bill_no: str = ""
    unit_code: str = ""
    bus_no: str = ""

    @classmethod
    def number(cls, bill_code: str, bill_no: str) -> BillKey:
        return cls(bill_code=bill_code, bill_no=bill_no)

    @classmethod
    def serial(cls, unit_code: str, bus_no: str) -> BillKey:
        return cls(unit_code=unit_code, bus_no=bus_no)

    def describe(self) -> str:
        if self.bill_code:
            return f"bill {self.bill_code}/{self.bill_no}"
        return f"bill for bus_no {self.bus_no} of unit {self.unit_code}"


@compact_pickle
@dataclass(frozen=True, slots=True)
class BillState:
    """What the lifecycle rules need to know about one stored bill."""

    bill_id: int
    unit_code: str
    place_code: str
    bill_code: str
    bill_no: str
    status: BillStatus
    total_fen: int
    bill_kind: str
    bus_type: str
    origin: str  # "engine" or "back_entry"
    is_red: bool
    red_by: str  # "code/no" of the red bill that cancelled it, if any
    paper: PaperStatus
    paper_code: str
    paper_no: str
    converted: bool

    @property
    def label(self) -> str:
        return f"bill {self.bill_code}/{self.bill_no}"


def check_own(state: BillState, unit_code: str, place_code: str) -> None:
    """An issuing point works only on its own bills."""
    if state.unit_code != unit_code or state.place_code != place_code:
        raise PermissionDenied(
            f"{state.label} belongs to issuing point {state.place_code}, not {place_code}",
            field="operator.place_code",
        )


def check_red_flush(state: BillState, *, void_paper: bool) -> EbillError | None:
    """May ``state`` be cancelled by a red bill now?"""
    if state.is_red:
        return FailedPrecondition(f"{state.label} is itself a red bill and cannot be red-flushed")
    if state.status is BillStatus.RED_FLUSHED:
        return FailedPrecondition(
            f"{state.label} was already red-flushed by red bill {state.red_by}"
        )
    if not may_become(state.status, BillStatus.RED_FLUSHED):
        return FailedPrecondition(
            f"{state.label} is {state.status.value}; only an issued bill can be red-flushed"
        )
    if state.paper is PaperStatus.PRINTED and not void_paper:
        return FailedPrecondition(
            f"{state.label} is printed on paper {state.paper_code}/{state.paper_no}; void the "
            "paper first, or ask for both in one call (void_paper)",
            field="void_paper",
        )
    return None


def check_refund(state: BillState, refund_fen: int, remainder_fen: int | None) -> None:
    """A refund returns part or all of the original; the remainder is re-issued."""
    if refund_fen <= 0:
        raise InvalidArgument("refund_amount: must be more than 0.00", field="refund_amount")
    if refund_fen > state.total_fen:
        raise InvalidArgument(
            f"refund_amount: {format_fen(refund_fen)} exceeds the original bill's total "
            f"{format_fen(state.total_fen)}",
            field="refund_amount",
        )
    expected = state.total_fen - refund_fen
    if expected == 0 and remainder_fen is not None:
        raise InvalidArgument(
            "remainder: a full refund leaves nothing to re-issue; omit the remainder",
            field="remainder",
        )
    if expected > 0:
        if remainder_fen is None:
            raise InvalidArgument(
                f"remainder: the bill for the {format_fen(expected)} kept is required",
                field="remainder",
            )
        if remainder_fen != expected:
            raise InvalidArgument(
                f"remainder.total_amount: must be {format_fen(expected)} (original "
                f"{format_fen(state.total_fen)} less refund {format_fen(refund_fen)}), "
                f"got {format_fen(remainder_fen)}",
                field="remainder.total_amount",
            )


def check_convert(state: BillState) -> None:
    """An e-bill is converted to paper once, when issued and not cancelled."""
    if state.is_red:
        raise FailedPrecondition(f"{state.label} is a red bill; red bills are not printed")
    if state.converted or state.paper is not PaperStatus.NONE:
        where = f" (paper {state.paper_code}/{state.paper_no})" if state.paper_no else ""
        raise FailedPrecondition(
            f"{state.label} was already converted to paper{where}; an e-bill is converted once. "
            "Use reprint or reissue for a damaged print"
        )
    if state.status is not BillStatus.ISSUED:
        raise FailedPrecondition(
            f"{state.label} is {state.status.value}; only an issued bill can be converted"
        )


def check_printed(state: BillState) -> None:
    """Reprint, reissue and void need a bill whose paper is in the payer's hands."""
    if state.paper is not PaperStatus.PRINTED:
        raise FailedPrecondition(
            f"{state.label} has no printed paper bill"
            + (f" (paper {state.paper_code}/{state.paper_no} is voided)" if state.paper_no else "")
        )


def negate_amount(text: str) -> str:
    """ "12.30" -> "-12.30"; "0.00" stays "0.00"."""
    value = -Decimal(text)
    return f"{value:.2f}" if value != 0 else "0.00"


_AMOUNTS_TOP = ("total_amount",)
_AMOUNTS_LINE = ("amt", "self_amt")
_AMOUNTS_INSURANCE = ("fund_pay", "other_fund_pay", "account_pay", "own_pay", "self_pay")


def _negated(doc: dict[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    for k in _AMOUNTS_TOP:
        out[k] = negate_amount(out[k])
    for section in ("charge_items", "list_items"):
        out[section] = [
            {**line, **{k: negate_amount(line[k]) for k in _AMOUNTS_LINE if line.get(k)}}
            for line in out[section]
        ]
    out["pay_channels"] = [{**p, "amount": negate_amount(p["amount"])} for p in out["pay_channels"]]
    ins = out.get("insurance")
    if ins:
        out["insurance"] = {
            **ins,
            **{k: negate_amount(ins[k]) for k in _AMOUNTS_INSURANCE if ins.get(k)},
        }
    return out


def red_document(
    original: dict[str, Any],
    *,
    bus_no: str,
    bus_time: str,
    place_code: str,
    operator: str,
    reason: str,
) -> dict[str, Any]:
    """The canonical document of the red bill cancelling ``original`` (a parsed
    canonical document), without its reservation members."""
    doc = {k: v for k, v in original.items() if k not in RESERVATION_MEMBERS}
    doc = _negated(doc)
    doc.update(
        bus_no=bus_no,
        bus_time=bus_time,
        place_code=place_code,
        cashier=operator,
        author=operator,
        checker="",
        remark=reason,
        red_of={
            "bill_code": original["bill_code"],
            "bill_no": original["bill_no"],
            "check_code": original["check_code"],
        },
    )
    return doc


def red_prepared(
    state: BillState,
    canonical: bytes,
    request: dict[str, Any],
    *,
    bill_code: str,
    bus_no: str,
    bus_time: datetime,
    place_code: str,
    operator: str,
    reason: str,
    void_paper: bool,
    op: str,
) -> Prepared:
    """What the reserve step needs to issue the red bill of ``state``.

    ``request`` is the original's stored request (plain-dict form); the red bill
    stores it with the red bill's own serial, issuing point and negated amounts.
    """
    original = json.loads(canonical)
    stamp = bus_time.strftime("%Y%m%d%H%M%S") + f"{bus_time.microsecond // 1000:03d}"
    doc = red_document(
        original,
        bus_no=bus_no,
        bus_time=stamp,
        place_code=place_code,
        operator=operator,
        reason=reason,
    )
    red_request = _negated(
        request
        | {
            "bus_no": bus_no,
            "bus_time": stamp,
            "place_code": place_code,
            "cashier": operator,
            "author": operator,
            "checker": "",
            "remark": reason,
        }
    )
    payer = doc["payer"]
    return Prepared(
        unit_code=state.unit_code,
        bus_no=bus_no,
        bus_type=state.bus_type,
        bill_kind=state.bill_kind,
        place_code=place_code,
        bill_code=bill_code,
        total_fen=-state.total_fen,
        # Local wall time, like the HIS's bus_time on every other bill.
        bus_time=bus_time.replace(tzinfo=None),
        payer_name=payer["name"],
        payer_id_card_no=payer["id_card_no"],
        payer_card_no=payer["card_no"],
        payer_tel=payer["tel"],
        cashier=operator,
        document=doc,
        request=red_request,
        charge_rows=tuple(
            (c["sort_no"], c["charge_code"], c["charge_name"], _fen(c["amt"]), _fen(c["self_amt"]))
            for c in doc["charge_items"]
        ),
        channel_rows=tuple((p["pay_channel_code"], _fen(p["amount"])) for p in doc["pay_channels"]),
        red_of=state.bill_id,
        void_paper=void_paper,
        op=op,
        operator=operator,
    )


def _fen(text: str) -> int:
    """Fen of a canonical amount string, which may be negative on a red bill."""
    return int(Decimal(text) * 100)
