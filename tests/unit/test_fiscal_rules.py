"""The fiscal sandbox's pure rules (ops/sandboxes/fiscal_rules.py)."""

from __future__ import annotations

from typing import Any

from ops.sandboxes.fiscal_rules import amounts_of, check_kind, negated


def doc(sign: int) -> dict[str, Any]:
    def yuan(fen: int) -> str:
        return f"{'-' if sign < 0 else ''}{fen // 100}.{fen % 100:02d}"

    return {
        "total_amount": yuan(300),
        "charge_items": [{"charge_code": "A01", "amt": yuan(300), "self_amt": "0.00"}],
        # Two list lines with the same codes: negation reverses their sorted order.
        "list_items": [
            {"list_code": "Y1", "charge_code": "A01", "amt": yuan(100), "self_amt": "0.00"},
            {"list_code": "Y1", "charge_code": "A01", "amt": yuan(200), "self_amt": "0.00"},
        ],
        "pay_channels": [{"pay_channel_code": "01", "amount": yuan(300)}],
        "insurance": None,
    }


def test_a_red_document_is_the_exact_negation_whatever_the_line_order() -> None:
    assert amounts_of(doc(-1)) == negated(amounts_of(doc(1)))
    assert amounts_of(doc(1)) != negated(amounts_of(doc(1)))


def test_bill_codes_by_kind() -> None:
    assert check_kind("44060119", {"bus_type": "02", "bill_kind": "outpatient"}) == ("", "")
    assert check_kind("44060219", {"bus_type": "01", "bill_kind": "inpatient"}) == ("", "")
    assert check_kind("44060219", {"bus_type": "02"})[0] == "WRONG_KIND"
    assert check_kind("44060119", {"bus_type": "02", "bill_kind": "inpatient"})[0] == "WRONG_KIND"
    assert check_kind("44010119", {"bus_type": "11"}) == ("", "")
