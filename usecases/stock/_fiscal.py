"""The stock use cases' calls to the fiscal platform, until clients.fiscal exists.

A stop-gap adapter: the one place under usecases/ that speaks protobuf and grpc.
It goes when clients/fiscal.py (FiscalClient) lands; its methods already have the
shape the use cases need, so the swap touches only the construction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

import grpc

from engine.errors import FailedPrecondition, Unavailable
from engine.numbers import NumberRange
from protos.fiscal.v1 import fiscal_pb2, fiscal_pb2_grpc
from storage.stock.records import AuditFigure, GrantDecision, WriteOff

__all__ = ["AuditReceipt", "StockFiscal", "WriteOffReceipt"]

FISCAL_TIMEOUT_S = 10.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class WriteOffReceipt:
    accepted: bool
    reason: str
    fiscal_ref: str


@dataclass(frozen=True, slots=True)
class AuditReceipt:
    fiscal_ref: str
    # bill_code -> (count, total_fen) as the platform has them.
    platform: dict[str, tuple[int, int]]


def _range(r: NumberRange) -> fiscal_pb2.NumberRange:
    return fiscal_pb2.NumberRange(start_no=str(r.start), end_no=str(r.end))


def _day(d: date) -> str:
    return d.strftime("%Y%m%d")


async def _call(what: str, coro: Awaitable[T]) -> T:
    try:
        return await coro
    except grpc.aio.AioRpcError as exc:
        if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise Unavailable(f"fiscal platform unavailable for {what}: try again") from exc
        raise FailedPrecondition(f"fiscal platform refused {what}: {exc.details()}") from exc


class StockFiscal:
    """The fiscal platform's stock calls; the channel opens on first use."""

    def __init__(self, addr: str) -> None:
        self._addr = addr
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> fiscal_pb2_grpc.FiscalPlatformStub:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self._addr)
        return fiscal_pb2_grpc.FiscalPlatformStub(self._channel)

    async def submit_grant_application(
        self, unit_code: str, bill_code: str, count: int, ref: str, reason: str
    ) -> str:
        """The platform's reference of the application; ``ref`` is the idempotency key."""
        resp = await _call(
            "the grant application",
            self._stub().SubmitGrantApplication(
                fiscal_pb2.SubmitGrantApplicationRequest(
                    unit_code=unit_code, bill_code=bill_code, count=count, ref=ref, reason=reason
                ),
                timeout=FISCAL_TIMEOUT_S,
            ),
        )
        return str(resp.fiscal_ref)

    async def grant_decisions(
        self, unit_code: str, fiscal_refs: Sequence[str]
    ) -> list[GrantDecision]:
        resp = await _call(
            "the application status",
            self._stub().GetGrantApplications(
                fiscal_pb2.GetGrantApplicationsRequest(
                    unit_code=unit_code, fiscal_refs=list(fiscal_refs)
                ),
                timeout=FISCAL_TIMEOUT_S,
            ),
        )
        return [
            GrantDecision(
                fiscal_ref=d.fiscal_ref,
                status=d.status,
                grant_id=d.grant_id,
                granted=(
                    NumberRange.of(int(d.start_no), int(d.end_no))
                    if d.start_no and d.end_no
                    else None
                ),
                reason=d.reason,
            )
            for d in resp.decisions
        ]

    async def return_segment(
        self, unit_code: str, bill_code: str, numbers: NumberRange, ref: str
    ) -> None:
        await _call(
            "the return",
            self._stub().ReturnSegment(
                fiscal_pb2.ReturnSegmentRequest(
                    unit_code=unit_code,
                    bill_code=bill_code,
                    start_no=str(numbers.start),
                    end_no=str(numbers.end),
                    ref=ref,
                ),
                timeout=FISCAL_TIMEOUT_S,
            ),
        )

    async def submit_write_off(self, wo: WriteOff, ref: str) -> WriteOffReceipt:
        f = wo.figures
        resp = await _call(
            "the write-off declaration",
            self._stub().SubmitWriteOff(
                fiscal_pb2.SubmitWriteOffRequest(
                    unit_code=wo.unit_code,
                    medium=wo.medium,
                    code=wo.code,
                    period_from=_day(wo.period_from),
                    period_to=_day(wo.period_to),
                    ref=ref,
                    figures=fiscal_pb2.WriteOffFigures(
                        issued_count=f.issued_count,
                        issued_fen=f.issued_fen,
                        red_count=f.red_count,
                        red_fen=f.red_fen,
                        red_flushed_count=f.red_flushed_count,
                        voided_count=f.voided_count,
                        lost_count=wo.lost_count,
                        printed_count=f.printed_count,
                        used=[_range(x) for x in f.used],
                        voided=[_range(x) for x in f.voided],
                        lost=[_range(x) for x in wo.lost],
                    ),
                ),
                timeout=FISCAL_TIMEOUT_S,
            ),
        )
        return WriteOffReceipt(resp.accepted, resp.reason, resp.fiscal_ref)

    async def submit_audit_report(
        self, unit_code: str, period_from: date, period_to: date, lines: Sequence[AuditFigure]
    ) -> AuditReceipt:
        resp = await _call(
            "the audit report",
            self._stub().SubmitAuditReport(
                fiscal_pb2.SubmitAuditReportRequest(
                    unit_code=unit_code,
                    period_from=_day(period_from),
                    period_to=_day(period_to),
                    lines=[
                        fiscal_pb2.AuditLine(
                            bill_code=x.bill_code, count=x.count, total_fen=x.total_fen
                        )
                        for x in lines
                    ],
                ),
                timeout=FISCAL_TIMEOUT_S,
            ),
        )
        return AuditReceipt(
            resp.fiscal_ref, {p.bill_code: (p.count, p.total_fen) for p in resp.platform}
        )
