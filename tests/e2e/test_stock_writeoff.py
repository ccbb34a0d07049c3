"""Where stock goes at the end, over gRPC on the session stack: write-off
declarations the platform rejects and then accepts (e-bills and paper with lost
numbers), destruction requests after retention, and the audit report.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import grpc
import pytest

from protos.ebill.v1 import (
    bill_pb2,
    issuance_pb2,
    issuance_pb2_grpc,
    lifecycle_pb2,
    stock_pb2,
    stock_pb2_grpc,
)
from tests.e2e.conftest import PAPER_POINT
from tests.e2e.stock_support import (
    bill_at,
    office,
    point,
    today,
)
from tests.factories import non_medical
from tests.refusal import refused
from wire.bills import input_to_pb

pytestmark = pytest.mark.slow


async def test_write_off_rejected_by_the_platform_is_fixed_and_accepted(
    stock: stock_pb2_grpc.StockServiceStub,
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    pool: asyncpg.Pool,
) -> None:
    code = "44040119"  # donation bills

    def donation_bill() -> bill_pb2.BillRequest:
        return input_to_pb(non_medical("10", "D01", "捐赠收入", "500.00"))

    await issuance.IssueBill(issuance_pb2.IssueBillRequest(bill=donation_bill()))
    wo = await stock.CreateWriteOff(
        stock_pb2.CreateWriteOffRequest(
            operator=office(), medium="ebill", code=code, period_from=today(), period_to=today()
        )
    )
    assert wo.status == "draft" and wo.issued_count >= 1 and wo.used
    # A bill issued after the draft was made: the platform's figures now differ.
    await issuance.IssueBill(issuance_pb2.IssueBillRequest(bill=donation_bill()))
    rejected = await stock.SubmitWriteOff(stock_pb2.ByIdRequest(operator=office(), id=wo.id))
    assert rejected.status == "rejected" and "differ" in rejected.reject_reason
    await refused(
        pool,
        stock.SubmitWriteOff(stock_pb2.ByIdRequest(operator=office(), id=wo.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    fixed = await stock.UpdateWriteOff(
        stock_pb2.UpdateWriteOffRequest(operator=office(), id=wo.id, recompute=True, remark="v2")
    )
    assert fixed.status == "draft" and fixed.issued_count == wo.issued_count + 1
    accepted = await stock.SubmitWriteOff(stock_pb2.ByIdRequest(operator=office(), id=wo.id))
    assert accepted.status == "accepted", accepted.reject_reason
    assert [s.outcome for s in accepted.submissions] == ["rejected", "accepted"]
    history = await stock.ListWriteOffs(stock_pb2.OperatorOnly(operator=office()))
    assert any(w.id == wo.id and w.status == "accepted" for w in history.write_offs)
    # The period is declared: a second declaration over it is refused.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stock.CreateWriteOff(
            stock_pb2.CreateWriteOffRequest(
                operator=office(), medium="ebill", code=code, period_from=today(),
                period_to=today(),
            )
        )  # fmt: skip
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_paper_write_off_with_lost_numbers_and_destruction_request(
    stock: stock_pb2_grpc.StockServiceStub,
    manager_a: stock_pb2_grpc.StockServiceStub,
    manager_b: stock_pb2_grpc.StockServiceStub,
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    lifecycle: Any,
    pool: asyncpg.Pool,
) -> None:
    paper_code = "44990219"
    await lifecycle.ReceivePaper(
        lifecycle_pb2.ReceivePaperRequest(
            operator=point(PAPER_POINT), paper_code=paper_code, start_no="0000000001",
            end_no="0000000050",
        )
    )  # fmt: skip
    for _ in range(3):
        b = (
            await issuance.IssueBill(issuance_pb2.IssueBillRequest(bill=bill_at(PAPER_POINT)))
        ).bill
        await lifecycle.ConvertToPaper(
            lifecycle_pb2.PaperBillRequest(
                operator=point(PAPER_POINT),
                bill=issuance_pb2.GetBillRequest(
                    by_number=issuance_pb2.BillNumberKey(bill_code=b.bill_code, bill_no=b.bill_no)
                ),
            )
        )
    wo = await stock.CreateWriteOff(
        stock_pb2.CreateWriteOffRequest(
            operator=office(), medium="paper", code=paper_code, period_from=today(),
            period_to=today(),
        )
    )  # fmt: skip
    assert wo.printed_count == 3 and wo.used[0].start_no == "0000000001"
    # A lost range that overlaps printed paper: the platform refuses it.
    bad = await stock.UpdateWriteOff(
        stock_pb2.UpdateWriteOffRequest(
            operator=office(), id=wo.id,
            lost=[stock_pb2.NumberRange(start_no="0000000003", end_no="0000000004")],
        )
    )  # fmt: skip
    assert bad.lost_count == 2
    # Numbers the unit never held cannot be lost.
    await refused(
        pool,
        stock.UpdateWriteOff(
            stock_pb2.UpdateWriteOffRequest(
                operator=office(),
                id=wo.id,
                lost=[stock_pb2.NumberRange(start_no="0000000049", end_no="0000000060")],
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="lost[0]",
    )
    rejected = await stock.SubmitWriteOff(stock_pb2.ByIdRequest(operator=office(), id=wo.id))
    assert rejected.status == "rejected" and "0000000003" in rejected.reject_reason
    await stock.UpdateWriteOff(
        stock_pb2.UpdateWriteOffRequest(
            operator=office(), id=wo.id,
            lost=[stock_pb2.NumberRange(start_no="0000000004", end_no="0000000004")],
        )
    )  # fmt: skip
    accepted = await stock.SubmitWriteOff(stock_pb2.ByIdRequest(operator=office(), id=wo.id))
    assert accepted.status == "accepted", accepted.reject_reason
    assert accepted.lost_count == 1

    # Destruction: refused within retention, allowed after, decided by another person.
    dr = stock_pb2.DestructionRequest(
        operator=office(), paper_code=paper_code, start_no="0000000001", end_no="0000000003"
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stock.RequestDestruction(dr)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "retention" in (info.value.details() or "")
    # Six years pass for these three paper bills.
    await pool.execute(
        "UPDATE paper_bills SET printed_at = printed_at - interval '6 years'"
        " WHERE paper_code = $1 AND paper_no <= '0000000003'",
        paper_code,
    )
    req = await stock.RequestDestruction(dr)
    # Requested as manager-a (by the HIS app); signed-in manager-a cannot decide it.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await manager_a.DecideDestruction(
            stock_pb2.DecisionRequest(operator=office(""), id=req.id, approve=True)
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await manager_b.DecideDestruction(
        stock_pb2.DecisionRequest(operator=office(""), id=req.id, approve=True)
    )
    status = await pool.fetchval("SELECT status FROM destruction_requests WHERE id = $1", req.id)
    assert status == "approved"


async def test_audit_report_matches_the_platform(
    stock: stock_pb2_grpc.StockServiceStub, pool: asyncpg.Pool
) -> None:
    await asyncio.sleep(0)  # every earlier bill of the session is finished by now
    left = await pool.fetchval("SELECT count(*) FROM outbox")
    assert left == 0
    report = await stock.SubmitAuditReport(
        stock_pb2.AuditReportRequest(operator=office(), period_from=today(), period_to=today())
    )
    assert report.fiscal_ref and report.lines
    for line in report.lines:
        assert line.matches, line
        assert line.platform_count == line.count
