"""Reference data and requests for core tests (no I/O)."""

from __future__ import annotations

import itertools
import os
from dataclasses import replace
from typing import Any

from engine.model import (
    BillInput,
    Catalog,
    ChargeItemInput,
    PayChannelInput,
    PayerInput,
    UnitCatalog,
)
from engine.sealing import KeyRing
from storage.catalog import PAY_CHANNELS
from usecases import demo

# The data key ring of tests that seal and open bills rows in-process.
RING = KeyRing.generate()


def catalog() -> Catalog:
    return Catalog(
        units={
            demo.UNIT_CODE: UnitCatalog(
                unit_code=demo.UNIT_CODE,
                unit_name=demo.UNIT_NAME,
                issuing_points={"001": True, "002": True, "009": False},
                charge_codes=dict(demo.CHARGE_CODES),
                pay_channels=frozenset(PAY_CHANNELS),
                bill_codes={t: c for t, c, _ in demo.BILL_CODES},
            )
        }
    )


def bill(seq: int = 1, /, **changes: Any) -> BillInput:
    return replace(demo.demo_bill(seq, prefix="T"), **changes)


_non_medical_seq = itertools.count(1)


def non_medical(
    bus_type: str, code: str, name: str, amount: str, *, place_code: str = "003"
) -> BillInput:
    """A non-tax, 往来 or donation bill paid by a unit: one charge item, by transfer."""
    n = next(_non_medical_seq)
    return BillInput(
        unit_code=demo.UNIT_CODE,
        bus_no=f"NM{os.getpid()}x{n:06d}",
        bus_type=bus_type,
        payer=PayerInput(name="某某公司", payer_type="2", tel="07597750000"),
        bus_time="20261123100000000",
        place_code=place_code,
        cashier="财务01",
        author="财务01",
        total_amount=amount,
        charge_items=(
            ChargeItemInput(
                sort_no=1,
                charge_code=code,
                charge_name=name,
                unit="笔",
                std=amount,
                number="1",
                amt=amount,
            ),
        ),
        pay_channels=(PayChannelInput("03", amount),),
    )
