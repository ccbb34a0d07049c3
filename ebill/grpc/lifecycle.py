"""LifecycleService over gRPC: red-flush, refund, back entry, listing, paper.

Each method reads the request's shape (wire.requests), calls a use case
(usecases.lifecycle, usecases.paper) and builds the answer (wire.bills).
Errors are raised as engine errors; ebill.interceptors turns them into status codes.
"""

from __future__ import annotations

import grpc

from ebill.grpc.auth import principal
from ebill.grpc.deadline import time_left
from engine.errors import InvalidArgument
from engine.identity import Permission
from engine.money import parse_fen
from engine.numbers import BillNo, NumberRange
from protos.ebill.v1 import bill_pb2, lifecycle_pb2, lifecycle_pb2_grpc
from usecases.lifecycle import BackEntry, BillQuery, Lifecycle, RedFlush, Refund
from usecases.paper import Paper, PaperOp, PaperRange, PaperStock
from wire.bills import PAPER_FROM_PB, bill_to_pb
from wire.requests import bill_key, code8, day, digits, number_range, point, stamp

__all__ = ["LifecycleServicer"]

_RED = {
    lifecycle_pb2.RED_FILTER_ANY: "",
    lifecycle_pb2.RED_FILTER_NORMAL: "normal",
    lifecycle_pb2.RED_FILTER_RED_FLUSHED: "red_flushed",
    lifecycle_pb2.RED_FILTER_RED_BILL: "red_bill",
}


