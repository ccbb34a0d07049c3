"""Plain-dict form of a BillInput, for storing the request as received (JSONB)."""

from __future__ import annotations

from typing import Any

from engine.model import (
    BillInput,
    ChargeItemInput,
    InsuranceInput,
    ListItemInput,
    MedicalInput,
    PayChannelInput,
    PayerInput,
)

__all__ = ["input_from_dict", "input_to_dict"]


def _flat(obj: object) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}  # type: ignore[attr-defined]


def _charge(c: ChargeItemInput) -> dict[str, Any]:
    d = _flat(c)
    # his_code came later: left out when empty, a request is stored as before it
    # came, and a retry of a bill stored before it digests the same (storage.bill_rows).
    if not c.his_code:
        del d["his_code"]
    return d


def input_to_dict(bill: BillInput) -> dict[str, Any]:
    # By hand: dataclasses.asdict deep-copies recursively and costs 5x more.
    d = _flat(bill)
    d["payer"] = _flat(bill.payer)
    d["insurance"] = _flat(bill.insurance)
    d["medical"] = _flat(bill.medical)
    d["charge_items"] = [_charge(c) for c in bill.charge_items]
    d["list_items"] = [_flat(li) for li in bill.list_items]
    d["pay_channels"] = [_flat(p) for p in bill.pay_channels]
    return d


def input_from_dict(d: dict[str, Any]) -> BillInput:
    return BillInput(
        unit_code=d["unit_code"],
        bus_no=d["bus_no"],
        bus_type=d["bus_type"],
        payer=PayerInput(**d["payer"]),
        bus_time=d["bus_time"],
        place_code=d["place_code"],
        cashier=d["cashier"],
        author=d["author"],
        checker=d["checker"],
        total_amount=d["total_amount"],
        charge_items=tuple(ChargeItemInput(**c) for c in d["charge_items"]),
        list_items=tuple(ListItemInput(**li) for li in d["list_items"]),
        pay_channels=tuple(PayChannelInput(**p) for p in d["pay_channels"]),
        insurance=InsuranceInput(**d["insurance"]),
        medical=MedicalInput(**d["medical"]),
        remark=d["remark"],
    )
