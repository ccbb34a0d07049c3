"""The fiscal sandbox's CountersignBatch, its SM2 work on every core (A) against in
turn under its lock (B, as before), alternating in one run, in this process.

Batch issuance reaches the platform one bulk batch at a time
(config.tuning.BULK_COUNTERSIGN_INFLIGHT), and the sandbox serves its calls under
one lock, so the time one CountersignBatch takes bounds batch issuance. Per bill it
verifies the unit signature and makes two signatures (countersignature and QR);
A spreads that work over threads (Tongsuo releases the GIL), B does it in turn.
Every check stays as it is in both. Prints bills/s of each round and the ratio A/B
(the engine, sandboxes and other work share these cores in a real run: an upper
bound of what the whole engine gains).

    .venv/bin/python -m bench.fiscal_sandbox [--bills 2000] [--batch 200] [--rounds 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from engine.canonical import countersign_message
from engine.checkcode import new_check_code
from engine.model import Catalog, Reservation, UnitCatalog
from engine.numbers import BillNo
from engine.prepare import prepare
from engine.sm2 import SigningKey
from engine.validation import validate
from ops.sandboxes.fiscal import FiscalService
from protos.fiscal.v1 import fiscal_pb2
from storage.catalog import PAY_CHANNELS
from usecases import demo

__all__ = ["main"]

BILL_CODE = "44060119"


def _catalog() -> Catalog:
    unit = UnitCatalog(
        unit_code=demo.UNIT_CODE,
        unit_name=demo.UNIT_NAME,
        issuing_points={"001": True},
        charge_codes=dict(demo.CHARGE_CODES),
        pay_channels=frozenset(PAY_CHANNELS),
        bill_codes={t: c for t, c, _ in demo.BILL_CODES},
    )
    return Catalog(units={demo.UNIT_CODE: unit})


def _items(key: SigningKey, first_no: int, n: int, tag: str) -> list[fiscal_pb2.CountersignItem]:
    """``n`` unit-signed outpatient bills numbered from ``first_no``."""
    catalog = _catalog()
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        p = prepare(validate(replace(demo.demo_bill(i, prefix=tag)), catalog))
        res = Reservation(p.bill_code, str(BillNo(first_no + i)), new_check_code(), now)
        canon = p.canonical(res)
        out.append(
            fiscal_pb2.CountersignItem(
                unit_code=p.unit_code,
                bill_code=res.bill_code,
                bill_no=res.bill_no,
                check_code=res.check_code,
                total_fen=p.total_fen,
                canonical=canon,
                unit_signature=key.sign(canon),
            )
        )
    return out


def _round(service: FiscalService, items: list[fiscal_pb2.CountersignItem], batch: int) -> float:
    """Bills/s countersigning ``items`` in calls of ``batch``; every one must pass."""
    started = time.perf_counter()
    for i in range(0, len(items), batch):
        req = fiscal_pb2.CountersignBatchRequest(items=items[i : i + batch])
        resp = service.CountersignBatch(req, None)
        bad = [r for r in resp.results if not r.ok]
        if bad:
            raise SystemExit(f"refused: {bad[0].error_code} {bad[0].error_message}")
    return len(items) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bills", type=int, default=2000, help="bills per round")
    parser.add_argument("--batch", type=int, default=200, help="bills per CountersignBatch")
    parser.add_argument("--rounds", type=int, default=4, help="A/B pairs")
    args = parser.parse_args(argv)
    workers = len(os.sched_getaffinity(0))
    unit_key = SigningKey.generate()
    with tempfile.TemporaryDirectory(prefix="ebill-fiscal-bench-") as tmp:
        # One data directory (one platform key and store), two services over it.
        a = FiscalService(Path(tmp), sm2_workers=workers)
        b = FiscalService(Path(tmp), sm2_workers=1)
        for s in (a, b):
            s.RegisterUnit(
                fiscal_pb2.RegisterUnitRequest(
                    unit_code=demo.UNIT_CODE, unit_name="bench", public_key=unit_key.public.point
                ),
                None,
            )
        grant = a.GrantSegment(
            fiscal_pb2.GrantSegmentRequest(
                unit_code=demo.UNIT_CODE, bill_code=BILL_CODE, count=2 * args.rounds * args.bills
            ),
            None,
        )
        first = int(grant.start_no)
        ratios: list[float] = []
        for r in range(args.rounds):
            base = first + 2 * r * args.bills
            xa = _items(unit_key, base, args.bills, f"FA{r}")
            xb = _items(unit_key, base + args.bills, args.bills, f"FB{r}")
            ra, rb = (_round(a, xa, args.batch), _round(b, xb, args.batch))
            ratios.append(ra / rb)
            print(
                f"round {r + 1}: A ({workers} SM2 threads) {ra:7.0f} bills/s   "
                f"B (in turn) {rb:7.0f} bills/s   A/B {ra / rb:.2f}",
                flush=True,
            )
        # A sanity check that A signs what B would: the countersignature verifies.
        item = xa[0]
        stored = a._stored((item.bill_code, item.bill_no))
        assert stored is not None
        assert a._key.public.verify(
            countersign_message(item.canonical, item.unit_signature), stored[2]
        )
        print(f"A/B median {statistics.median(ratios):.2f} over {args.rounds} pairs")


if __name__ == "__main__":
    main()