class LifecycleServicer(lifecycle_pb2_grpc.LifecycleServiceServicer):
    def __init__(self, lifecycle: Lifecycle, paper: Paper) -> None:
        self._lifecycle = lifecycle
        self._paper = paper

    # -- red-flush and refund -----------------------------------------------

    async def RedFlush(
        self, request: lifecycle_pb2.RedFlushRequest, context: grpc.aio.ServicerContext
    ) -> lifecycle_pb2.RedFlushResponse:
        op = point(request.operator)
        key = bill_key(request.original, unit_code=op.unit_code, field="original")
        if not request.bus_no.strip():
            raise InvalidArgument("bus_no: is required (the red bill's serial)", field="bus_no")
        if not request.reason.strip():
            raise InvalidArgument("reason: is required", field="reason")
        done = await self._lifecycle.red_flush(
            op,
            RedFlush(
                original=key,
                bus_no=request.bus_no,
                reason=request.reason,
                void_paper=request.void_paper,
            ),
            timeout_s=time_left(context),
        )
        return lifecycle_pb2.RedFlushResponse(
            red_bill=bill_to_pb(done.red_bill), original=bill_to_pb(done.original)
        )

    async def Refund(
        self, request: lifecycle_pb2.RefundRequest, context: grpc.aio.ServicerContext
    ) -> lifecycle_pb2.RefundResponse:
        op = point(request.operator)
        key = bill_key(request.original, unit_code=op.unit_code, field="original")
        if not request.red_bus_no.strip():
            raise InvalidArgument("red_bus_no: is required", field="red_bus_no")
        try:
            refund_fen = parse_fen(request.refund_amount)
        except ValueError as exc:
            raise InvalidArgument(f"refund_amount: {exc}", field="refund_amount") from None
        done = await self._lifecycle.refund(
            op,
            Refund(
                original=key,
                red_bus_no=request.red_bus_no,
                refund_fen=refund_fen,
                reason=request.reason or f"refund {request.refund_amount}",
                remainder=(
                    request.remainder.SerializeToString() if request.HasField("remainder") else None
                ),
                void_paper=request.void_paper,
            ),
            timeout_s=time_left(context),
        )
        return lifecycle_pb2.RefundResponse(
            red_bill=bill_to_pb(done.red_bill),
            remainder=bill_to_pb(done.remainder) if done.remainder else None,
            original=bill_to_pb(done.original),
        )

    # -- back entry and listing -----------------------------------------------

    async def BackEntry(
        self, request: lifecycle_pb2.BackEntryRequest, context: grpc.aio.ServicerContext
    ) -> bill_pb2.IssuedBill:
        op = point(request.operator)
        if not request.HasField("bill"):
            raise InvalidArgument("bill: is required", field="bill")
        code8(request.bill_code)
        digits(request.bill_no, 10, "bill_no")
        if not 1 <= len(request.check_code) <= 20:
            raise InvalidArgument("check_code: 1 to 20 characters", field="check_code")
        issued_at = stamp(request.issued_at, "issued_at")
        bill = await self._lifecycle.back_entry(
            op,
            BackEntry(
                bill=request.bill.SerializeToString(),
                bill_code=request.bill_code,
                bill_no=request.bill_no,
                check_code=request.check_code,
                issued_at=issued_at,
            ),
        )
        return bill_to_pb(bill)

    async def ListBills(
        self, request: lifecycle_pb2.ListBillsRequest, context: grpc.aio.ServicerContext
    ) -> lifecycle_pb2.ListBillsResponse:
        op = point(request.operator)
        after = 0
        if request.page_token:
            if not request.page_token.isdigit():
                raise InvalidArgument("page_token: not a token from this API", field="page_token")
            after = int(request.page_token)
        page = await self._lifecycle.list_bills(
            op,
            BillQuery(
                payer_id_card_no=request.payer_id_card_no,
                payer_tel=request.payer_tel,
                payer_card_no=request.payer_card_no,
                from_date=day(request.from_date, "from_date") if request.from_date else None,
                to_date=day(request.to_date, "to_date") if request.to_date else None,
                bill_kind=request.bill_kind,
                paper_status=PAPER_FROM_PB.get(request.paper_status, ""),
                red=_RED.get(request.red, ""),
                page_size=request.page_size,
                after_id=after,
            ),
            # Payer data in clear only for bill.read_pii (masked otherwise).
            reveal_pii=principal().can(Permission.BILL_READ_PII),
        )
        return lifecycle_pb2.ListBillsResponse(
            bills=[bill_to_pb(b) for b in page.bills],
            next_page_token=str(page.next_after_id) if page.next_after_id else "",
        )

    # -- paper --------------------------------------------------------------

    async def ReceivePaper(
        self, request: lifecycle_pb2.ReceivePaperRequest, context: grpc.aio.ServicerContext
    ) -> lifecycle_pb2.PaperRange:
        op = point(request.operator)
        code8(request.paper_code, "paper_code")
        numbers = NumberRange.of(*number_range(request.start_no, request.end_no))
        return _range_pb(await self._paper.receive(op, request.paper_code, numbers))

    async def GetPaperStock(
        self, request: lifecycle_pb2.GetPaperStockRequest, context: grpc.aio.ServicerContext
    ) -> lifecycle_pb2.PaperStock:
        return _stock_pb(await self._paper.stock(point(request.operator)))

    async def _on_bill(
        self, request: lifecycle_pb2.PaperBillRequest, what: PaperOp
    ) -> lifecycle_pb2.PaperBillResponse:
        op = point(request.operator)
        key = bill_key(request.bill, unit_code=op.unit_code, field="bill")
        out = await self._paper.on_bill(op, key, what, request.reason)
        return lifecycle_pb2.PaperBillResponse(
            bill=bill_to_pb(out.bill),
            paper_code=out.paper_code,
            paper_no=out.paper_no,
            prints=out.prints,
        )

    async def ConvertToPaper(
        self, request: lifecycle_pb2.PaperBillRequest, context: grpc.aio.ServicerContext
    ) -> lifecycle_pb2.PaperBillResponse:
        return await self._on_bill(request, PaperOp.CONVERT)

    async def Reprint(
        self, request: lifecycle_pb2.PaperBillRequest, context: grpc.aio.ServicerContext
    ) -> lifecycle_pb2.PaperBillResponse:
        return await self._on_bill(request, PaperOp.REPRINT)

    async def ReissuePaper(
        self, request: lifecycle_pb2.PaperBillRequest, context: grpc.aio.ServicerContext
    ) -> lifecycle_pb2.PaperBillResponse:
        return await self._on_bill(request, PaperOp.REISSUE)

    async def VoidPaper(
        self, request: lifecycle_pb2.PaperBillRequest, context: grpc.aio.ServicerContext
    ) -> lifecycle_pb2.PaperBillResponse:
        return await self._on_bill(request, PaperOp.VOID)

    async def VoidBlankPaper(
        self, request: lifecycle_pb2.VoidBlankPaperRequest, context: grpc.aio.ServicerContext
    ) -> lifecycle_pb2.PaperStock:
        op = point(request.operator)
        code8(request.paper_code, "paper_code")
        numbers = NumberRange.of(*number_range(request.start_no, request.end_no))
        stock = await self._paper.void_blank(op, request.paper_code, numbers, request.reason)
        return _stock_pb(stock)


def _range_pb(r: PaperRange) -> lifecycle_pb2.PaperRange:
    return lifecycle_pb2.PaperRange(
        id=r.id,
        paper_code=r.paper_code,
        start_no=str(BillNo(r.start_no)),
        end_no=str(BillNo(r.end_no)),
        next_no=str(BillNo(r.next_no)) if r.next_no is not None else "",
        remaining=r.remaining,
        received_at=r.received_at.isoformat(),
    )


def _stock_pb(s: PaperStock) -> lifecycle_pb2.PaperStock:
    return lifecycle_pb2.PaperStock(
        ranges=[_range_pb(r) for r in s.ranges],
        next_paper_code=s.next_paper_code,
        next_paper_no=str(s.next_paper_no) if s.next_paper_no is not None else "",
        remaining=s.remaining,
    )
