"""Stock movements over gRPC on the session stack: requisitions, distribution
(by hand and automatic), query, enable/disable, void, returns, and low-stock
warnings mailed to a real SMTP server.

After every operation the stock identity granted = issued + available + voided +
returned is checked, also while bills are being issued concurrently.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import grpc
import pytest

from protos.ebill.v1 import (
    bill_pb2,
    issuance_pb2,
    issuance_pb2_grpc,
    stock_pb2,
    stock_pb2_grpc,
)
from tests.e2e.conftest import STOCK_POINTS, Mailbox
from tests.e2e.stock_support import (
    CODE,
    available,
    balanced,
    bill_at,
    office,
    office_stock,
    point,
)
from tests.refusal import refused

pytestmark = pytest.mark.slow


async def test_requisition_distribution_query_disable_void_and_returns(
    stock: stock_pb2_grpc.StockServiceStub,
    manager_b: stock_pb2_grpc.StockServiceStub,
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
    moved = await manager_b.DecideRequisition(
        stock_pb2.DecisionRequest(operator=office(""), id=req.id, approve=True)
    )
    assert sum(int(r.end_no) - int(r.start_no) + 1 for r in moved.ranges) == 100
    assert await available(stock, place) == 100
    await balanced(stock)
    await refused(
        pool,
        manager_b.DecideRequisition(stock_pb2.DecisionRequest(operator=office(""), id=req.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    # More than the office holds: refused, the requisition stays pending.
    huge = await stock.RequestRequisition(
        stock_pb2.RequisitionRequest(operator=point(place), bill_code=CODE, count=9_000_000)
    )
    await refused(
        pool,
        manager_b.DecideRequisition(
            stock_pb2.DecisionRequest(operator=office(""), id=huge.id, approve=True)
        ),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    await manager_b.DecideRequisition(
        stock_pb2.DecisionRequest(operator=office(""), id=huge.id, approve=False, reason="too many")
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
    await manager_b.DecideReturn(
        stock_pb2.DecisionRequest(operator=office(""), id=ret.id, approve=True)
    )
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
    await manager_b.DecideReturn(
        stock_pb2.DecisionRequest(operator=office(""), id=up.id, approve=True)
    )
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
    await manager_b.DecideReturn(stock_pb2.DecisionRequest(operator=office(""), id=rej.id))
    assert await available(stock, place) == 129 - 5 - 10
    await balanced(stock)


async def test_identity_holds_under_concurrent_issuance(
    stock: stock_pb2_grpc.StockServiceStub,
    manager_b: stock_pb2_grpc.StockServiceStub,
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
                        await manager_b.DecideReturn(
                            stock_pb2.DecisionRequest(operator=office(""), id=ret.id, approve=True)
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
