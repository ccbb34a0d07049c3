"""Stock management over gRPC on the session stack, where stock comes from:
grant applications with the fiscal sandbox (draft, edit, delete, submit, sync,
enable) and opening stock entered and confirmed by two people.

After every operation the stock identity granted = issued + available + voided +
returned is checked. Movements are in test_stock_movements.py; write-off, audit
and destruction in test_stock_writeoff.py; the helpers they share in
stock_support.py.
"""

from __future__ import annotations

import asyncpg
import grpc
import pytest

from protos.ebill.v1 import (
    stock_pb2,
    stock_pb2_grpc,
)
from tests.e2e.stock_support import (
    CODE,
    balanced,
    office,
    point,
)
from tests.refusal import refused

pytestmark = pytest.mark.slow


async def test_grant_application_draft_edit_delete_submit_sync_enable(
    stock: stock_pb2_grpc.StockServiceStub, pool: asyncpg.Pool
) -> None:
    before = await balanced(stock)
    app = await stock.CreateGrantApplication(
        stock_pb2.GrantApplicationRequest(operator=office(), bill_code=CODE, count=300)
    )
    assert app.status == "draft" and app.created_by == "manager-a"
    app = await stock.UpdateGrantApplication(
        stock_pb2.GrantApplicationRequest(
            operator=office(), id=app.id, bill_code=CODE, count=500, reason="flu season"
        )
    )
    assert (app.count, app.reason) == (500, "flu season")
    spare = await stock.CreateGrantApplication(
        stock_pb2.GrantApplicationRequest(operator=office(), bill_code=CODE, count=1)
    )
    await stock.DeleteGrantApplication(stock_pb2.ByIdRequest(operator=office(), id=spare.id))
    await refused(
        pool,
        stock.CreateGrantApplication(
            stock_pb2.GrantApplicationRequest(operator=office(), bill_code="12345678", count=5)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="bill_code",
    )
    # An issuing point does not apply to the platform.
    await refused(
        pool,
        stock.CreateGrantApplication(
            stock_pb2.GrantApplicationRequest(operator=point("005"), bill_code=CODE, count=5)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="operator.place_code",
    )

    submitted = await stock.SubmitGrantApplication(
        stock_pb2.ByIdRequest(operator=office(), id=app.id)
    )
    assert submitted.status == "submitted" and submitted.fiscal_ref
    # Submitted: no more edits, no deletion.
    for call in (
        stock.UpdateGrantApplication(
            stock_pb2.GrantApplicationRequest(operator=office(), id=app.id, bill_code=CODE, count=9)
        ),
        stock.DeleteGrantApplication(stock_pb2.ByIdRequest(operator=office(), id=app.id)),
        stock.EnableGrant(stock_pb2.ByIdRequest(operator=office(), id=app.id)),
    ):
        await refused(pool, call, grpc.StatusCode.FAILED_PRECONDITION)

    too_big = await stock.CreateGrantApplication(
        stock_pb2.GrantApplicationRequest(operator=office(), bill_code=CODE, count=200_000)
    )
    await stock.SubmitGrantApplication(stock_pb2.ByIdRequest(operator=office(), id=too_big.id))
    synced = await stock.SyncGrantApplications(stock_pb2.OperatorOnly(operator=office()))
    by_id = {a.id: a for a in synced.applications}
    granted, rejected = by_id[app.id], by_id[too_big.id]
    assert granted.status == "granted"
    assert int(granted.end_no) - int(granted.start_no) + 1 == 500
    assert rejected.status == "rejected" and "exceeds" in rejected.reject_reason
    assert spare.id not in by_id

    enabled = await stock.EnableGrant(stock_pb2.ByIdRequest(operator=office(), id=app.id))
    assert enabled.status == "enabled"
    await refused(
        pool,
        stock.EnableGrant(stock_pb2.ByIdRequest(operator=office(), id=app.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    held = await stock.QueryStock(stock_pb2.StockQuery(operator=office(), office=True))
    seg = next(s for s in held.segments if s.start_no == granted.start_no)
    assert (seg.place_code, seg.status, seg.remaining) == ("", "enabled", 500)
    after = await balanced(stock)
    assert after[CODE].granted == before[CODE].granted + 500
    assert after[CODE].available == before[CODE].available + 500


async def test_opening_stock_is_entered_then_confirmed_by_another_person(
    stock: stock_pb2_grpc.StockServiceStub,
    manager_a: stock_pb2_grpc.StockServiceStub,
    manager_b: stock_pb2_grpc.StockServiceStub,
    pool: asyncpg.Pool,
) -> None:
    before = await balanced(stock)
    # Entered by signed-in manager-a; confirmed by manager-a again: refused.
    entry = await manager_a.EnterOpeningStock(
        stock_pb2.OpeningStockRequest(
            operator=office(""), bill_code=CODE, start_no="9000000001",
            end_no="9000000100", next_no="9000000041",
        )
    )  # fmt: skip
    assert await balanced(stock) == before  # a draft is not stock yet
    await refused(
        pool,
        manager_a.ConfirmOpeningStock(stock_pb2.ByIdRequest(operator=office(""), id=entry.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        field="operator.operator",
    )
    # The demo HIS app is not a person: it cannot be the second one.
    await refused(
        pool,
        stock.ConfirmOpeningStock(stock_pb2.ByIdRequest(operator=office("checker"), id=entry.id)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    # Naming another person than the one signed in is refused.
    await refused(
        pool,
        manager_b.ConfirmOpeningStock(
            stock_pb2.ByIdRequest(operator=office("checker"), id=entry.id)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await manager_b.ConfirmOpeningStock(stock_pb2.ByIdRequest(operator=office(""), id=entry.id))
    after = await balanced(stock)
    assert after[CODE].granted == before[CODE].granted + 100
    assert after[CODE].issued_before_go_live == before[CODE].issued_before_go_live + 40
    assert after[CODE].available == before[CODE].available + 60
    overlap = await stock.EnterOpeningStock(
        stock_pb2.OpeningStockRequest(
            operator=office("clerk-in"), bill_code=CODE, start_no="9000000050",
            end_no="9000000150", next_no="9000000050",
        )
    )  # fmt: skip
    await refused(
        pool,
        manager_b.ConfirmOpeningStock(stock_pb2.ByIdRequest(operator=office(""), id=overlap.id)),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    await refused(
        pool,
        stock.EnterOpeningStock(
            stock_pb2.OpeningStockRequest(
                operator=office(), bill_code=CODE, start_no="9000000200", end_no="9000000300",
                next_no="9000000400",
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="next_no",
    )  # fmt: skip
