"""StockService over gRPC: read the request, call a stock use case, map the
records back to protobuf. Nothing else happens here.

Bill-office calls carry an Operator without a place_code; an issuing point's calls
carry its place_code and act on its own stock only.
"""

from __future__ import annotations

from datetime import date
from typing import TypeAlias

import asyncpg
import grpc

from clients.fiscal import FiscalClient
from config.settings import Settings
from ebill.grpc import stock_mappers as pb
from engine.errors import InvalidArgument
from engine.numbers import NumberRange
from engine.statuses import Medium
from protos.ebill.v1 import stock_pb2, stock_pb2_grpc
from usecases.stock import alerts, destruction, grants, movements, writeoff
from wire.requests import (
    code8,
    day,
    digits,
    number_range,
    operator_any,
    operator_office,
    operator_point,
)

__all__ = ["StockServicer"]

MAX_COUNT = 10_000_000
MAX_DESTROYED = 100_000


def _count(value: int, field: str = "count") -> int:
    if not 0 < value <= MAX_COUNT:
        raise InvalidArgument(f"{field}: must be 1..{MAX_COUNT}, got {value}", field=field)
    return value


def _period(lo: str, hi: str) -> tuple[date, date]:
    a, b = day(lo, "period_from"), day(hi, "period_to")
    if b < a:
        raise InvalidArgument("period_to: must not be before period_from", field="period_to")
    return a, b


def _numbers(start: str, end: str) -> NumberRange:
    return NumberRange.of(*number_range(start, end))


Ctx: TypeAlias = grpc.aio.ServicerContext


