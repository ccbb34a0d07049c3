"""What the mapping step (对照) costs validation: the same bills validated with
fiscal charge codes (A) and with HIS codes resolved through a unit mapping of
5,000 HIS codes with two periods each (B), alternating A and B in one run, so
the ratio holds on this machine whatever its speed. Pure CPU: no database, the
catalogue is what the validate stage holds in memory.

    .venv/bin/python -m bench.mapping [--bills 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from datetime import date

from engine.catalog import HisMapping, Period
from engine.model import BillInput, Catalog, UnitCatalog
from engine.validation import check
from storage.catalog import PAY_CHANNELS
from usecases import demo

__all__ = ["main"]


def _catalog(n_codes: int) -> Catalog:
    his: dict[str, tuple[HisMapping, ...]] = {}
    fiscal = [c for c, _ in demo.CHARGE_CODES[:6]]
    for i in range(n_codes):
        code = f"HIS{i:05d}"
        target = fiscal[i % len(fiscal)]
        his[code] = (
            HisMapping(code, target, Period(date(2020, 1, 1), date(2025, 1, 1))),
            HisMapping(code, target, Period(date(2025, 1, 1), None)),
        )
    unit = UnitCatalog(
        unit_code=demo.UNIT_CODE,
        unit_name=demo.UNIT_NAME,
        issuing_points={"001": True},
        charge_codes=dict(demo.CHARGE_CODES),
        pay_channels=frozenset(PAY_CHANNELS),
        bill_codes={t: c for t, c, _ in demo.BILL_CODES},
        his_codes=his,
    )
    return Catalog(units={demo.UNIT_CODE: unit})


def _as_his(b: BillInput, n_codes: int, seq: int) -> BillInput:
    """The same bill, each charge line sent with an HIS code mapped to its code."""
    fiscal = [c for c, _ in demo.CHARGE_CODES[:6]]
    span = n_codes - n_codes % len(fiscal)  # HIS{k} maps to fiscal[k % 6]
    items = tuple(
        replace(c, his_code=f"HIS{(seq * 6 + fiscal.index(c.charge_code)) % span:05d}")
        for c in b.charge_items
    )
    return replace(b, charge_items=items)


def _rate(bills: list[BillInput], catalog: Catalog) -> float:
    started = time.perf_counter()
    for b in bills:
        assert not isinstance(check(b, catalog), list)
    return len(bills) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bills", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--codes", type=int, default=5000)
    args = p.parse_args(argv)
    catalog = _catalog(args.codes)
    plain = [demo.demo_bill(i, prefix="BM") for i in range(args.bills)]
    # HIS codes map each line to the fiscal code it had (the sender knows both).
    mapped = [_as_his(b, args.codes, i) for i, b in enumerate(plain)]
    for one, other in zip(plain[:50], mapped[:50], strict=True):
        got_a, got_b = check(one, catalog), check(other, catalog)
        assert not isinstance(got_a, list) and not isinstance(got_b, list), (got_a, got_b)
    a_rates, b_rates = [], []
    for _ in range(args.rounds):
        a_rates.append(_rate(plain, catalog))
        b_rates.append(_rate(mapped, catalog))
    a, b = max(a_rates), max(b_rates)
    print(f"validate, fiscal codes (A): {a:,.0f} bills/s (best of {args.rounds})")
    print(f"validate, HIS codes through the mapping (B): {b:,.0f} bills/s")
    print(f"B/A = {b / a:.3f}")


if __name__ == "__main__":
    main()
