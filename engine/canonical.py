"""The canonical bytes of an e-bill: exactly what the unit signs.

Specified in docs/canonical-bytes.md. In short: one JSON object, keys sorted,
no insignificant white space, UTF-8 without escaping non-ASCII, every field
present (empty string when absent), amounts as yuan strings with exactly two
fraction digits, quantities with exactly four, times in UTC RFC 3339 with
milliseconds. The ``version`` member names this layout; a change of layout is a
new version and old bills keep verifying against the bytes they were signed over.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from engine.model import Reservation, ValidBill
from engine.money import format_fen, format_quantity

__all__ = [
    "CANONICAL_VERSION",
    "RESERVATION_MEMBERS",
    "canonical_bytes",
    "countersign_message",
    "document",
    "render",
    "rfc3339",
]

CANONICAL_VERSION = "ebill-canonical/1"


def rfc3339(ts: datetime) -> str:
    """UTC, millisecond precision, 'Z' suffix: one spelling for one instant."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def document(bill: ValidBill) -> dict[str, Any]:
    """The canonical document of a bill before it has a number: every member but
    those :func:`render` adds from the reservation."""
    src = bill.source
    ins = bill.insurance
    return {
        "version": CANONICAL_VERSION,
        "unit_code": src.unit_code,
        "bill_kind": bill.bill_kind,
        "bus_no": src.bus_no,
        "bus_type": src.bus_type,
        "bus_time": src.bus_time,
        "place_code": src.place_code,
        "cashier": src.cashier,
        "author": src.author,
        "checker": src.checker,
        "total_amount": format_fen(bill.total_fen),
        "remark": src.remark,
        "payer": {
            "name": src.payer.name,
            "payer_type": src.payer.payer_type,
            "id_card_no": src.payer.id_card_no,
            "card_type": src.payer.card_type,
            "card_no": src.payer.card_no,
            "tel": src.payer.tel,
            "email": src.payer.email,
        },
        "charge_items": [
            {
                "sort_no": c.sort_no,
                "charge_code": c.charge_code,
                "charge_name": c.charge_name,
                "unit": c.unit,
                "std": format_quantity(c.std),
                "number": format_quantity(c.number),
                "amt": format_fen(c.amt_fen),
                "self_amt": format_fen(c.self_amt_fen),
                "remark": c.remark,
            }
            for c in bill.charge_items
        ],
        "list_items": [
            {
                "sort_no": li.sort_no,
                "list_code": li.list_code,
                "list_name": li.list_name,
                "charge_code": li.charge_code,
                "spec": li.spec,
                "unit": li.unit,
                "std": format_quantity(li.std),
                "number": format_quantity(li.number),
                "amt": format_fen(li.amt_fen),
                "self_amt": format_fen(li.self_amt_fen),
            }
            for li in bill.list_items
        ],
        "pay_channels": [
            {"pay_channel_code": p.pay_channel_code, "amount": format_fen(p.amount_fen)}
            for p in bill.pay_channels
        ],
        "insurance": None
        if ins is None
        else {
            "fund_pay": format_fen(ins.fund_pay_fen),
            "other_fund_pay": format_fen(ins.other_fund_pay_fen),
            "account_pay": format_fen(ins.account_pay_fen),
            "own_pay": format_fen(ins.own_pay_fen),
            "self_pay": format_fen(ins.self_pay_fen),
            "medical_insurance_id": ins.medical_insurance_id,
            "med_care_institution": ins.med_care_institution,
        },
        "medical": {
            "patient_no": src.medical.patient_no,
            "case_number": src.medical.case_number,
            "sex": src.medical.sex,
            "age": src.medical.age,
            "consultation_date": src.medical.consultation_date,
            "department": src.medical.department,
            "medical_institution": src.medical.medical_institution,
        },
    }


RESERVATION_MEMBERS = ("bill_code", "bill_no", "check_code", "issued_at")


def render(doc: dict[str, Any], res: Reservation) -> bytes:
    """Canonical bytes of a document issued under a reservation."""
    full = dict(doc)
    full["bill_code"] = res.bill_code
    full["bill_no"] = res.bill_no
    full["check_code"] = res.check_code
    full["issued_at"] = rfc3339(res.issued_at)
    return json.dumps(full, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def canonical_bytes(bill: ValidBill, res: Reservation) -> bytes:
    """The bytes the unit signs for ``bill`` issued under ``res``."""
    return render(document(bill), res)


def countersign_message(canonical: bytes, unit_signature: bytes) -> bytes:
    """What the fiscal platform signs: the canonical bytes followed by the unit's DER
    signature, so the countersignature covers both the bill and who signed it."""
    return canonical + unit_signature
