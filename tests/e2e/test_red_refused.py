"""Issue #11 item 11 over gRPC: when the fiscal platform refuses a red bill, the
original does not stay red-flushed without a valid red bill.

The refusal is a real one: a bill entered back (BackEntry) under one of our own
bill codes, with a number outside our segments, passes our edge; the platform
granted that bill code, never countersigned that number, and so refuses to
cancel it (UNKNOWN_ORIGINAL)."""

from __future__ import annotations

import itertools

import asyncpg
import grpc
import pytest

from protos.ebill.v1 import bill_pb2, issuance_pb2_grpc, lifecycle_pb2
from protos.ebill.v1 import lifecycle_pb2_grpc as lc_grpc
from tests.e2e.lifecycle_support import by_number, charge, op, serial
from tests.refusal import refused
from wire.bills import input_to_pb

pytestmark = pytest.mark.slow

_n = itertools.count(1)


async def test_a_red_bill_the_platform_refuses_leaves_the_original_issued(
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    lifecycle: lc_grpc.LifecycleServiceStub,
    pool: asyncpg.Pool,
) -> None:
    no = f"{9_700_000_000 + next(_n)}"
    entered = await lifecycle.BackEntry(
        lifecycle_pb2.BackEntryRequest(
            operator=op(), bill=input_to_pb(charge()), bill_code="44060119", bill_no=no,
            check_code="c0ffee", issued_at="20261001093000000",
        )
    )  # fmt: skip
    assert entered.status == bill_pb2.BILL_STATUS_ISSUED
    red_no = serial("R")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await lifecycle.RedFlush(
            lifecycle_pb2.RedFlushRequest(
                operator=op(), original=by_number(entered), bus_no=red_no, reason="refund"
            )
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, err.value.details()
    assert "UNKNOWN_ORIGINAL" in (err.value.details() or "")
    # The original is issued again, with the refusal in its log; the red bill is
    # on file under its number, rejected, and no longer waits for the platform.
    row = await pool.fetchrow(
        "SELECT o.status, r.status AS red_status, r.id AS red_id,"
        " (SELECT count(*) FROM outbox WHERE bill_id = r.id) AS queued"
        " FROM bills o JOIN bills r ON r.red_of = o.id"
        " WHERE o.bill_code = '44060119' AND o.bill_no = $1",
        no,
    )
    assert (row["status"], row["red_status"], row["queued"]) == ("issued", "rejected", 0)
    ops = [
        r["op"]
        for r in await pool.fetch(
            "SELECT op FROM bill_events e JOIN bills b ON b.id = e.bill_id"
            " WHERE b.bill_code = '44060119' AND b.bill_no = $1 ORDER BY e.id",
            no,
        )
    ]
    assert ops[-1] == "red_flush_refused"
    got = await issuance.GetBill(by_number(entered))
    assert got.status == bill_pb2.BILL_STATUS_ISSUED and got.red_by == ""

    # The same call again (same bus_no) does not answer with the refused red bill
    # as if it were issued: it is refused, naming the serial, and changes nothing.
    err = await refused(
        pool,
        lifecycle.RedFlush(
            lifecycle_pb2.RedFlushRequest(
                operator=op(), original=by_number(entered), bus_no=red_no, reason="refund"
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        field="bus_no",
    )
    assert red_no in (err.details() or "") and "refused" in (err.details() or "")
