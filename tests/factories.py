"""Reference data and requests for core tests (no I/O)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ebill import demo
from engine.model import BillInput, Catalog, UnitCatalog
from storage.catalog import PAY_CHANNELS


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
