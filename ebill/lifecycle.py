"""LifecycleService: red-flush, refund, back entry, listing, paper, over gRPC.

The edge checks the request's shape, reads what it needs and asks the pure rules
in engine.lifecycle for a clear refusal before any work; the transaction that
writes checks the same rules again under row locks, so two windows racing on one
bill cannot both succeed.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg
import grpc

from actors.pipeline import Pipeline
from ebill.batcher import MicroBatcher
from ebill.convert import PAPER_FROM_PB, bill_to_pb
from ebill.rpc import (
    bill_key,
    code8,
    day,
    digits,
    final,
    number_range,
    observed,
    operator_point,
    prefixed,
    stamp,
)
from engine.errors import (
    AlreadyExists,
    DeadlineExceeded,
    EbillError,
    InvalidArgument,
    NotFound,
)
from engine.lifecycle import (
    BillKey,
    BillState,
    check_own,
    check_red_flush,
    check_refund,
    red_prepared,
)
from engine.model import CST, IssuedBill
from engine.money import parse_fen
from engine.pipeline import Work
from engine.prepare import Prepared
from protos.ebill.v1 import bill_pb2, lifecycle_pb2, lifecycle_pb2_grpc
from storage import bills as bill_store
from storage import lifecycle as store
from storage import paper

__all__ = ["LifecycleServicer"]

_RED = {
    lifecycle_pb2.RED_FILTER_ANY: "",
    lifecycle_pb2.RED_FILTER_NORMAL: "normal",
    lifecycle_pb2.RED_FILTER_RED_FLUSHED: "red_flushed",
    lifecycle_pb2.RED_FILTER_RED_BILL: "red_bill",
}
MAX_PAGE = 500
MAX_PAPER_RANGE = 1_000_000


class LifecycleServicer(lifecycle_pb2_grpc.LifecycleServiceServicer):
    def __init__(
        self, pool: asyncpg.Pool, pipeline: Pipeline, timeout_s: float, linger_s: float = 0.003
    ) -> None:
        self._pool = pool
        self._pipeline = pipeline
        self._timeout = timeout_s
        # Red-flushes from many windows share pipeline batches, like issuance.
        self._reds: MicroBatcher[Prepared] = MicroBatcher(
            self._pipeline.issue_prepared,
            max_batch=200,
            linger_s=linger_s,
            max_inflight=2,
            metered=False,
        )

    def start(self) -> None:
        self._reds.start()

    async def stop(self) -> None:
        await self._reds.stop()

    # -- helpers ------------------------------------------------------------

    async def _bill(self, key: BillKey) -> IssuedBill:
        bill = await bill_store.get_bill(self._pool, key)
        if bill is None:
            raise NotFound(f"no {key.describe()}")
        return bill

    async def _original(
        self, key: BillKey, unit_code: str, place_code: str, field: str
    ) -> store.Original:
        original = await store.load_original(self._pool, key)
        if original is None:
            raise NotFound(f"no {key.describe()}", field=field)
        check_own(original.state, unit_code, place_code)
        return original

    async def _issue(self, prepared: list[Prepared], *, atomic: bool) -> list[Work]:
        """Through the pipeline from reserve on. Atomic groups (a refund) travel
        alone; single red bills are batched with others."""
        run = (
            self._pipeline.issue_prepared(prepared, atomic=True)
            if atomic
            else self._reds.submit(prepared)
        )
        try:
            outcomes = await asyncio.wait_for(run, self._timeout)
        except TimeoutError:
            raise DeadlineExceeded(
                f"no answer from the pipeline within {self._timeout:g}s; send the same request "
                "(same bus_no) again to get the outcome"
            ) from None
        works: list[Work] = []
        for out in outcomes:
            err = final(out)
            if err is not None:
                raise err
            assert isinstance(out, Work)
            works.append(out)
        return works

    async def _replay(self, unit_code: str, bus_no: str, state: BillState) -> IssuedBill | None:
        """The red bill of an earlier call with this bus_no, or None if the serial is new."""
        existing = await bill_store.get_bill(self._pool, BillKey.serial(unit_code, bus_no))
        if existing is None:
            return None
        if existing.red_of != f"{state.bill_code}/{state.bill_no}":
            raise AlreadyExists(
                f"bus_no: {bus_no} is already the serial of bill "
                f"{existing.bill_code}/{existing.bill_no}",
                field="bus_no",
            )
        return replace(existing, replayed=True)

    async def _red_bill_code(self, state: BillState) -> str:
        if state.origin != "back_entry":
            return state.bill_code
        # A bill issued elsewhere is cancelled on this unit's bill code for its kind.
        code = await store.bill_code_for(self._pool, state.unit_code, state.bus_type)
        if code is None:
            raise NotFound(
                f"unit {state.unit_code} has no bill code for business type {state.bus_type}"
            )
        return code

    # -- red-flush and refund -----------------------------------------------

    @observed
    async def RedFlush(
        self, request: lifecycle_pb2.RedFlushRequest, context: grpc.aio.ServicerContext
    ) -> lifecycle_pb2.RedFlushResponse:
        unit, place, operator = operator_point(request.operator)
        key = bill_key(request.original, unit_code=unit, field="original")
        if not request.bus_no.strip():
            raise InvalidArgument("bus_no: is required (the red bill's serial)", field="bus_no")
        if not request.reason.strip():
            raise InvalidArgument("reason: is required", field="reason")
        original = await self._original(key, unit, place, "original")
        red = await self._replay(unit, request.bus_no, original.state)
        if red is None:
            err = check_red_flush(original.state, void_paper=request.void_paper)
            if err is not None:
                raise err
            prepared = red_prepared(
                original.state,
                original.canonical,
                original.request,
                bill_code=await self._red_bill_code(original.state),
                bus_no=request.bus_no,
                bus_time=datetime.now(UTC).astimezone(CST),
                place_code=place,
                operator=operator,
                reason=request.reason,
                void_paper=request.void_paper,
                op="red_flush",
            )
            (work,) = await self._issue([prepared], atomic=False)
            red, now = await bill_store.bills_by_id(
                self._pool, [work.bill_id, original.state.bill_id]
            )
            red = replace(red, replayed=work.replayed)
        else:
            (now,) = await bill_store.bills_by_id(self._pool, [original.state.bill_id])
        return lifecycle_pb2.RedFlushResponse(red_bill=bill_to_pb(red), original=bill_to_pb(now))

    @observed
    async def Refund(
        self, request: lifecycle_pb2.RefundRequest, context: grpc.aio.ServicerContext
    ) -> lifecycle_pb2.RefundResponse:
        unit, place, operator = operator_point(request.operator)
        key = bill_key(request.original, unit_code=unit, field="original")
        if not request.red_bus_no.strip():
            raise InvalidArgument("red_bus_no: is required", field="red_bus_no")
        try:
            refund_fen = parse_fen(request.refund_amount)
        except ValueError as exc:
            raise InvalidArgument(f"refund_amount: {exc}", field="refund_amount") from None
        original = await self._original(key, unit, place, "original")
        state = original.state
        red = await self._replay(unit, request.red_bus_no, state)
        if red is not None:
            remainder = await bill_store.remainder_of(self._pool, state.bill_id)
            (now,) = await bill_store.bills_by_id(self._pool, [state.bill_id])
            return lifecycle_pb2.RefundResponse(
                red_bill=bill_to_pb(red),
                remainder=bill_to_pb(remainder) if remainder else None,
                original=bill_to_pb(now),
            )
        rem: Prepared | None = None
        if request.HasField("remainder"):
            (checked,) = await self._pipeline.validate([request.remainder.SerializeToString()])
            if isinstance(checked, EbillError):
                raise prefixed(checked, "remainder")
            assert isinstance(checked, Prepared)
            if checked.unit_code != unit or checked.place_code != place:
                raise InvalidArgument(
                    f"remainder.place_code: the remainder is issued at the operator's issuing "
                    f"point {place}",
                    field="remainder.place_code",
                )
            if checked.bus_type != state.bus_type:
                raise InvalidArgument(
                    f"remainder.bus_type: must be the original's {state.bus_type}",
                    field="remainder.bus_type",
                )
            taken = await bill_store.get_bill(self._pool, BillKey.serial(unit, checked.bus_no))
            if taken is not None:
                # The serial is the idempotency key: reusing one would answer with
                # that other bill instead of issuing the remainder.
                raise AlreadyExists(
                    f"remainder.bus_no: {checked.bus_no} is already the serial of bill "
                    f"{taken.bill_code}/{taken.bill_no}",
                    field="remainder.bus_no",
                )
            rem = replace(checked, replaces=state.bill_id, op="refund", operator=operator)
        check_refund(state, refund_fen, rem.total_fen if rem else None)
        err = check_red_flush(state, void_paper=request.void_paper)
        if err is not None:
            raise err
        red_p = red_prepared(
            state,
            original.canonical,
            original.request,
            bill_code=await self._red_bill_code(state),
            bus_no=request.red_bus_no,
            bus_time=datetime.now(UTC).astimezone(CST),
            place_code=place,
            operator=operator,
            reason=request.reason or f"refund {request.refund_amount}",
            void_paper=request.void_paper,
            op="refund",
        )
        works = await self._issue([red_p] if rem is None else [red_p, rem], atomic=True)
        *made, now = await bill_store.bills_by_id(
            self._pool, [w.bill_id for w in works] + [state.bill_id]
        )
        return lifecycle_pb2.RefundResponse(
            red_bill=bill_to_pb(made[0]),
            remainder=bill_to_pb(made[1]) if len(made) > 1 else None,
            original=bill_to_pb(now),
        )

    # -- back entry and listing -----------------------------------------------

    @observed
    async def BackEntry(
        self, request: lifecycle_pb2.BackEntryRequest, context: grpc.aio.ServicerContext
    ) -> bill_pb2.IssuedBill:
        unit, place, operator = operator_point(request.operator)
        if not request.HasField("bill"):
            raise InvalidArgument("bill: is required", field="bill")
        code8(request.bill_code)
        digits(request.bill_no, 10, "bill_no")
        if not 1 <= len(request.check_code) <= 20:
            raise InvalidArgument("check_code: 1 to 20 characters", field="check_code")
        issued_at = stamp(request.issued_at, "issued_at")
        if request.bill.unit_code != unit or request.bill.place_code != place:
            raise InvalidArgument(
                "bill.place_code: a back entry is recorded at the operator's issuing point "
                f"{place}",
                field="bill.place_code",
            )
        (checked,) = await self._pipeline.validate([request.bill.SerializeToString()])
        if isinstance(checked, EbillError):
            raise prefixed(checked, "bill")
        assert isinstance(checked, Prepared)
        bill = await store.back_entry(
            self._pool,
            checked,
            bill_code=request.bill_code,
            bill_no=request.bill_no,
            check_code=request.check_code,
            issued_at=issued_at,
            operator=operator,
        )
        return bill_to_pb(bill)

    @observed
    async def ListBills(
        self, request: lifecycle_pb2.ListBillsRequest, context: grpc.aio.ServicerContext
    ) -> lifecycle_pb2.ListBillsResponse:
        unit, place, _ = operator_point(request.operator)
        size = request.page_size or 100
        if not 1 <= size <= MAX_PAGE:
            raise InvalidArgument(f"page_size: 1 to {MAX_PAGE}", field="page_size")
        after = 0
        if request.page_token:
            if not request.page_token.isdigit():
                raise InvalidArgument("page_token: not a token from this API", field="page_token")
            after = int(request.page_token)
        from_d = day(request.from_date, "from_date") if request.from_date else None
        to_d = day(request.to_date, "to_date") if request.to_date else None
        bills, next_id = await store.list_bills(
            self._pool,
            store.BillFilter(
                unit_code=unit,
                place_code=place,
                payer_id_card_no=request.payer_id_card_no,
                payer_tel=request.payer_tel,
                payer_card_no=request.payer_card_no,
                from_date=from_d,
                to_date=to_d,
                bill_kind=request.bill_kind,
                paper_status=PAPER_FROM_PB.get(request.paper_status, ""),
                red=_RED.get(request.red, ""),
                limit=size,
                after_id=after,
            ),
        )
        out = []
        for b in bills:
            pb = bill_to_pb(replace(b, canonical=b"", unit_signature=b"", fiscal_signature=b""))
            pb.ClearField("request")
            out.append(pb)
        return lifecycle_pb2.ListBillsResponse(
            bills=out, next_page_token=str(next_id) if next_id else ""
        )

    # -- paper --------------------------------------------------------------

    @observed
    async def ReceivePaper(
        self, request: lifecycle_pb2.ReceivePaperRequest, context: grpc.aio.ServicerContext
    ) -> lifecycle_pb2.PaperRange:
        unit, place, operator = operator_point(request.operator)
        code8(request.paper_code, "paper_code")
        start, end = number_range(request.start_no, request.end_no)
        if end - start + 1 > MAX_PAPER_RANGE:
            raise InvalidArgument(
                f"end_no: at most {MAX_PAPER_RANGE} paper numbers per range", field="end_no"
            )
        stock_id = await paper.receive_paper(
            self._pool,
            unit_code=unit,
            place_code=place,
            paper_code=request.paper_code,
            start_no=start,
            end_no=end,
            operator=operator,
        )
        ranges = await paper.paper_stock(self._pool, unit, place)
        return next(_range_pb(r) for r in ranges if r.id == stock_id)

    @observed
    async def GetPaperStock(
        self, request: lifecycle_pb2.GetPaperStockRequest, context: grpc.aio.ServicerContext
    ) -> lifecycle_pb2.PaperStock:
        unit, place, _ = operator_point(request.operator)
        return await self._stock(unit, place)

    async def _stock(self, unit: str, place: str) -> lifecycle_pb2.PaperStock:
        ranges = await paper.paper_stock(self._pool, unit, place)
        nxt = next((r for r in ranges if r.next_no is not None), None)
        return lifecycle_pb2.PaperStock(
            ranges=[_range_pb(r) for r in ranges],
            next_paper_code=nxt.paper_code if nxt else "",
            next_paper_no=f"{nxt.next_no:010d}" if nxt and nxt.next_no is not None else "",
            remaining=sum(r.remaining for r in ranges),
        )

    async def _paper_op(
        self, request: lifecycle_pb2.PaperBillRequest, op: str
    ) -> lifecycle_pb2.PaperBillResponse:
        unit, place, operator = operator_point(request.operator)
        key = bill_key(request.bill, unit_code=unit, field="bill")
        if op in ("void", "reissue") and not request.reason.strip():
            raise InvalidArgument("reason: is required", field="reason")
        if op == "convert":
            out = await paper.convert_to_paper(
                self._pool, key, unit_code=unit, place_code=place, operator=operator
            )
        elif op == "reprint":
            out = await paper.reprint(
                self._pool, key, unit_code=unit, place_code=place, operator=operator
            )
        elif op == "reissue":
            out = await paper.reissue_paper(
                self._pool,
                key,
                unit_code=unit,
                place_code=place,
                operator=operator,
                reason=request.reason,
            )
        else:
            out = await paper.void_paper(
                self._pool,
                key,
                unit_code=unit,
                place_code=place,
                operator=operator,
                reason=request.reason,
            )
        return lifecycle_pb2.PaperBillResponse(
            bill=bill_to_pb(await self._bill(key)),
            paper_code=out.paper_code,
            paper_no=out.paper_no,
            prints=out.prints,
        )

    @observed
    async def ConvertToPaper(
        self, request: lifecycle_pb2.PaperBillRequest, context: grpc.aio.ServicerContext
    ) -> lifecycle_pb2.PaperBillResponse:
        return await self._paper_op(request, "convert")

    @observed
    async def Reprint(
        self, request: lifecycle_pb2.PaperBillRequest, context: grpc.aio.ServicerContext
    ) -> lifecycle_pb2.PaperBillResponse:
        return await self._paper_op(request, "reprint")

    @observed
    async def ReissuePaper(
        self, request: lifecycle_pb2.PaperBillRequest, context: grpc.aio.ServicerContext
    ) -> lifecycle_pb2.PaperBillResponse:
        return await self._paper_op(request, "reissue")

    @observed
    async def VoidPaper(
        self, request: lifecycle_pb2.PaperBillRequest, context: grpc.aio.ServicerContext
    ) -> lifecycle_pb2.PaperBillResponse:
        return await self._paper_op(request, "void")

    @observed
    async def VoidBlankPaper(
        self, request: lifecycle_pb2.VoidBlankPaperRequest, context: grpc.aio.ServicerContext
    ) -> lifecycle_pb2.PaperStock:
        unit, place, operator = operator_point(request.operator)
        code8(request.paper_code, "paper_code")
        start, end = number_range(request.start_no, request.end_no)
        if not request.reason.strip():
            raise InvalidArgument("reason: is required", field="reason")
        await paper.void_blank(
            self._pool,
            unit_code=unit,
            place_code=place,
            paper_code=request.paper_code,
            start_no=start,
            end_no=end,
            operator=operator,
            reason=request.reason,
        )
        return await self._stock(unit, place)


def _range_pb(r: paper.PaperRange) -> lifecycle_pb2.PaperRange:
    return lifecycle_pb2.PaperRange(
        id=r.id,
        paper_code=r.paper_code,
        start_no=f"{r.start_no:010d}",
        end_no=f"{r.end_no:010d}",
        next_no=f"{r.next_no:010d}" if r.next_no is not None else "",
        remaining=r.remaining,
        received_at=r.received_at.isoformat(),
    )
