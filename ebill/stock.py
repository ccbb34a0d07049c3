"""StockService: numbers from the platform to the issuing points and back, warnings,
write-off declarations and reports, over gRPC.

Bill-office calls carry an Operator without a place_code; an issuing point's calls
carry its place_code and act on its own stock only. Calls to the fiscal platform
are made here, at the edge; storage records their outcome.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from datetime import date
from email.message import EmailMessage
from typing import Any

import asyncpg
import grpc

from config.settings import Settings
from ebill.rpc import (
    code8,
    day,
    digits,
    number_range,
    observed,
    operator_any,
    operator_office,
    operator_point,
)
from engine.errors import FailedPrecondition, InvalidArgument, Unavailable
from engine.money import format_fen
from protos.ebill.v1 import stock_pb2, stock_pb2_grpc
from protos.fiscal.v1 import fiscal_pb2, fiscal_pb2_grpc
from storage import alerts as alert_store
from storage import stock as store

__all__ = ["StockServicer", "mail_alerts", "stock_loop", "sync_grants"]

log = logging.getLogger(__name__)
FISCAL_TIMEOUT_S = 10.0
MAX_COUNT = 10_000_000


def _count(value: int, field: str = "count") -> int:
    if not 0 < value <= MAX_COUNT:
        raise InvalidArgument(f"{field}: must be 1..{MAX_COUNT}, got {value}", field=field)
    return value


def _period(lo: str, hi: str) -> tuple[date, date]:
    a, b = day(lo, "period_from"), day(hi, "period_to")
    if b < a:
        raise InvalidArgument("period_to: must not be before period_from", field="period_to")
    return a, b


def _pb_range(bill_code: str, r: tuple[int, int]) -> stock_pb2.Range:
    return stock_pb2.Range(bill_code=bill_code, start_no=f"{r[0]:010d}", end_no=f"{r[1]:010d}")


def _nr(r: Any) -> stock_pb2.NumberRange:
    return stock_pb2.NumberRange(start_no=f"{int(r[0]):010d}", end_no=f"{int(r[1]):010d}")


def _app_pb(r: asyncpg.Record) -> stock_pb2.GrantApplication:
    return stock_pb2.GrantApplication(
        id=r["id"],
        bill_code=r["bill_code"],
        count=r["count"],
        status=r["status"],
        fiscal_ref=r["fiscal_ref"] or "",
        start_no=f"{r['start_no']:010d}" if r["start_no"] is not None else "",
        end_no=f"{r['end_no']:010d}" if r["end_no"] is not None else "",
        reject_reason=r["reject_reason"],
        reason=r["reason"],
        created_by=r["created_by"],
    )


def _write_off_pb(r: asyncpg.Record, subs: list[asyncpg.Record]) -> stock_pb2.WriteOff:
    f = r["figures"]
    lost = [tuple(x) for x in r["lost"]]
    return stock_pb2.WriteOff(
        id=r["id"],
        medium=r["medium"],
        code=r["code"],
        period_from=r["period_from"].strftime("%Y%m%d"),
        period_to=r["period_to"].strftime("%Y%m%d"),
        status=r["status"],
        reject_reason=r["reject_reason"],
        issued_count=f["issued_count"],
        issued_amount=format_fen(f["issued_fen"]),
        red_count=f["red_count"],
        red_amount=format_fen(f["red_fen"]),
        red_flushed_count=f["red_flushed_count"],
        voided_count=f["voided_count"],
        lost_count=sum(int(b) - int(a) + 1 for a, b in lost),
        printed_count=f["printed_count"],
        used=[_nr(x) for x in f["used"]],
        voided=[_nr(x) for x in f["voided"]],
        lost=[_nr(x) for x in lost],
        remark=r["remark"],
        submissions=[
            stock_pb2.WriteOffSubmission(
                outcome=s["outcome"],
                reason=s["reason"],
                submitted_by=s["submitted_by"],
                submitted_at=s["submitted_at"].isoformat(),
            )
            for s in subs
        ],
    )


class StockServicer(stock_pb2_grpc.StockServiceServicer):
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings
        self._channel: grpc.aio.Channel | None = None

    def _fiscal(self) -> fiscal_pb2_grpc.FiscalPlatformStub:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self._settings.fiscal_addr)
        return fiscal_pb2_grpc.FiscalPlatformStub(self._channel)

    async def _call(self, what: str, coro: Any) -> Any:
        try:
            return await coro
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(f"fiscal platform unavailable for {what}: try again") from exc
            raise FailedPrecondition(f"fiscal platform refused {what}: {exc.details()}") from exc

    # -- grant applications -----------------------------------------------------

    @observed
    async def CreateGrantApplication(
        self, request: stock_pb2.GrantApplicationRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.GrantApplication:
        unit, who = operator_office(request.operator)
        app_id = await store.create_application(
            self._pool,
            unit_code=unit,
            bill_code=code8(request.bill_code),
            count=_count(request.count),
            reason=request.reason,
            operator=who,
        )
        return _app_pb(await store.application(self._pool, unit, app_id))

    @observed
    async def UpdateGrantApplication(
        self, request: stock_pb2.GrantApplicationRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.GrantApplication:
        unit, _ = operator_office(request.operator)
        await store.update_application(
            self._pool,
            unit_code=unit,
            app_id=request.id,
            bill_code=code8(request.bill_code),
            count=_count(request.count),
            reason=request.reason,
        )
        return _app_pb(await store.application(self._pool, unit, request.id))

    @observed
    async def DeleteGrantApplication(
        self, request: stock_pb2.ByIdRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.Empty:
        unit, _ = operator_office(request.operator)
        await store.delete_application(self._pool, unit_code=unit, app_id=request.id)
        return stock_pb2.Empty()

    @observed
    async def SubmitGrantApplication(
        self, request: stock_pb2.ByIdRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.GrantApplication:
        unit, _ = operator_office(request.operator)
        app = await store.application(self._pool, unit, request.id)
        if app["status"] != "draft":
            raise FailedPrecondition(
                f"grant application {request.id} is {app['status']}; only a draft is submitted"
            )
        # The application id is the idempotency key at the platform: a retry after
        # a lost answer is the same application.
        resp = await self._call(
            "the grant application",
            self._fiscal().SubmitGrantApplication(
                fiscal_pb2.SubmitGrantApplicationRequest(
                    unit_code=unit,
                    bill_code=app["bill_code"],
                    count=app["count"],
                    ref=f"app-{app['id']}",
                    reason=app["reason"],
                ),
                timeout=FISCAL_TIMEOUT_S,
            ),
        )
        await store.mark_submitted(
            self._pool, unit_code=unit, app_id=request.id, ref=resp.fiscal_ref
        )
        return _app_pb(await store.application(self._pool, unit, request.id))

    @observed
    async def SyncGrantApplications(
        self, request: stock_pb2.OperatorOnly, context: grpc.aio.ServicerContext
    ) -> stock_pb2.GrantApplications:
        unit, _ = operator_office(request.operator)
        await self._call("the application status", sync_grants(self._pool, self._fiscal(), unit))
        return await self._applications(unit)

    async def _applications(self, unit: str) -> stock_pb2.GrantApplications:
        return stock_pb2.GrantApplications(
            applications=[_app_pb(r) for r in await store.list_applications(self._pool, unit)]
        )

    @observed
    async def EnableGrant(
        self, request: stock_pb2.ByIdRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.GrantApplication:
        unit, who = operator_office(request.operator)
        await store.enable_grant(self._pool, unit_code=unit, app_id=request.id, operator=who)
        return _app_pb(await store.application(self._pool, unit, request.id))

    @observed
    async def ListGrantApplications(
        self, request: stock_pb2.OperatorOnly, context: grpc.aio.ServicerContext
    ) -> stock_pb2.GrantApplications:
        unit, _ = operator_office(request.operator)
        return await self._applications(unit)

    # -- opening stock, requisitions, distribution --------------------------------

    @observed
    async def EnterOpeningStock(
        self, request: stock_pb2.OpeningStockRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.IdResponse:
        unit, who = operator_office(request.operator)
        start, end = number_range(request.start_no, request.end_no)
        entry = await store.enter_opening(
            self._pool,
            unit_code=unit,
            place_code=request.place_code or None,
            bill_code=code8(request.bill_code),
            start_no=start,
            end_no=end,
            next_no=digits(request.next_no, 10, "next_no"),
            operator=who,
        )
        return stock_pb2.IdResponse(id=entry)

    @observed
    async def ConfirmOpeningStock(
        self, request: stock_pb2.ByIdRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.IdResponse:
        unit, who = operator_office(request.operator)
        seg = await store.confirm_opening(
            self._pool, unit_code=unit, entry_id=request.id, operator=who
        )
        return stock_pb2.IdResponse(id=seg)

    @observed
    async def RequestRequisition(
        self, request: stock_pb2.RequisitionRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.IdResponse:
        unit, place, who = operator_point(request.operator)
        req_id = await store.request_requisition(
            self._pool,
            unit_code=unit,
            place_code=place,
            bill_code=code8(request.bill_code),
            count=_count(request.count),
            operator=who,
            reason=request.reason,
        )
        return stock_pb2.IdResponse(id=req_id)

    @observed
    async def DecideRequisition(
        self, request: stock_pb2.DecisionRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.Ranges:
        unit, who = operator_office(request.operator)
        code, moved = await store.decide_requisition(
            self._pool,
            unit_code=unit,
            req_id=request.id,
            approve=request.approve,
            operator=who,
            reason=request.reason,
        )
        return stock_pb2.Ranges(ranges=[_pb_range(code, r) for r in moved])

    @observed
    async def Distribute(
        self, request: stock_pb2.DistributeRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.Ranges:
        unit, who = operator_office(request.operator)
        code = code8(request.bill_code)
        if not request.to_place_code:
            raise InvalidArgument("to_place_code: is required", field="to_place_code")
        if request.start_no or request.end_no:
            if request.count:
                raise InvalidArgument("count: give a range or a count, not both", field="count")
            start, end = number_range(request.start_no, request.end_no)
            await store.distribute_range(
                self._pool,
                unit_code=unit,
                bill_code=code,
                start_no=start,
                end_no=end,
                to_place=request.to_place_code,
                operator=who,
            )
            return stock_pb2.Ranges(ranges=[_pb_range(code, (start, end))])
        moved = await store.distribute_count(
            self._pool,
            unit_code=unit,
            bill_code=code,
            count=_count(request.count),
            to_place=request.to_place_code,
            operator=who,
        )
        return stock_pb2.Ranges(ranges=[_pb_range(code, r) for r in moved])

    @observed
    async def SetAutoDistribution(
        self, request: stock_pb2.AutoDistributionRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.Empty:
        unit, _ = operator_office(request.operator)
        if request.below < 0 or request.batch < 0:
            raise InvalidArgument("below: and batch must not be negative", field="below")
        await store.set_auto_distribution(
            self._pool,
            unit_code=unit,
            place_code=request.place_code,
            bill_code=code8(request.bill_code),
            below=request.below,
            batch=request.batch,
        )
        return stock_pb2.Empty()

    # -- stock --------------------------------------------------------------------

    @observed
    async def QueryStock(
        self, request: stock_pb2.StockQuery, context: grpc.aio.ServicerContext
    ) -> stock_pb2.StockResponse:
        unit, _ = operator_any(request.operator)
        segs = await store.segments(
            self._pool,
            unit,
            place_code=request.operator.place_code or None,
            office=request.office and not request.operator.place_code,
        )
        return stock_pb2.StockResponse(
            segments=[
                stock_pb2.Segment(
                    id=s.id,
                    place_code=s.place_code,
                    bill_code=s.bill_code,
                    start_no=f"{s.start_no:010d}",
                    end_no=f"{s.end_no:010d}",
                    next_no=f"{s.next_no:010d}",
                    status=s.status,
                    remaining=s.remaining,
                    received_at=s.received_at.isoformat(),
                )
                for s in segs
            ]
        )

    @observed
    async def SetSegmentEnabled(
        self, request: stock_pb2.SegmentEnabledRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.Empty:
        unit, who = operator_office(request.operator)
        await store.set_segment_status(
            self._pool,
            unit_code=unit,
            segment_id=request.segment_id,
            enabled=request.enabled,
            operator=who,
        )
        return stock_pb2.Empty()

    @observed
    async def VoidStock(
        self, request: stock_pb2.RangeRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.Empty:
        unit, who = operator_any(request.operator)
        start, end = number_range(request.start_no, request.end_no)
        if not request.reason.strip():
            raise InvalidArgument("reason: is required", field="reason")
        await store.void_stock(
            self._pool,
            unit_code=unit,
            place_code=request.operator.place_code or None,
            bill_code=code8(request.bill_code),
            start_no=start,
            end_no=end,
            operator=who,
            reason=request.reason,
        )
        return stock_pb2.Empty()

    @observed
    async def RequestReturn(
        self, request: stock_pb2.RangeRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.IdResponse:
        unit, who = operator_any(request.operator)
        start, end = number_range(request.start_no, request.end_no)
        ret = await store.request_return(
            self._pool,
            unit_code=unit,
            place_code=request.operator.place_code or None,
            bill_code=code8(request.bill_code),
            start_no=start,
            end_no=end,
            operator=who,
            reason=request.reason,
        )
        return stock_pb2.IdResponse(id=ret)

    @observed
    async def DecideReturn(
        self, request: stock_pb2.DecisionRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.Empty:
        unit, who = operator_office(request.operator)
        ret = await store.stock_return(self._pool, unit, request.id)
        if request.approve and ret["place_code"] is None and ret["status"] == "pending":
            # The bill office's return goes to the platform, which confirms it.
            await self._call(
                "the return",
                self._fiscal().ReturnSegment(
                    fiscal_pb2.ReturnSegmentRequest(
                        unit_code=unit,
                        bill_code=ret["bill_code"],
                        start_no=f"{ret['start_no']:010d}",
                        end_no=f"{ret['end_no']:010d}",
                        ref=f"return-{ret['id']}",
                    ),
                    timeout=FISCAL_TIMEOUT_S,
                ),
            )
        await store.decide_return(
            self._pool, unit_code=unit, ret_id=request.id, confirm=request.approve, operator=who
        )
        return stock_pb2.Empty()

    @observed
    async def GetStockIdentity(
        self, request: stock_pb2.OperatorOnly, context: grpc.aio.ServicerContext
    ) -> stock_pb2.StockIdentity:
        unit, _ = operator_any(request.operator)
        return stock_pb2.StockIdentity(
            lines=[
                stock_pb2.IdentityLine(
                    bill_code=i.bill_code,
                    granted=i.granted,
                    issued=i.issued,
                    available=i.available,
                    voided=i.voided,
                    returned=i.returned,
                    balanced=i.balanced,
                    issued_before_go_live=i.issued_before_go_live,
                    bills=i.bills,
                )
                for i in await store.identity(self._pool, unit)
            ]
        )

    # -- warnings -----------------------------------------------------------------

    @observed
    async def SetAlertRule(
        self, request: stock_pb2.AlertRuleRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.Empty:
        unit, _ = operator_office(request.operator)
        if request.threshold <= 0:
            raise InvalidArgument("threshold: must be positive", field="threshold")
        if request.email and "@" not in request.email:
            raise InvalidArgument("email: not an email address", field="email")
        await store.set_alert_rule(
            self._pool,
            unit_code=unit,
            place_code=request.place_code,
            bill_code=code8(request.bill_code),
            threshold=request.threshold,
            email=request.email,
        )
        return stock_pb2.Empty()

    @observed
    async def ListAlerts(
        self, request: stock_pb2.ListAlertsRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.Alerts:
        unit, _ = operator_any(request.operator)
        rows = await alert_store.list_alerts(
            self._pool, unit, request.operator.place_code, mark_read=request.mark_read
        )
        return stock_pb2.Alerts(
            alerts=[
                stock_pb2.Alert(
                    id=r["id"],
                    place_code=r["place_code"],
                    bill_code=r["bill_code"],
                    threshold=r["threshold"],
                    available=r["available"],
                    message=r["message"],
                    created_at=r["created_at"].isoformat(),
                    read=r["read_at"] is not None,
                    emailed=r["emailed_at"] is not None,
                )
                for r in rows
            ]
        )

    # -- write-offs, audit reports, destruction ---------------------------------------

    @observed
    async def CreateWriteOff(
        self, request: stock_pb2.CreateWriteOffRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.WriteOff:
        unit, who = operator_office(request.operator)
        if request.medium not in ("ebill", "paper"):
            raise InvalidArgument("medium: must be 'ebill' or 'paper'", field="medium")
        lo, hi = _period(request.period_from, request.period_to)
        wo_id = await store.create_write_off(
            self._pool,
            unit_code=unit,
            medium=request.medium,
            code=code8(request.code, "code"),
            period_from=lo,
            period_to=hi,
            operator=who,
        )
        return await self._write_off(unit, wo_id)

    async def _write_off(self, unit: str, wo_id: int) -> stock_pb2.WriteOff:
        ((row, subs),) = await store.write_off_history(self._pool, unit, wo_id)
        return _write_off_pb(row, subs)

    @observed
    async def UpdateWriteOff(
        self, request: stock_pb2.UpdateWriteOffRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.WriteOff:
        unit, _ = operator_office(request.operator)
        lost = []
        for i, r in enumerate(request.lost):
            try:
                lost.append(number_range(r.start_no, r.end_no))
            except InvalidArgument as exc:
                raise InvalidArgument(f"lost[{i}].{exc.message}", field=f"lost[{i}]") from None
        await store.update_write_off(
            self._pool,
            unit_code=unit,
            wo_id=request.id,
            lost=lost,
            remark=request.remark,
            recompute=request.recompute,
        )
        return await self._write_off(unit, request.id)

    @observed
    async def SubmitWriteOff(
        self, request: stock_pb2.ByIdRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.WriteOff:
        unit, who = operator_office(request.operator)
        row = await store.write_off(self._pool, unit, request.id)
        if row["status"] != "draft":
            raise FailedPrecondition(
                f"write-off {request.id} is {row['status']}; fix it (UpdateWriteOff) first"
                if row["status"] == "rejected"
                else f"write-off {request.id} is {row['status']}; only a draft is submitted"
            )
        f = row["figures"]
        if f.get("unfinished"):
            raise FailedPrecondition(
                f"{f['unfinished']} bills of the period are not yet countersigned; submit "
                "once they are, with the figures recomputed"
            )
        lost = [tuple(x) for x in row["lost"]]
        resp = await self._call(
            "the write-off declaration",
            self._fiscal().SubmitWriteOff(
                fiscal_pb2.SubmitWriteOffRequest(
                    unit_code=unit,
                    medium=row["medium"],
                    code=row["code"],
                    period_from=row["period_from"].strftime("%Y%m%d"),
                    period_to=row["period_to"].strftime("%Y%m%d"),
                    ref=f"wo-{row['id']}",
                    figures=fiscal_pb2.WriteOffFigures(
                        issued_count=f["issued_count"],
                        issued_fen=f["issued_fen"],
                        red_count=f["red_count"],
                        red_fen=f["red_fen"],
                        red_flushed_count=f["red_flushed_count"],
                        voided_count=f["voided_count"],
                        lost_count=sum(int(b) - int(a) + 1 for a, b in lost),
                        printed_count=f["printed_count"],
                        used=[_fiscal_range(x) for x in f["used"]],
                        voided=[_fiscal_range(x) for x in f["voided"]],
                        lost=[_fiscal_range(x) for x in lost],
                    ),
                ),
                timeout=FISCAL_TIMEOUT_S,
            ),
        )
        await store.record_submission(
            self._pool,
            unit_code=unit,
            wo_id=request.id,
            accepted=resp.accepted,
            reason=resp.reason,
            fiscal_ref=resp.fiscal_ref,
            operator=who,
        )
        return await self._write_off(unit, request.id)

    @observed
    async def ListWriteOffs(
        self, request: stock_pb2.OperatorOnly, context: grpc.aio.ServicerContext
    ) -> stock_pb2.WriteOffs:
        unit, _ = operator_office(request.operator)
        return stock_pb2.WriteOffs(
            write_offs=[
                _write_off_pb(r, subs)
                for r, subs in await store.write_off_history(self._pool, unit)
            ]
        )

    @observed
    async def SubmitAuditReport(
        self, request: stock_pb2.AuditReportRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.AuditReport:
        unit, who = operator_office(request.operator)
        lo, hi = _period(request.period_from, request.period_to)
        lines = await store.audit_figures(self._pool, unit, lo, hi)
        resp = await self._call(
            "the audit report",
            self._fiscal().SubmitAuditReport(
                fiscal_pb2.SubmitAuditReportRequest(
                    unit_code=unit,
                    period_from=request.period_from,
                    period_to=request.period_to,
                    lines=[
                        fiscal_pb2.AuditLine(
                            bill_code=x["bill_code"], count=x["count"], total_fen=x["total_fen"]
                        )
                        for x in lines
                    ],
                ),
                timeout=FISCAL_TIMEOUT_S,
            ),
        )
        platform = {p.bill_code: p for p in resp.platform}
        out = []
        for x in lines:
            p = platform.get(x["bill_code"])
            pc, pf = (p.count, p.total_fen) if p else (0, 0)
            out.append(
                stock_pb2.AuditLine(
                    bill_code=x["bill_code"],
                    count=x["count"],
                    total_amount=format_fen(x["total_fen"]),
                    unarchived=x["unarchived"],
                    platform_count=pc,
                    platform_total_amount=format_fen(pf),
                    matches=(pc, pf) == (x["count"], x["total_fen"]) and not x["unarchived"],
                )
            )
        report_id = await store.record_audit_report(
            self._pool,
            unit_code=unit,
            period_from=lo,
            period_to=hi,
            figures={"lines": lines},
            fiscal_ref=resp.fiscal_ref,
            operator=who,
        )
        return stock_pb2.AuditReport(id=report_id, fiscal_ref=resp.fiscal_ref, lines=out)

    @observed
    async def RequestDestruction(
        self, request: stock_pb2.DestructionRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.IdResponse:
        unit, who = operator_office(request.operator)
        start, end = number_range(request.start_no, request.end_no)
        if end - start + 1 > 100_000:
            raise InvalidArgument("end_no: at most 100000 papers per request", field="end_no")
        req_id = await store.request_destruction(
            self._pool,
            unit_code=unit,
            paper_code=code8(request.paper_code, "paper_code"),
            start_no=start,
            end_no=end,
            retention_days=self._settings.paper_retention_days,
            operator=who,
            reason=request.reason,
        )
        return stock_pb2.IdResponse(id=req_id)

    @observed
    async def DecideDestruction(
        self, request: stock_pb2.DecisionRequest, context: grpc.aio.ServicerContext
    ) -> stock_pb2.Empty:
        unit, who = operator_office(request.operator)
        await store.decide_destruction(
            self._pool, unit_code=unit, req_id=request.id, approve=request.approve, operator=who
        )
        return stock_pb2.Empty()


async def sync_grants(
    pool: asyncpg.Pool, fiscal: fiscal_pb2_grpc.FiscalPlatformStub, unit: str
) -> int:
    """Fetch the platform's decisions on the unit's submitted applications; how many
    were asked about."""
    pending = await store.submitted_applications(pool, unit)
    if not pending:
        return 0
    resp = await fiscal.GetGrantApplications(
        fiscal_pb2.GetGrantApplicationsRequest(
            unit_code=unit, fiscal_refs=[r["fiscal_ref"] for r in pending]
        ),
        timeout=FISCAL_TIMEOUT_S,
    )
    await store.record_decisions(
        pool,
        unit,
        [
            (d.fiscal_ref, d.status, d.grant_id, int(d.start_no or 0), int(d.end_no or 0), d.reason)
            for d in resp.decisions
        ],
    )
    return len(pending)


def _fiscal_range(r: Any) -> fiscal_pb2.NumberRange:
    return fiscal_pb2.NumberRange(start_no=f"{int(r[0]):010d}", end_no=f"{int(r[1]):010d}")


def _send(settings: Settings, to: str, subject: str, body: str) -> None:
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body)
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
        smtp.send_message(msg)


async def mail_alerts(pool: asyncpg.Pool, settings: Settings) -> int:
    """Email the warnings not yet emailed; returns how many were sent."""
    if not settings.smtp_host:
        return 0
    sent = 0
    for a in await alert_store.due_alert_emails(pool):
        subject = f"库存预警 low stock: {a['bill_code']} at issuing point {a['place_code']}"
        try:
            await asyncio.to_thread(_send, settings, a["email"], subject, a["message"])
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("cannot email stock warning %s: %s", a["id"], exc)
            await alert_store.mark_alert_emailed(pool, a["id"], error=str(exc) or "error")
            continue
        await alert_store.mark_alert_emailed(pool, a["id"])
        sent += 1
    return sent


async def stock_loop(pool: asyncpg.Pool, settings: Settings) -> None:
    """Automatic distribution and warning emails, beside issuance."""
    while True:
        try:
            for unit, place, code, n in await store.auto_distribute(pool):
                log.info("auto-distributed %d numbers of %s to %s/%s", n, code, unit, place)
            await mail_alerts(pool, settings)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("stock loop failed")
        await asyncio.sleep(settings.stock_interval_s)
