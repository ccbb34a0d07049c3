"""The mixed workload of a fault run: clients that issue single bills and batches,
red-flush, refund, convert to paper and distribute stock, each recording in a
Ledger exactly what it was acknowledged.

A client retries an operation with the same idempotency key (bus_no, red bill
serial) after an error that says "try again" (the engine away, a deadline), a
bounded number of times; a clean refusal ends the operation. Distribution has no
idempotency key, so it is never retried: an answer lost is an operation the
checker need not find (and may find).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TypeVar

import grpc

from bench.chaos_check import Acked, Distribution, Ledger
from clients.credentials import Credentials, open_engine_channel
from config.tls import TlsFiles
from engine.model import BillInput, ChargeItemInput, InsuranceInput, PayChannelInput
from protos.ebill.v1 import (
    bill_pb2,
    issuance_pb2,
    issuance_pb2_grpc,
    lifecycle_pb2,
    lifecycle_pb2_grpc,
    stock_pb2,
    stock_pb2_grpc,
)
from usecases import demo
from wire.bills import input_to_pb

__all__ = ["BILL_CODE", "PAPER_CODE", "Load", "prepare"]

BILL_CODE = "44060119"
PAPER_CODE = "44990119"
# Where lifecycle operations act, and where distributed stock goes.
LIFECYCLE_PLACE = "001"
DISTRIBUTE_TO = "002"
# Errors after which the same request is sent again; any other code is a refusal.
RETRY = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
    }
)
ATTEMPTS = 60
CALL_TIMEOUT_S = 15.0
# However many attempts are left, an operation is given up after this long.
GIVE_UP_S = 120.0

T = TypeVar("T")


def _acked(b: bill_pb2.IssuedBill) -> Acked:
    return Acked(b.bus_no, b.bill_code, b.bill_no, b.check_code)


def _by_number(a: Acked) -> issuance_pb2.GetBillRequest:
    return issuance_pb2.GetBillRequest(
        by_number=issuance_pb2.BillNumberKey(bill_code=a.bill_code, bill_no=a.bill_no)
    )


def _operator(place: str = "") -> lifecycle_pb2.Operator:
    return lifecycle_pb2.Operator(unit_code=demo.UNIT_CODE, place_code=place, operator="chaos")


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def remainder_of(original: BillInput, keep_fen: int, bus_no: str) -> BillInput:
    """What the payer keeps after a partial refund, as one examination charge."""
    keep = _yuan(keep_fen)
    item = ChargeItemInput(
        sort_no=1, charge_code="A03", charge_name="检查费", unit="次", std=keep, number="1",
        amt=keep,
    )  # fmt: skip
    return replace(
        original,
        bus_no=bus_no,
        total_amount=keep,
        charge_items=(item,),
        list_items=(),
        pay_channels=(PayChannelInput("02", keep),),
        insurance=InsuranceInput(),
    )


async def prepare(
    addr: str,
    *,
    office_count: int,
    paper_count: int,
    tls: TlsFiles | None = None,
    creds: Credentials | None = None,
) -> None:
    """Stock for the run, before any fault: numbers held by the bill office (to
    distribute) and blank paper at the lifecycle issuing point (to convert on)."""
    async with open_engine_channel(addr, tls, creds) as ch:
        stock = stock_pb2_grpc.StockServiceStub(ch)
        office = _operator()
        app = await stock.CreateGrantApplication(
            stock_pb2.GrantApplicationRequest(
                operator=office, bill_code=BILL_CODE, count=office_count
            )
        )
        await stock.SubmitGrantApplication(stock_pb2.ByIdRequest(operator=office, id=app.id))
        await stock.SyncGrantApplications(stock_pb2.OperatorOnly(operator=office))
        await stock.EnableGrant(stock_pb2.ByIdRequest(operator=office, id=app.id))
        await lifecycle_pb2_grpc.LifecycleServiceStub(ch).ReceivePaper(
            lifecycle_pb2.ReceivePaperRequest(
                operator=_operator(LIFECYCLE_PLACE), paper_code=PAPER_CODE,
                start_no=f"{1:010d}", end_no=f"{paper_count:010d}",
            )
        )  # fmt: skip


async def _send_batch(
    req: issuance_pb2.IssueBatchRequest, ch: grpc.aio.Channel
) -> issuance_pb2.IssueBatchResponse:
    stub = issuance_pb2_grpc.IssuanceServiceStub(ch)
    resp: issuance_pb2.IssueBatchResponse = await stub.IssueBatch(req, timeout=CALL_TIMEOUT_S)
    return resp


@dataclass
class Load:
    """The clients of one run, sharing a ledger and a seeded random source each."""

    addr: str
    seed: int
    # The demo client's certificate when the stack runs TLS (Stack.tls()).
    tls: TlsFiles | None = None
    # The demo HIS app's credentials (Stack.app_credentials()).
    creds: Credentials | None = None
    ledger: Ledger = field(default_factory=Ledger)
    # Outcomes by operation and gRPC code ("OK" when acknowledged).
    outcomes: Counter[str] = field(default_factory=Counter)
    # The first error message seen per outcome, to tell what a code stood for.
    details: dict[str, str] = field(default_factory=dict)
    # Acknowledged bills of the lifecycle point, with their input, for later operations.
    _fresh: deque[tuple[BillInput, Acked]] = field(default_factory=deque)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def run(self, stop_at: float, *, singles: int = 3, batches: int = 2) -> None:
        """Run every client until ``stop_at``; each finishes (bounded) what it began."""
        workers = [self._single(i, stop_at) for i in range(singles)]
        workers += [self._batch(i, stop_at) for i in range(batches)]
        workers += [self._lifecycle(stop_at), self._distribute(stop_at)]
        await asyncio.gather(*workers)

    async def _call(self, op: str, make: Callable[[grpc.aio.Channel], Awaitable[T]]) -> T | None:
        """Send one request until answered, refused, or out of attempts; None unless OK.
        A fresh channel per attempt: no reconnect backoff carried over a restart."""
        give_up_at = time.monotonic() + GIVE_UP_S
        for _ in range(ATTEMPTS):
            if time.monotonic() > give_up_at:
                break
            async with open_engine_channel(self.addr, self.tls, self.creds) as ch:
                try:
                    result = await make(ch)
                except grpc.aio.AioRpcError as err:
                    self._failed(op, err)
                    if err.code() not in RETRY:
                        return None
                    await asyncio.sleep(0.5)
                    continue
            self.outcomes[f"{op} OK"] += 1
            return result
        self.outcomes[f"{op} gave up"] += 1
        return None

    def _failed(self, op: str, err: grpc.aio.AioRpcError) -> None:
        key = f"{op} {err.code().name}"
        self.outcomes[key] += 1
        self.details.setdefault(key, (err.details() or "")[:160])

    def _bill(self, place: str, tag: str) -> BillInput:
        n = next(self._seq)
        return demo.demo_bill(n, prefix=f"CH{self.seed % 1000:03d}{tag}", place_code=place)

    async def _single(self, worker: int, stop_at: float) -> None:
        while time.monotonic() < stop_at:
            await self._issue_one(self._bill(LIFECYCLE_PLACE, f"S{worker}"))

    async def _issue_one(self, bill: BillInput) -> None:
        req = issuance_pb2.IssueBillRequest(bill=input_to_pb(bill))
        resp = await self._call(
            "IssueBill",
            lambda ch: issuance_pb2_grpc.IssuanceServiceStub(ch).IssueBill(
                req, timeout=CALL_TIMEOUT_S
            ),
        )
        if resp is not None:
            acked = _acked(resp.bill)
            self.ledger.ack_issued(acked)
            self._fresh.append((bill, acked))

    async def _batch(self, worker: int, stop_at: float) -> None:
        rng = random.Random(self.seed * 100 + worker)
        while time.monotonic() < stop_at:
            places = [p for p, _ in demo.ISSUING_POINTS]
            todo = [
                input_to_pb(self._bill(rng.choice(places), f"B{worker}"))
                for _ in range(rng.randint(5, 40))
            ]
            await self._issue_batch(todo)

    async def _issue_batch(self, todo: list[bill_pb2.BillRequest]) -> None:
        """Send the batch, then again its items not yet acknowledged (same bus_no)."""
        for _ in range(ATTEMPTS):
            req = issuance_pb2.IssueBatchRequest(bills=todo)
            resp = await self._call("IssueBatch", partial(_send_batch, req))
            if resp is None:
                return
            for r in resp.results:
                if r.HasField("bill"):
                    self.ledger.ack_issued(_acked(r.bill))
                else:
                    self.outcomes[f"IssueBatch item {r.error.code}"] += 1
            todo = [b for b in todo if b.bus_no not in self.ledger.issued]
            if not todo:
                return
            await asyncio.sleep(0.3)

    async def _lifecycle(self, stop_at: float) -> None:
        rng = random.Random(self.seed * 100 + 99)
        while time.monotonic() < stop_at:
            if not self._fresh:
                await asyncio.sleep(0.2)
                continue
            bill, original = self._fresh.popleft()
            roll = rng.random()
            if roll < 0.35:
                await self._red_flush(original)
            elif roll < 0.65:
                await self._refund(bill, original, partial=rng.random() < 0.5)
            else:
                await self._convert(original)

    async def _red_flush(self, original: Acked) -> None:
        req = lifecycle_pb2.RedFlushRequest(
            operator=_operator(LIFECYCLE_PLACE),
            original=_by_number(original),
            bus_no=f"R{original.bus_no}",
            reason="chaos",
        )
        resp = await self._call(
            "RedFlush",
            lambda ch: lifecycle_pb2_grpc.LifecycleServiceStub(ch).RedFlush(
                req, timeout=CALL_TIMEOUT_S
            ),
        )
        if resp is not None:
            self.ledger.red_flushed[req.bus_no] = (original, _acked(resp.red_bill))

    async def _refund(self, bill: BillInput, original: Acked, *, partial: bool) -> None:
        total = int(bill.total_amount.replace(".", ""))
        req = lifecycle_pb2.RefundRequest(
            operator=_operator(LIFECYCLE_PLACE),
            original=_by_number(original),
            red_bus_no=f"F{original.bus_no}",
            refund_amount=_yuan(total // 3 if partial else total),
            reason="chaos",
        )
        if partial:
            keep = total - total // 3
            req.remainder.CopyFrom(input_to_pb(remainder_of(bill, keep, f"K{original.bus_no}")))
        resp = await self._call(
            "Refund",
            lambda ch: lifecycle_pb2_grpc.LifecycleServiceStub(ch).Refund(
                req, timeout=CALL_TIMEOUT_S
            ),
        )
        if resp is not None:
            remainder = _acked(resp.remainder) if resp.HasField("remainder") else None
            self.ledger.refunded[req.red_bus_no] = (original, _acked(resp.red_bill), remainder)

    async def _convert(self, original: Acked) -> None:
        req = lifecycle_pb2.PaperBillRequest(
            operator=_operator(LIFECYCLE_PLACE), bill=_by_number(original)
        )
        resp = await self._call(
            "ConvertToPaper",
            lambda ch: lifecycle_pb2_grpc.LifecycleServiceStub(ch).ConvertToPaper(
                req, timeout=CALL_TIMEOUT_S
            ),
        )
        if resp is not None:
            self.ledger.converted[original.number] = (resp.paper_code, resp.paper_no)

    async def _distribute(self, stop_at: float) -> None:
        rng = random.Random(self.seed * 100 + 98)
        while time.monotonic() < stop_at:
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            req = stock_pb2.DistributeRequest(
                operator=_operator(), to_place_code=DISTRIBUTE_TO, bill_code=BILL_CODE,
                count=rng.randint(1, 25),
            )  # fmt: skip
            async with open_engine_channel(self.addr, self.tls, self.creds) as ch:
                try:
                    resp = await stock_pb2_grpc.StockServiceStub(ch).Distribute(
                        req, timeout=CALL_TIMEOUT_S
                    )
                except grpc.aio.AioRpcError as err:
                    self._failed("Distribute", err)
                    continue
            self.outcomes["Distribute OK"] += 1
            for r in resp.ranges:
                self.ledger.distributed.append(
                    Distribution(DISTRIBUTE_TO, r.bill_code, int(r.start_no), int(r.end_no))
                )
