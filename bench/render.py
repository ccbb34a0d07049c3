"""Rendering benchmark (`make bench-render`): PDFs, H5 pages and notice slips per
second on this machine, and what the lazy PDF cache saves.

Bills are signed in memory (no stack): rendering is pure CPU. Two ways of
serving PDFs alternate in rounds within one run, so both see the same machine:

* A, no cache: every request lays the PDF out (WeasyPrint);
* B, through ``Rendering`` with its LRU cache: each bill asked ``--repeat``
  times (a patient opening it, a delivery attaching it, a download), the first
  ask renders, the others hit the cache.

Prints per-round figures, then the medians and the ratio B/A.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from engine.canonical import canonical_bytes, countersign_message
from engine.model import BillStatus, Catalog, IssuedBill, Reservation, UnitCatalog
from engine.qr import facts_of_canonical
from engine.sm2 import SigningKey
from engine.validation import validate
from engine.verification import BillExport
from storage.catalog import PAY_CHANNELS
from usecases import demo
from usecases.rendering import (
    BillView,
    Names,
    Rendering,
    StaticKeys,
    render_html,
    render_notice,
    render_pdf,
    view_of,
)

__all__ = ["main"]

UNIT = SigningKey.generate()
FISCAL = SigningKey.generate()
NAMES = Names(demo.UNIT_NAME, "医疗门诊收费票据（电子）", tuple(PAY_CHANNELS.items()))
CATALOG = Catalog(
    units={
        demo.UNIT_CODE: UnitCatalog(
            unit_code=demo.UNIT_CODE,
            unit_name=demo.UNIT_NAME,
            issuing_points={"001": True},
            charge_codes=dict(demo.CHARGE_CODES),
            pay_channels=frozenset(PAY_CHANNELS),
            bill_codes={t: c for t, c, _ in demo.BILL_CODES},
        )
    }
)


def make_bills(n: int) -> list[IssuedBill]:
    out = []
    at = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    for i in range(n):
        valid = validate(demo.demo_bill(i, prefix="RB"), CATALOG)
        no = f"{1000 + i:010d}"
        res = Reservation(valid.bill_code, no, "abcdef", at + timedelta(seconds=i))
        canonical = canonical_bytes(valid, res)
        us = UNIT.sign(canonical)
        out.append(
            IssuedBill(
                bill_id=i + 1, unit_code=demo.UNIT_CODE, bus_no=valid.bus_no, bus_type="02",
                place_code="001", bill_code=valid.bill_code, bill_no=no, check_code="abcdef",
                status=BillStatus.ISSUED, total_fen=valid.total_fen, issued_at=res.issued_at,
                canonical=canonical, canonical_version="ebill-canonical/1", unit_signature=us,
                fiscal_signature=FISCAL.sign(countersign_message(canonical, us)),
                bill_kind=valid.bill_kind,
                qr_signature=FISCAL.sign(facts_of_canonical(canonical).message),
            )
        )  # fmt: skip
    return out


class _Bills:
    def __init__(self, bills: list[IssuedBill]) -> None:
        self._by = {(b.bill_code, b.bill_no): b for b in bills}

    async def get(self, bill_code: str, bill_no: str) -> IssuedBill | None:
        return self._by.get((bill_code, bill_no))

    async def names(self, unit_code: str, bill_code: str) -> Names:
        return NAMES


def _view(b: IssuedBill) -> BillView:
    return view_of(b, NAMES, unit_key=UNIT.public, fiscal_key=FISCAL.public)


def round_a(bills: list[IssuedBill], repeat: int) -> float:
    """PDF requests served per second without a cache."""
    started = time.perf_counter()
    for b in bills:
        for _ in range(repeat):
            render_pdf(
                _view(b),
                BillExport(b.canonical, b.unit_signature, b.fiscal_signature, b.qr_signature,
                           UNIT.public.point),
            )  # fmt: skip
    return len(bills) * repeat / (time.perf_counter() - started)


async def round_b(bills: list[IssuedBill], repeat: int) -> float:
    """PDF requests served per second through Rendering and its cache (fresh
    cache each round: every bill is rendered once)."""
    rendering = Rendering(
        _Bills(bills), StaticKeys(FISCAL.public, {demo.UNIT_CODE: UNIT.public}),
        cache_size=len(bills),
    )  # fmt: skip
    started = time.perf_counter()
    for b in bills:
        for _ in range(repeat):
            await rendering.pdf(b.bill_code, b.bill_no, b.check_code)
    rate = len(bills) * repeat / (time.perf_counter() - started)
    assert rendering.cache.misses == len(bills)
    return rate


def per_second(fn: Callable[[BillView], object], bills: list[IssuedBill]) -> float:
    started = time.perf_counter()
    for b in bills:
        fn(_view(b))
    return len(bills) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bills", type=int, default=20, help="distinct bills per round")
    parser.add_argument("--repeat", type=int, default=3, help="requests per bill")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds, alternating")
    args = parser.parse_args(argv)
    bills = make_bills(args.bills)
    render_pdf(_view(bills[0]), BillExport(b"", b"", b"", b"", b""))  # warm up fonts
    a_rates, b_rates = [], []
    for r in range(args.rounds):
        a = round_a(bills, args.repeat)
        b = asyncio.run(round_b(bills, args.repeat))
        a_rates.append(a)
        b_rates.append(b)
        print(
            f"round {r + 1}: A no cache {a:6.1f} PDFs/s   B cache {b:6.1f} PDFs/s   B/A {b / a:.2f}"
        )
    a, b = statistics.median(a_rates), statistics.median(b_rates)
    print(f"PDF rendering (no cache): {a:.1f} PDFs/s ({1000 / a:.0f} ms a PDF)")
    print(
        f"with the cache, {args.repeat} requests a bill: {b:.1f} PDFs/s served, "
        f"B/A = {b / a:.2f} (ideal {args.repeat:.2f})"
    )
    h5 = per_second(lambda v: render_html(v, "h5"), bills)
    notice = per_second(render_notice, bills)
    print(f"H5 pages: {h5:.1f}/s; notice slips (PNG): {notice:.1f}/s")


if __name__ == "__main__":
    main()
