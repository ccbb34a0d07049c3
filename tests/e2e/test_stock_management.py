"""Stock management over gRPC on the session stack: grant applications with the
fiscal sandbox, opening stock, requisitions, distribution, query, enable/disable,
void, returns, low-stock warnings (mailed to a real SMTP server), write-off
declarations the platform rejects and then accepts, audit reports, destruction.

After every operation the stock identity granted = issued + available + voided +
returned is checked, also while bills are being issued concurrently.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import datetime, timedelta, timezone
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
from tests.e2e.conftest import STOCK_POINTS, Mailbox
from tests.factories import non_medical
from tests.refusal import refused
from usecases import demo
from wire.bills import input_to_pb

pytestmark = pytest.mark.slow

CODE = "44060119"
_seq = itertools.count(1)
CST = timezone(timedelta(hours=8))


def office(who: str = "manager-a") -> lifecycle_pb2.Operator:
    return lifecycle_pb2.Operator(unit_code=demo.UNIT_CODE, operator=who)


def point(place: str, who: str = "cashier-x") -> lifecycle_pb2.Operator:
    return lifecycle_pb2.Operator(unit_code=demo.UNIT_CODE, place_code=place, operator=who)


def today() -> str:
    return datetime.now(CST).strftime("%Y%m%d")


async def balanced(stock: stock_pb2_grpc.StockServiceStub) -> dict[str, Any]:
    """Assert the stock identity for every bill code; returns the lines by code."""
    ident = await stock.GetStockIdentity(stock_pb2.OperatorOnly(operator=office()))
    lines = {line.bill_code: line for line in ident.lines}
    for line in ident.lines:
        assert line.granted == line.issued + line.available + line.voided + line.returned, line
        assert line.balanced
    return lines


async def office_stock(stock: stock_pb2_grpc.StockServiceStub, count: int) -> stock_pb2.Range:
    """Numbers for the bill office, the way a unit gets them: apply, submit, sync, enable."""
    app = await stock.CreateGrantApplication(
        stock_pb2.GrantApplicationRequest(operator=office(), bill_code=CODE, count=count)
    )
    await stock.SubmitGrantApplication(stock_pb2.ByIdRequest(operator=office(), id=app.id))
    await stock.SyncGrantApplications(stock_pb2.OperatorOnly(operator=office()))
    enabled = await stock.EnableGrant(stock_pb2.ByIdRequest(operator=office(), id=app.id))
    assert enabled.status == "enabled"
    return stock_pb2.Range(bill_code=CODE, start_no=enabled.start_no, end_no=enabled.end_no)


def bill_at(place: str, bus_type: str = "02") -> bill_pb2.BillRequest:
    n = next(_seq)
    b = demo.demo_bill(n, prefix=f"SK{n:05d}", place_code=place, bus_type=bus_type)
    return input_to_pb(b)


async def available(stock: stock_pb2_grpc.StockServiceStub, place: str) -> int:
    resp = await stock.QueryStock(stock_pb2.StockQuery(operator=point(place)))
    return sum(s.remaining for s in resp.segments if s.bill_code == CODE and s.status == "enabled")


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
    stock: stock_pb2_grpc.StockServiceStub, pool: asyncpg.Pool
) -> None:
    before = await balanced(stock)
    entry = await stock.EnterOpeningStock(
        stock_pb2.OpeningStockRequest(
            operator=office("clerk-in"), bill_code=CODE, start_no="9000000001",
            end_no="9000000100", next_no="9000000041",
        )
    )  # fmt: skip
    assert await balanced(stock) == before  # a draft is not stock yet
    await refused(
        pool,
        stock.ConfirmOpeningStock(stock_pb2.ByIdRequest(operator=office("clerk-in"), id=entry.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        field="operator.operator",
    )
    await stock.ConfirmOpeningStock(stock_pb2.ByIdRequest(operator=office("checker"), id=entry.id))
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
        stock.ConfirmOpeningStock(stock_pb2.ByIdRequest(operator=office("checker"), id=overlap.id)),
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


async def test_requisition_distribution_query_disable_void_and_returns(
    stock: stock_pb2_grpc.StockServiceStub,
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    pool: asyncpg.Pool,
) -> None:
    place = STOCK_POINTS[0]
    await office_stock(stock, 400)
    await balanced(stock)

    # Requisition: asked by the point, approved by the office, distributed at once.
    req = await stock.RequestRequisition(
        stock_pb2.RequisitionRequest(operator=point(place), bill_code=CODE, count=100)
    )
    moved = await stock.DecideRequisition(
        stock_pb2.DecisionRequest(operator=office(), id=req.id, approve=True)
    )
    assert sum(int(r.end_no) - int(r.start_no) + 1 for r in moved.ranges) == 100
    assert await available(stock, place) == 100
    await balanced(stock)
    await refused(
        pool,
        stock.DecideRequisition(stock_pb2.DecisionRequest(operator=office(), id=req.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    # More than the office holds: refused, the requisition stays pending.
    huge = await stock.RequestRequisition(
        stock_pb2.RequisitionRequest(operator=point(place), bill_code=CODE, count=9_000_000)
    )
    await refused(
        pool,
        stock.DecideRequisition(
            stock_pb2.DecisionRequest(operator=office(), id=huge.id, approve=True)
        ),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    await stock.DecideRequisition(
        stock_pb2.DecisionRequest(operator=office(), id=huge.id, approve=False, reason="too many")
    )

    # Manual distribution of a range.
    held = await stock.QueryStock(stock_pb2.StockQuery(operator=office(), office=True))
    seg = next(
        s
        for s in held.segments
        if s.bill_code == CODE and s.status == "enabled" and s.remaining >= 30
    )
    start = int(seg.next_no)
    await stock.Distribute(
        stock_pb2.DistributeRequest(
            operator=office(), to_place_code=place, bill_code=CODE,
            start_no=f"{start:010d}", end_no=f"{start + 29:010d}",
        )
    )  # fmt: skip
    assert await available(stock, place) == 130
    await refused(
        pool,
        stock.Distribute(
            stock_pb2.DistributeRequest(
                operator=office(), to_place_code=place, bill_code=CODE,
                start_no=f"{start:010d}", end_no=f"{start + 5:010d}",
            )
        ),
        grpc.StatusCode.NOT_FOUND,
        field="start_no",
    )  # fmt: skip

    # Issue at the point: numbers come from its stock.
    bill = (await issuance.IssueBill(issuance_pb2.IssueBillRequest(bill=bill_at(place)))).bill
    assert bill.status == bill_pb2.BILL_STATUS_ISSUED
    mine = await stock.QueryStock(stock_pb2.StockQuery(operator=point(place)))
    assert all(s.place_code == place for s in mine.segments)
    assert all(s.received_at for s in mine.segments)
    assert await available(stock, place) == 129
    await balanced(stock)

    # Disable every segment of the point: nothing is issued there; enable again.
    for s in mine.segments:
        await stock.SetSegmentEnabled(
            stock_pb2.SegmentEnabledRequest(operator=office(), segment_id=s.id, enabled=False)
        )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await issuance.IssueBill(issuance_pb2.IssueBillRequest(bill=bill_at(place)))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    ident = await balanced(stock)
    for s in mine.segments:
        await stock.SetSegmentEnabled(
            stock_pb2.SegmentEnabledRequest(operator=office(), segment_id=s.id, enabled=True)
        )
    assert (await balanced(stock))[CODE].available == ident[CODE].available

    # Void the tail of a segment; numbers already on bills cannot be voided.
    mine = await stock.QueryStock(stock_pb2.StockQuery(operator=point(place)))
    seg = max(mine.segments, key=lambda s: s.remaining)
    end = int(seg.end_no)
    before = await balanced(stock)
    await stock.VoidStock(
        stock_pb2.RangeRequest(
            operator=point(place), bill_code=CODE, start_no=f"{end - 4:010d}",
            end_no=f"{end:010d}", reason="printer test",
        )
    )  # fmt: skip
    after = await balanced(stock)
    assert after[CODE].voided == before[CODE].voided + 5
    await refused(
        pool,
        stock.VoidStock(
            stock_pb2.RangeRequest(
                operator=point(place), bill_code=CODE, start_no=bill.bill_no,
                end_no=bill.bill_no, reason="x",
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        field="start_no",
    )  # fmt: skip

    # Return ten numbers to the office: held as returning, confirmed back to the office.
    end -= 5
    ret = await stock.RequestReturn(
        stock_pb2.RangeRequest(
            operator=point(place), bill_code=CODE, start_no=f"{end - 9:010d}",
            end_no=f"{end:010d}", reason="window closing",
        )
    )  # fmt: skip
    assert await available(stock, place) == 129 - 5 - 10
    mid = await balanced(stock)
    await stock.DecideReturn(stock_pb2.DecisionRequest(operator=office(), id=ret.id, approve=True))
    held = await stock.QueryStock(stock_pb2.StockQuery(operator=office(), office=True))
    back = next(s for s in held.segments if s.start_no == f"{end - 9:010d}")
    assert (back.status, back.remaining) == ("enabled", 10)
    assert (await balanced(stock))[CODE].available == mid[CODE].available

    # The office returns those ten to the platform: returned for good.
    up = await stock.RequestReturn(
        stock_pb2.RangeRequest(
            operator=office(), bill_code=CODE, start_no=back.start_no, end_no=back.end_no,
            reason="surplus",
        )
    )  # fmt: skip
    await stock.DecideReturn(stock_pb2.DecisionRequest(operator=office(), id=up.id, approve=True))
    final = await balanced(stock)
    assert final[CODE].returned == mid[CODE].returned + 10
    # A rejected return goes back into the sender's stock.
    end -= 10
    rej = await stock.RequestReturn(
        stock_pb2.RangeRequest(
            operator=point(place), bill_code=CODE, start_no=f"{end - 1:010d}",
            end_no=f"{end:010d}",
        )
    )  # fmt: skip
    await stock.DecideReturn(stock_pb2.DecisionRequest(operator=office(), id=rej.id))
    assert await available(stock, place) == 129 - 5 - 10
    await balanced(stock)


async def test_identity_holds_under_concurrent_issuance(
    stock: stock_pb2_grpc.StockServiceStub,
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    pool: asyncpg.Pool,
) -> None:
    place = STOCK_POINTS[2]
    await office_stock(stock, 2000)
    await stock.Distribute(
        stock_pb2.DistributeRequest(
            operator=office(), to_place_code=place, bill_code=CODE, count=300
        )
    )
    stop = asyncio.Event()
    issued: list[str] = []

    async def issue_forever() -> None:
        while not stop.is_set():
            resp = await issuance.IssueBatch(
                issuance_pb2.IssueBatchRequest(bills=[bill_at(place) for _ in range(20)])
            )
            for r in resp.results:
                if r.HasField("bill"):
                    issued.append(r.bill.bill_no)
                else:
                    assert r.error.code == "RESOURCE_EXHAUSTED", r.error

    async def tail(n: int) -> tuple[int, int] | None:
        mine = await stock.QueryStock(stock_pb2.StockQuery(operator=point(place)))
        segs = [s for s in mine.segments if s.status == "enabled" and s.remaining > n + 40]
        if not segs:
            return None
        end = int(segs[-1].end_no)
        return end - n + 1, end

    async def churn() -> int:
        ops = 0
        # At least three rounds of every kind, and on until enough bills went through.
        for i in range(60):
            if i >= 12 and len(issued) >= 60:
                break
            kind = i % 4
            try:
                if kind == 0:
                    await stock.Distribute(
                        stock_pb2.DistributeRequest(
                            operator=office(), to_place_code=place, bill_code=CODE, count=40
                        )
                    )
                elif kind in (1, 2) and (r := await tail(3)) is not None:
                    rr = stock_pb2.RangeRequest(
                        operator=point(place), bill_code=CODE, start_no=f"{r[0]:010d}",
                        end_no=f"{r[1]:010d}", reason="churn",
                    )  # fmt: skip
                    if kind == 1:
                        await stock.VoidStock(rr)
                    else:
                        ret = await stock.RequestReturn(rr)
                        await stock.DecideReturn(
                            stock_pb2.DecisionRequest(operator=office(), id=ret.id, approve=True)
                        )
                elif kind == 3:
                    segs = await stock.QueryStock(stock_pb2.StockQuery(operator=point(place)))
                    s = segs.segments[0]
                    if s.status in ("enabled", "disabled"):
                        for enabled in (False, True):
                            await stock.SetSegmentEnabled(
                                stock_pb2.SegmentEnabledRequest(
                                    operator=office(), segment_id=s.id, enabled=enabled
                                )
                            )
                ops += 1
            except grpc.aio.AioRpcError as exc:
                # Issuance may have taken the numbers first: refused, nothing moved.
                assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION, exc.details()
            await balanced(stock)
            await asyncio.sleep(0.05)
        return ops

    issuer = asyncio.create_task(issue_forever())
    try:
        ops = await churn()
    finally:
        stop.set()
        await issuer
    assert ops >= 8 and len(issued) >= 40
    assert len(set(issued)) == len(issued)
    lines = await balanced(stock)
    # Numbers leased from segments are exactly the bills stored on them.
    assert lines[CODE].issued - lines[CODE].issued_before_go_live == lines[CODE].bills


async def test_low_stock_warning_fires_exactly_when_the_threshold_is_crossed(
    stock: stock_pb2_grpc.StockServiceStub,
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    mailbox: Mailbox,
) -> None:
    place = STOCK_POINTS[1]
    await office_stock(stock, 100)
    await stock.Distribute(
        stock_pb2.DistributeRequest(operator=office(), to_place_code=place, bill_code=CODE, count=8)
    )
    await stock.SetAlertRule(
        stock_pb2.AlertRuleRequest(
            operator=office(), place_code=place, bill_code=CODE, threshold=5,
            email="billing-office@hospital.test",
        )
    )  # fmt: skip

    async def alerts() -> list[stock_pb2.Alert]:
        resp = await stock.ListAlerts(stock_pb2.ListAlertsRequest(operator=point(place)))
        return list(resp.alerts)

    async def issue_one() -> None:
        await issuance.IssueBill(issuance_pb2.IssueBillRequest(bill=bill_at(place)))

    for left in (7, 6, 5):  # 8 -> 5: at the threshold, not under it
        await issue_one()
        assert await available(stock, place) == left
        assert await alerts() == []
    await issue_one()  # 5 -> 4: crossed
    fired = await alerts()
    assert len(fired) == 1 and fired[0].available == 4 and fired[0].threshold == 5
    await issue_one()  # 4 -> 3: still under, no second warning
    assert len(await alerts()) == 1

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not any(
        place in str(m["Subject"]) for m in mailbox.messages
    ):
        await asyncio.sleep(0.2)
    mails = [m for m in mailbox.messages if place in str(m["Subject"])]
    assert len(mails) == 1
    assert mails[0]["To"] == "billing-office@hospital.test"
    assert CODE in str(mails[0]["Subject"])
    assert "has 4 numbers" in mails[0].get_content()

    # Topped up over the threshold: re-armed, no warning; crossing again warns again.
    await stock.Distribute(
        stock_pb2.DistributeRequest(operator=office(), to_place_code=place, bill_code=CODE, count=3)
    )
    assert await available(stock, place) == 6
    assert len(await alerts()) == 1
    await issue_one()  # 6 -> 5
    assert len(await alerts()) == 1
    await issue_one()  # 5 -> 4
    assert len(await alerts()) == 2
    read = await stock.ListAlerts(
        stock_pb2.ListAlertsRequest(operator=point(place), mark_read=True)
    )
    assert not any(a.read for a in read.alerts)
    assert all(a.read for a in await alerts())


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
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    lifecycle: Any,
    pool: asyncpg.Pool,
) -> None:
    paper_code = "44990219"
    await lifecycle.ReceivePaper(
        lifecycle_pb2.ReceivePaperRequest(
            operator=point("002"), paper_code=paper_code, start_no="0000000001",
            end_no="0000000050",
        )
    )  # fmt: skip
    for _ in range(3):
        b = (await issuance.IssueBill(issuance_pb2.IssueBillRequest(bill=bill_at("002")))).bill
        await lifecycle.ConvertToPaper(
            lifecycle_pb2.PaperBillRequest(
                operator=point("002"),
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
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stock.DecideDestruction(
            stock_pb2.DecisionRequest(operator=office(), id=req.id, approve=True)
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await stock.DecideDestruction(
        stock_pb2.DecisionRequest(operator=office("manager-b"), id=req.id, approve=True)
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


async def test_automatic_distribution_tops_a_point_up(
    stock: stock_pb2_grpc.StockServiceStub,
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
) -> None:
    place = STOCK_POINTS[3]
    await office_stock(stock, 200)
    assert await available(stock, place) == 0
    await stock.SetAutoDistribution(
        stock_pb2.AutoDistributionRequest(
            operator=office(), place_code=place, bill_code=CODE, below=10, batch=15
        )
    )

    async def wait_for(n: int) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and await available(stock, place) != n:
            await asyncio.sleep(0.2)
        assert await available(stock, place) == n

    await wait_for(15)
    # Use six: 9 left, under the level: the engine moves another batch.
    resp = await issuance.IssueBatch(
        issuance_pb2.IssueBatchRequest(bills=[bill_at(place) for _ in range(6)])
    )
    assert all(r.HasField("bill") for r in resp.results)
    await wait_for(24)
    moved = await stock.QueryStock(stock_pb2.StockQuery(operator=point(place)))
    assert {s.place_code for s in moved.segments} == {place}
    await balanced(stock)
    await stock.SetAutoDistribution(
        stock_pb2.AutoDistributionRequest(
            operator=office(), place_code=place, bill_code=CODE, below=10, batch=0
        )
    )
