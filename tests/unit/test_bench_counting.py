"""Issue #11 items 13 and 14: the bench counts a bill as issued only when it was
countersigned, reports pending answers apart, and prints every run as a share of
the crypto ceiling measured in the same run. No stack: a fake issuance stub."""

from __future__ import annotations

from typing import Any

import pytest

from bench import ceiling as crypto
from bench import issuance as bench
from protos.ebill.v1 import bill_pb2, issuance_pb2

ISSUED = bill_pb2.BILL_STATUS_ISSUED
PENDING = bill_pb2.BILL_STATUS_PENDING_COUNTERSIGN


class FakeStub:
    """Answers every other bill ISSUED and the rest PENDING_COUNTERSIGN; bus_no ending
    in 7 is refused."""

    def __init__(self) -> None:
        self.n = 0

    def _status(self) -> bill_pb2.BillStatus.ValueType:
        self.n += 1
        return ISSUED if self.n % 2 else PENDING

    async def IssueBatch(self, req: issuance_pb2.IssueBatchRequest, **_: Any) -> Any:
        results = []
        for i, b in enumerate(req.bills):
            if b.bus_no.endswith("7"):
                results.append(
                    issuance_pb2.ItemResult(
                        index=i, error=issuance_pb2.ItemError(code="INVALID_ARGUMENT")
                    )
                )
            else:
                results.append(
                    issuance_pb2.ItemResult(
                        index=i, bill=bill_pb2.IssuedBill(status=self._status())
                    )
                )
        return issuance_pb2.IssueBatchResponse(results=results)

    async def IssueBill(self, req: issuance_pb2.IssueBillRequest, **_: Any) -> Any:
        return issuance_pb2.IssueBillResponse(bill=bill_pb2.IssuedBill(status=self._status()))


async def test_batch_counts_only_countersigned_bills() -> None:
    r = await bench.run_batch(FakeStub(), 400, 2, "T")  # type: ignore[arg-type]
    refused = sum(1 for i in range(400) if f"{i:010d}".endswith("7"))
    assert r.errors == refused
    assert r.pending is not None and r.bills + r.pending == 400 - refused
    assert r.pending == (400 - refused) // 2
    assert "pending" in r.line()


async def test_single_runs_count_only_countersigned_bills() -> None:
    closed = await bench.run_single_closed(FakeStub(), 40, 4, "S")  # type: ignore[arg-type]
    assert (closed.bills, closed.pending, closed.errors) == (20, 20, 0)
    opened = await bench.run_single_open(FakeStub(), 200, 0.2, "O")  # type: ignore[arg-type]
    assert (opened.bills, opened.pending) == (20, 20)


def test_a_run_with_pending_answers_says_so() -> None:
    ceiling = crypto.CryptoCeiling(2, 2000, 3000, 4000, 6000)
    runs = [
        bench.Result("batch", 900, 0, 1.0, [], pending=100, ceiling=ceiling.bills_per_s),
        bench.Result("baseline, 8 clients", 50, 0, 1.0, [], pending=None),
    ]
    text = "\n".join(bench.summary(runs, ceiling))
    assert "PENDING: 100 answers were not countersigned (batch)" in text
    assert "18.0x the baseline" in text
    assert "of ceiling" in runs[0].line()
    clean = [bench.Result("batch", 900, 0, 1.0, [], pending=0)]
    assert "PENDING" not in "\n".join(bench.summary(clean, ceiling))


def test_the_ceiling_follows_the_sm2_operations_per_bill() -> None:
    c = crypto.CryptoCeiling(2, 2000, 3000, 4000, 6000)
    per_bill = crypto.SM2_SIGNS_PER_BILL / 4000 + crypto.SM2_VERIFIES_PER_BILL / 6000
    assert c.bills_per_s == pytest.approx(1 / per_bill)
    # Three signs (unit, platform countersignature, platform QR) and three verifies
    # (platform: unit signature; archive: countersignature and QR) per bill.
    assert (crypto.SM2_SIGNS_PER_BILL, crypto.SM2_VERIFIES_PER_BILL) == (3, 3)
    assert (crypto.PLATFORM_SIGNS_PER_BILL, crypto.PLATFORM_VERIFIES_PER_BILL) == (2, 1)
    r = bench.Result("batch", 500, 0, 1.0, [], ceiling=c.bills_per_s)
    assert f"{500 / c.bills_per_s:.1%}" in r.line()


def test_native_sm2_rates_are_measured() -> None:
    c = crypto.measure_sm2(0.05, threads=2)
    assert c.sign_per_s_one > 100 and c.verify_per_s_one > 100
    assert c.sign_per_s > 100 and c.verify_per_s > 100
    assert 0 < c.bills_per_s < min(c.sign_per_s, c.verify_per_s)
    assert "crypto ceiling" in c.line()
