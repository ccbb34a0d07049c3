"""What the fiscal platform sandbox checks in a document or a declaration: pure
rules, no I/O (ops/sandboxes/fiscal.py applies them to what it stores)."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from engine.model import BUS_TYPES
from protos.fiscal.v1 import fiscal_pb2

__all__ = [
    "BILL_CODE_KINDS",
    "Amounts",
    "amounts_of",
    "check_amounts",
    "check_kind",
    "check_paper_write_off",
    "negated",
    "range_size",
    "red_of_key",
]

# Which kinds of bill a bill code may carry. A fiscal bill code reads
# region (2 digits) + category (2) + kind within the category (2) + year (2); the
# platform grants a code for one kind of bill and seals nothing else on it. These
# are the categories the demo hospital's codes use (ebill/demo.py BILL_CODES).
BILL_CODE_KINDS: dict[str, frozenset[str]] = {
    "0101": frozenset({"non_tax"}),  # 非税收入一般缴款书
    "0301": frozenset({"current_account"}),  # 行政事业单位资金往来结算票据
    "0401": frozenset({"donation"}),  # 公益事业捐赠票据
    "0601": frozenset({"outpatient", "emergency", "checkup", "registration"}),  # 门诊
    "0602": frozenset({"inpatient"}),  # 医疗住院收费票据
    "0603": frozenset({"deposit"}),  # 住院预交金凭证
}


@dataclass(frozen=True, slots=True)
class Amounts:
    """Every amount of a bill document, in fen, in a comparable form."""

    total: int
    charges: tuple[tuple[str, int, int], ...]
    lists: tuple[tuple[str, str, int, int], ...]
    pays: tuple[tuple[str, int], ...]
    insurance: tuple[int, ...]

    def to_json(self) -> str:
        return json.dumps(
            [self.total, self.charges, self.lists, self.pays, self.insurance],
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Amounts:
        total, charges, lists, pays, insurance = json.loads(text)
        return cls(
            total,
            tuple(tuple(c) for c in charges),
            tuple(tuple(li) for li in lists),
            tuple(tuple(p) for p in pays),
            tuple(insurance),
        )


_INSURANCE = ("fund_pay", "other_fund_pay", "account_pay", "own_pay", "self_pay")


def _fen(text: object) -> int:
    """Fen of a canonical amount ("12.30", "-12.30"); ValueError for anything else."""
    if not isinstance(text, str):
        raise ValueError(f"amount {str(text)[:32]!r} is not a string")
    if not text:
        return 0
    fen = Decimal(text) * 100
    if fen != fen.to_integral_value() or len(text) > 24:
        raise ValueError(f"amount {text[:32]!r} is not a whole number of fen")
    return int(fen)


def amounts_of(doc: dict[str, Any]) -> Amounts:
    ins = doc.get("insurance") or {}
    return Amounts(
        total=_fen(doc["total_amount"]),
        charges=tuple(
            sorted((str(c["charge_code"]), _fen(c["amt"]), _fen(c.get("self_amt", "")))
                   for c in doc["charge_items"])
        ),
        lists=tuple(
            sorted((str(li["list_code"]), str(li["charge_code"]), _fen(li["amt"]),
                    _fen(li.get("self_amt", ""))) for li in doc.get("list_items") or ())
        ),
        pays=tuple(sorted((str(p["pay_channel_code"]), _fen(p["amount"]))
                          for p in doc["pay_channels"])),
        insurance=tuple(_fen(ins.get(k, "")) for k in _INSURANCE),
    )  # fmt: skip


def negated(a: Amounts) -> Amounts:
    """Every amount negated, in the order amounts_of gives (sorted again: lines with
    the same codes sort by amount, and negation reverses that order)."""
    return Amounts(
        -a.total,
        tuple(sorted((c, -amt, -own) for c, amt, own in a.charges)),
        tuple(sorted((li, c, -amt, -own) for li, c, amt, own in a.lists)),
        tuple(sorted((c, -amt) for c, amt in a.pays)),
        tuple(-x for x in a.insurance),
    )


def check_amounts(item: fiscal_pb2.CountersignItem, a: Amounts) -> tuple[str, str]:
    """total = sum of charge items = sum of pay channels, and the total the unit
    declared is the signed one."""
    charged = sum(amt for _, amt, _ in a.charges)
    paid = sum(amt for _, amt in a.pays)
    if not a.charges or not a.pays:
        return "AMOUNTS", "a bill needs at least one charge item and one pay channel"
    if not a.total == charged == paid:
        return (
            "AMOUNTS",
            f"amounts do not add up: total {a.total} fen, charge items {charged} fen,"
            f" pay channels {paid} fen",
        )
    if item.total_fen != a.total:
        return "MISMATCH", f"total_fen {item.total_fen} differs from the signed {a.total} fen"
    return "", ""


def check_kind(bill_code: str, doc: dict[str, Any]) -> tuple[str, str]:
    """The bill code is one the platform grants for the document's kind of bill."""
    kind = BUS_TYPES.get(str(doc.get("bus_type", "")))
    if kind is None or doc.get("bill_kind", kind) != kind:
        return "WRONG_KIND", f"unknown business type {str(doc.get('bus_type'))[:32]!r}"
    allowed = BILL_CODE_KINDS.get(bill_code[2:6], frozenset())
    if kind not in allowed:
        return "WRONG_KIND", f"bill code {bill_code} is not a code for {kind} bills"
    return "", ""


def red_of_key(doc: dict[str, Any]) -> str | None:
    red_of = doc.get("red_of")
    if not isinstance(red_of, dict):
        return None
    return f"{red_of.get('bill_code', '')}/{red_of.get('bill_no', '')}"


def range_size(r: fiscal_pb2.NumberRange) -> int:
    start, end = int(r.start_no), int(r.end_no)
    if end < start:
        raise ValueError(f"range {r.start_no}-{r.end_no} runs backwards")
    return end - start + 1


def check_paper_write_off(f: fiscal_pb2.WriteOffFigures) -> str:
    """Paper: every paper number is declared once, and the counts match the ranges."""
    seen: list[tuple[int, int, str]] = []
    for label, ranges in (("used", f.used), ("voided", f.voided), ("lost", f.lost)):
        for r in ranges:
            range_size(r)
            seen.append((int(r.start_no), int(r.end_no), label))
    seen.sort()
    for (_, e1, l1), (s2, _, l2) in itertools.pairwise(seen):
        if s2 <= e1:
            return f"paper number {s2:010d} is declared both {l1} and {l2}"
    if sum(range_size(r) for r in f.used) != f.printed_count:
        return "printed_count differs from the used ranges"
    if sum(range_size(r) for r in f.voided) != f.voided_count:
        return "voided_count differs from the voided ranges"
    if sum(range_size(r) for r in f.lost) != f.lost_count:
        return "lost_count differs from the lost ranges"
    return ""
