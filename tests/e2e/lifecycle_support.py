"""Helpers the lifecycle end-to-end modules share (test_lifecycle*.py).

The counters live here, once per session, so that serials (bus_no) and paper
ranges stay unique across every module that uses them: the modules share one
stack and one database.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

from engine.model import BillInput
from protos.ebill.v1 import bill_pb2, issuance_pb2, issuance_pb2_grpc, lifecycle_pb2
from protos.ebill.v1 import lifecycle_pb2_grpc as lc_grpc
from tests.gm_reference import gm_verify
from usecases import demo
from wire.bills import input_to_pb

__all__ = [
    "ISSUED",
    "OTHER_PLACE",
    "PLACE",
    "RED_FLUSHED",
    "assert_signed",
    "by_number",
    "charge",
    "issue",
    "next_seq",
    "op",
    "receive_paper",
    "serial",
]

PLACE = "003"
OTHER_PLACE = "002"
_seq = itertools.count(1)
_paper = itertools.count(0)
ISSUED = bill_pb2.BILL_STATUS_ISSUED
RED_FLUSHED = bill_pb2.BILL_STATUS_RED_FLUSHED


def next_seq() -> int:
    """The next number of the shared sequence behind serials and demo bills."""
    return next(_seq)


def op(place: str = PLACE, who: str = "clerk-07") -> lifecycle_pb2.Operator:
    return lifecycle_pb2.Operator(unit_code=demo.UNIT_CODE, place_code=place, operator=who)


def by_number(b: bill_pb2.IssuedBill) -> issuance_pb2.GetBillRequest:
    return issuance_pb2.GetBillRequest(
        by_number=issuance_pb2.BillNumberKey(bill_code=b.bill_code, bill_no=b.bill_no)
    )


def serial(tag: str) -> str:
    return f"L{next(_seq):05d}{tag}"


def charge(place: str = PLACE, bus_type: str = "02", **changes: Any) -> BillInput:
    n = next(_seq)
    return replace(
        demo.demo_bill(n, prefix=f"LC{n:05d}", place_code=place, bus_type=bus_type), **changes
    )


async def issue(
    issuance: issuance_pb2_grpc.IssuanceServiceStub, b: BillInput
) -> bill_pb2.IssuedBill:
    bill: bill_pb2.IssuedBill = (
        await issuance.IssueBill(issuance_pb2.IssueBillRequest(bill=input_to_pb(b)))
    ).bill
    assert bill.status == ISSUED
    return bill


async def receive_paper(
    lifecycle: lc_grpc.LifecycleServiceStub, count: int, place: str = PLACE
) -> lifecycle_pb2.PaperRange:
    start = 1000 * next(_paper) + 1
    rng: lifecycle_pb2.PaperRange = await lifecycle.ReceivePaper(
        lifecycle_pb2.ReceivePaperRequest(
            operator=op(place),
            paper_code="44990119",
            start_no=f"{start:010d}",
            end_no=f"{start + count - 1:010d}",
        )
    )
    return rng


def assert_signed(b: bill_pb2.IssuedBill, keys: tuple[bytes, bytes]) -> None:
    unit_key, fiscal_key = keys
    assert gm_verify(unit_key, b.canonical, b.unit_signature), f"unit signature of {b.bill_no}"
    assert gm_verify(fiscal_key, b.canonical + b.unit_signature, b.fiscal_signature), (
        f"countersignature of {b.bill_no}"
    )
