"""Paper bills over gRPC on the session stack: conversion, reprint, reissue, void,
blank paper voided in ranges, and the red-flush rules for a bill on paper.

Every refused operation is checked to have changed nothing (tests/refusal.py).
"""

from __future__ import annotations

import asyncpg
import grpc
import pytest

from protos.ebill.v1 import bill_pb2, issuance_pb2_grpc, lifecycle_pb2
from protos.ebill.v1 import lifecycle_pb2_grpc as lc_grpc
from tests.e2e.lifecycle_support import (
    RED_FLUSHED,
    by_number,
    charge,
    issue,
    op,
    receive_paper,
    serial,
)
from tests.refusal import refused

pytestmark = pytest.mark.slow


async def test_paper_conversion_reprint_reissue_void_and_red_flush_rules(
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    lifecycle: lc_grpc.LifecycleServiceStub,
    pool: asyncpg.Pool,
) -> None:
    rng = await receive_paper(lifecycle, 20)
    assert rng.remaining == 20 and rng.next_no == rng.start_no
    bill = await issue(issuance, charge())
    key = by_number(bill)

    conv = await lifecycle.ConvertToPaper(lifecycle_pb2.PaperBillRequest(operator=op(), bill=key))
    first_paper = conv.paper_no
    assert conv.paper_code == "44990119" and conv.prints == 1
    assert conv.bill.paper_status == bill_pb2.PAPER_STATUS_PRINTED
    assert conv.bill.paper_no == first_paper

    # Converted once only.
    await refused(
        pool,
        lifecycle.ConvertToPaper(lifecycle_pb2.PaperBillRequest(operator=op(), bill=key)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    # A printed bill is not red-flushed while its paper is out.
    await refused(
        pool,
        lifecycle.RedFlush(
            lifecycle_pb2.RedFlushRequest(
                operator=op(), original=key, bus_no=serial("R"), reason="refund"
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        field="void_paper",
    )
    # Reprint: same paper number, printed twice.
    rep = await lifecycle.Reprint(lifecycle_pb2.PaperBillRequest(operator=op(), bill=key))
    assert (rep.paper_no, rep.prints) == (first_paper, 2)
    # Reissue: the damaged paper is voided, the bill moves to the next paper number.
    re = await lifecycle.ReissuePaper(
        lifecycle_pb2.PaperBillRequest(operator=op(), bill=key, reason="paper torn")
    )
    assert re.paper_no == f"{int(first_paper) + 1:010d}"
    damaged = await pool.fetchrow(
        "SELECT status, void_reason, operator FROM paper_bills WHERE paper_code = $1"
        " AND paper_no = $2",
        "44990119",
        first_paper,
    )
    assert (damaged["status"], damaged["void_reason"], damaged["operator"]) == (
        "voided",
        "paper torn",
        "clerk-07",
    )
    # Void the paper, then red-flush.
    void = await lifecycle.VoidPaper(
        lifecycle_pb2.PaperBillRequest(operator=op(), bill=key, reason="refund at window")
    )
    assert void.bill.paper_status == bill_pb2.PAPER_STATUS_VOIDED
    await refused(
        pool,
        lifecycle.Reprint(lifecycle_pb2.PaperBillRequest(operator=op(), bill=key)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    red = await lifecycle.RedFlush(
        lifecycle_pb2.RedFlushRequest(
            operator=op(), original=key, bus_no=serial("R"), reason="refund"
        )
    )
    assert red.original.status == RED_FLUSHED

    # Or both in one call.
    other = await issue(issuance, charge())
    conv2 = await lifecycle.ConvertToPaper(
        lifecycle_pb2.PaperBillRequest(operator=op(), bill=by_number(other))
    )
    both = await lifecycle.RedFlush(
        lifecycle_pb2.RedFlushRequest(
            operator=op(),
            original=by_number(other),
            bus_no=serial("R"),
            reason="x",
            void_paper=True,
        )
    )
    assert both.original.status == RED_FLUSHED
    assert both.original.paper_status == bill_pb2.PAPER_STATUS_VOIDED
    assert both.original.paper_no == conv2.paper_no

    ops = [
        r["op"]
        for r in await pool.fetch(
            "SELECT op FROM bill_events WHERE bill_id = (SELECT id FROM bills"
            " WHERE bill_code = $1 AND bill_no = $2) ORDER BY id",
            bill.bill_code,
            bill.bill_no,
        )
    ]
    assert ops == ["convert_to_paper", "reprint", "reissue_paper", "void_paper"]
    stock = await lifecycle.GetPaperStock(lifecycle_pb2.GetPaperStockRequest(operator=op()))
    mine = next(r for r in stock.ranges if r.id == rng.id)
    assert mine.remaining == 20 - 3  # first paper, its reissue, the second bill's paper


async def test_blank_paper_is_voided_in_ranges_and_skipped(
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    lifecycle: lc_grpc.LifecycleServiceStub,
    pool: asyncpg.Pool,
) -> None:
    place = "001"  # its own paper, so the next number is predictable
    rng = await receive_paper(lifecycle, 10, place=place)
    start = int(rng.start_no)
    stock = await lifecycle.VoidBlankPaper(
        lifecycle_pb2.VoidBlankPaperRequest(
            operator=op(place),
            paper_code=rng.paper_code,
            start_no=f"{start:010d}",
            end_no=f"{start + 2:010d}",
            reason="water damage",
        )
    )
    assert stock.next_paper_no == f"{start + 3:010d}"
    b = await issue(issuance, charge(place=place))
    conv = await lifecycle.ConvertToPaper(
        lifecycle_pb2.PaperBillRequest(operator=op(place), bill=by_number(b))
    )
    assert conv.paper_no == f"{start + 3:010d}"
    # A range holding a printed paper is not blank.
    await refused(
        pool,
        lifecycle.VoidBlankPaper(
            lifecycle_pb2.VoidBlankPaperRequest(
                operator=op(place),
                paper_code=rng.paper_code,
                start_no=f"{start + 3:010d}",
                end_no=f"{start + 5:010d}",
                reason="x",
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        field="start_no",
    )
    # Paper that overlaps paper already received is refused.
    await refused(
        pool,
        lifecycle.ReceivePaper(
            lifecycle_pb2.ReceivePaperRequest(
                operator=op(place),
                paper_code=rng.paper_code,
                start_no=rng.end_no,
                end_no=f"{int(rng.end_no) + 5:010d}",
            )
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    after = await lifecycle.GetPaperStock(lifecycle_pb2.GetPaperStockRequest(operator=op(place)))
    assert next(r for r in after.ranges if r.id == rng.id).remaining == 10 - 4