class StockServicer(stock_pb2_grpc.StockServiceServicer):
    def __init__(self, pool: asyncpg.Pool, settings: Settings, fiscal: FiscalClient) -> None:
        self._pool = pool
        self._settings = settings
        # The engine's one fiscal platform client (ebill/wiring.py).
        self._fiscal = fiscal

    # -- grant applications -----------------------------------------------------

    async def CreateGrantApplication(
        self, request: stock_pb2.GrantApplicationRequest, context: Ctx
    ) -> stock_pb2.GrantApplication:
        unit, who = operator_office(request.operator)
        app = await grants.create_application(
            self._pool,
            unit_code=unit,
            bill_code=code8(request.bill_code),
            count=_count(request.count),
            reason=request.reason,
            operator=who,
        )
        return pb.application_pb(app)

    async def UpdateGrantApplication(
        self, request: stock_pb2.GrantApplicationRequest, context: Ctx
    ) -> stock_pb2.GrantApplication:
        unit, _ = operator_office(request.operator)
        app = await grants.update_application(
            self._pool,
            unit_code=unit,
            app_id=request.id,
            bill_code=code8(request.bill_code),
            count=_count(request.count),
            reason=request.reason,
        )
        return pb.application_pb(app)

    async def DeleteGrantApplication(
        self, request: stock_pb2.ByIdRequest, context: Ctx
    ) -> stock_pb2.Empty:
        unit, _ = operator_office(request.operator)
        await grants.delete_application(self._pool, unit_code=unit, app_id=request.id)
        return stock_pb2.Empty()

    async def SubmitGrantApplication(
        self, request: stock_pb2.ByIdRequest, context: Ctx
    ) -> stock_pb2.GrantApplication:
        unit, _ = operator_office(request.operator)
        app = await grants.submit_application(
            self._pool, self._fiscal, unit_code=unit, app_id=request.id
        )
        return pb.application_pb(app)

    async def SyncGrantApplications(
        self, request: stock_pb2.OperatorOnly, context: Ctx
    ) -> stock_pb2.GrantApplications:
        unit, _ = operator_office(request.operator)
        await grants.sync_grants(self._pool, self._fiscal, unit)
        return pb.applications_pb(await grants.list_applications(self._pool, unit))

    async def EnableGrant(
        self, request: stock_pb2.ByIdRequest, context: Ctx
    ) -> stock_pb2.GrantApplication:
        unit, who = operator_office(request.operator)
        app = await grants.enable_grant(self._pool, unit_code=unit, app_id=request.id, operator=who)
        return pb.application_pb(app)

    async def ListGrantApplications(
        self, request: stock_pb2.OperatorOnly, context: Ctx
    ) -> stock_pb2.GrantApplications:
        unit, _ = operator_office(request.operator)
        return pb.applications_pb(await grants.list_applications(self._pool, unit))

    # -- opening stock, requisitions, distribution --------------------------------

    async def EnterOpeningStock(
        self, request: stock_pb2.OpeningStockRequest, context: Ctx
    ) -> stock_pb2.IdResponse:
        unit, who = operator_office(request.operator)
        numbers = _numbers(request.start_no, request.end_no)
        entry = await grants.enter_opening(
            self._pool,
            unit_code=unit,
            place_code=request.place_code or None,
            bill_code=code8(request.bill_code),
            numbers=numbers,
            next_no=digits(request.next_no, 10, "next_no"),
            operator=who,
        )
        return stock_pb2.IdResponse(id=entry)

    async def ConfirmOpeningStock(
        self, request: stock_pb2.ByIdRequest, context: Ctx
    ) -> stock_pb2.IdResponse:
        unit, who = operator_office(request.operator)
        seg = await grants.confirm_opening(
            self._pool, unit_code=unit, entry_id=request.id, operator=who
        )
        return stock_pb2.IdResponse(id=seg)

    async def RequestRequisition(
        self, request: stock_pb2.RequisitionRequest, context: Ctx
    ) -> stock_pb2.IdResponse:
        unit, place, who = operator_point(request.operator)
        req_id = await movements.request_requisition(
            self._pool,
            unit_code=unit,
            place_code=place,
            bill_code=code8(request.bill_code),
            count=_count(request.count),
            operator=who,
            reason=request.reason,
        )
        return stock_pb2.IdResponse(id=req_id)

    async def DecideRequisition(
        self, request: stock_pb2.DecisionRequest, context: Ctx
    ) -> stock_pb2.Ranges:
        unit, who = operator_office(request.operator)
        moved = await movements.decide_requisition(
            self._pool,
            unit_code=unit,
            req_id=request.id,
            approve=request.approve,
            operator=who,
            reason=request.reason,
        )
        return pb.ranges_pb(moved)

    async def Distribute(
        self, request: stock_pb2.DistributeRequest, context: Ctx
    ) -> stock_pb2.Ranges:
        unit, who = operator_office(request.operator)
        code = code8(request.bill_code)
        if not request.to_place_code:
            raise InvalidArgument("to_place_code: is required", field="to_place_code")
        numbers: NumberRange | None = None
        count = 0
        if request.start_no or request.end_no:
            if request.count:
                raise InvalidArgument("count: give a range or a count, not both", field="count")
            numbers = _numbers(request.start_no, request.end_no)
        else:
            count = _count(request.count)
        moved = await movements.distribute(
            self._pool,
            unit_code=unit,
            bill_code=code,
            to_place=request.to_place_code,
            numbers=numbers,
            count=count,
            operator=who,
        )
        return pb.ranges_pb(moved)

    async def SetAutoDistribution(
        self, request: stock_pb2.AutoDistributionRequest, context: Ctx
    ) -> stock_pb2.Empty:
        unit, _ = operator_office(request.operator)
        if request.below < 0 or request.batch < 0:
            raise InvalidArgument("below: and batch must not be negative", field="below")
        await movements.set_auto_distribution(
            self._pool,
            unit_code=unit,
            place_code=request.place_code,
            bill_code=code8(request.bill_code),
            below=request.below,
            batch=request.batch,
        )
        return stock_pb2.Empty()

    # -- stock --------------------------------------------------------------------

    async def QueryStock(
        self, request: stock_pb2.StockQuery, context: Ctx
    ) -> stock_pb2.StockResponse:
        unit, _ = operator_any(request.operator)
        segs = await movements.segments(
            self._pool,
            unit,
            place_code=request.operator.place_code or None,
            office=request.office,
        )
        return stock_pb2.StockResponse(segments=[pb.segment_pb(s) for s in segs])

    async def SetSegmentEnabled(
        self, request: stock_pb2.SegmentEnabledRequest, context: Ctx
    ) -> stock_pb2.Empty:
        unit, who = operator_office(request.operator)
        await movements.set_segment_enabled(
            self._pool,
            unit_code=unit,
            segment_id=request.segment_id,
            enabled=request.enabled,
            operator=who,
        )
        return stock_pb2.Empty()

    async def VoidStock(self, request: stock_pb2.RangeRequest, context: Ctx) -> stock_pb2.Empty:
        unit, who = operator_any(request.operator)
        numbers = _numbers(request.start_no, request.end_no)
        if not request.reason.strip():
            raise InvalidArgument("reason: is required", field="reason")
        await movements.void_stock(
            self._pool,
            unit_code=unit,
            place_code=request.operator.place_code or None,
            bill_code=code8(request.bill_code),
            numbers=numbers,
            operator=who,
            reason=request.reason,
        )
        return stock_pb2.Empty()

    async def RequestReturn(
        self, request: stock_pb2.RangeRequest, context: Ctx
    ) -> stock_pb2.IdResponse:
        unit, who = operator_any(request.operator)
        numbers = _numbers(request.start_no, request.end_no)
        ret = await movements.request_return(
            self._pool,
            unit_code=unit,
            place_code=request.operator.place_code or None,
            bill_code=code8(request.bill_code),
            numbers=numbers,
            operator=who,
            reason=request.reason,
        )
        return stock_pb2.IdResponse(id=ret)

    async def DecideReturn(
        self, request: stock_pb2.DecisionRequest, context: Ctx
    ) -> stock_pb2.Empty:
        unit, who = operator_office(request.operator)
        await movements.decide_return(
            self._pool,
            self._fiscal,
            unit_code=unit,
            ret_id=request.id,
            confirm=request.approve,
            operator=who,
        )
        return stock_pb2.Empty()

    async def GetStockIdentity(
        self, request: stock_pb2.OperatorOnly, context: Ctx
    ) -> stock_pb2.StockIdentity:
        unit, _ = operator_any(request.operator)
        lines = await movements.identity(self._pool, unit)
        return stock_pb2.StockIdentity(lines=[pb.identity_pb(i) for i in lines])

    # -- warnings -----------------------------------------------------------------

    async def SetAlertRule(
        self, request: stock_pb2.AlertRuleRequest, context: Ctx
    ) -> stock_pb2.Empty:
        unit, _ = operator_office(request.operator)
        if request.threshold <= 0:
            raise InvalidArgument("threshold: must be positive", field="threshold")
        if request.email and "@" not in request.email:
            raise InvalidArgument("email: not an email address", field="email")
        await alerts.set_alert_rule(
            self._pool,
            unit_code=unit,
            place_code=request.place_code,
            bill_code=code8(request.bill_code),
            threshold=request.threshold,
            email=request.email,
        )
        return stock_pb2.Empty()

    async def ListAlerts(
        self, request: stock_pb2.ListAlertsRequest, context: Ctx
    ) -> stock_pb2.Alerts:
        unit, _ = operator_any(request.operator)
        rows = await alerts.list_alerts(
            self._pool, unit, request.operator.place_code, mark_read=request.mark_read
        )
        return stock_pb2.Alerts(alerts=[pb.alert_pb(a) for a in rows])

    # -- write-offs, audit reports, destruction ---------------------------------------

    async def CreateWriteOff(
        self, request: stock_pb2.CreateWriteOffRequest, context: Ctx
    ) -> stock_pb2.WriteOff:
        unit, who = operator_office(request.operator)
        if request.medium not in (Medium.EBILL, Medium.PAPER):
            raise InvalidArgument("medium: must be 'ebill' or 'paper'", field="medium")
        lo, hi = _period(request.period_from, request.period_to)
        wo = await writeoff.create_write_off(
            self._pool,
            unit_code=unit,
            medium=Medium(request.medium),
            code=code8(request.code, "code"),
            period_from=lo,
            period_to=hi,
            operator=who,
        )
        return pb.write_off_pb(wo)

    async def UpdateWriteOff(
        self, request: stock_pb2.UpdateWriteOffRequest, context: Ctx
    ) -> stock_pb2.WriteOff:
        unit, _ = operator_office(request.operator)
        lost = []
        for i, r in enumerate(request.lost):
            try:
                lost.append(_numbers(r.start_no, r.end_no))
            except InvalidArgument as exc:
                raise InvalidArgument(f"lost[{i}].{exc.message}", field=f"lost[{i}]") from None
        wo = await writeoff.update_write_off(
            self._pool,
            unit_code=unit,
            wo_id=request.id,
            lost=lost,
            remark=request.remark,
            recompute=request.recompute,
        )
        return pb.write_off_pb(wo)

    async def SubmitWriteOff(
        self, request: stock_pb2.ByIdRequest, context: Ctx
    ) -> stock_pb2.WriteOff:
        unit, who = operator_office(request.operator)
        wo = await writeoff.submit_write_off(
            self._pool, self._fiscal, unit_code=unit, wo_id=request.id, operator=who
        )
        return pb.write_off_pb(wo)

    async def ListWriteOffs(
        self, request: stock_pb2.OperatorOnly, context: Ctx
    ) -> stock_pb2.WriteOffs:
        unit, _ = operator_office(request.operator)
        wos = await writeoff.list_write_offs(self._pool, unit)
        return stock_pb2.WriteOffs(write_offs=[pb.write_off_pb(w) for w in wos])

    async def SubmitAuditReport(
        self, request: stock_pb2.AuditReportRequest, context: Ctx
    ) -> stock_pb2.AuditReport:
        unit, who = operator_office(request.operator)
        lo, hi = _period(request.period_from, request.period_to)
        report = await writeoff.submit_audit_report(
            self._pool, self._fiscal, unit_code=unit, period_from=lo, period_to=hi, operator=who
        )
        return pb.audit_report_pb(report)

    async def RequestDestruction(
        self, request: stock_pb2.DestructionRequest, context: Ctx
    ) -> stock_pb2.IdResponse:
        unit, who = operator_office(request.operator)
        numbers = _numbers(request.start_no, request.end_no)
        if numbers.count > MAX_DESTROYED:
            raise InvalidArgument(
                f"end_no: at most {MAX_DESTROYED} papers per request", field="end_no"
            )
        req_id = await destruction.request_destruction(
            self._pool,
            unit_code=unit,
            paper_code=code8(request.paper_code, "paper_code"),
            numbers=numbers,
            retention_days=self._settings.paper_retention_days,
            operator=who,
            reason=request.reason,
        )
        return stock_pb2.IdResponse(id=req_id)

    async def DecideDestruction(
        self, request: stock_pb2.DecisionRequest, context: Ctx
    ) -> stock_pb2.Empty:
        unit, who = operator_office(request.operator)
        await destruction.decide_destruction(
            self._pool, unit_code=unit, req_id=request.id, approve=request.approve, operator=who
        )
        return stock_pb2.Empty()
