"""IssuanceService over gRPC: read the request, call usecases.issuance, answer.

Errors are raised as engine errors; ebill.interceptors turns them into status codes.
"""

from __future__ import annotations

import grpc

from ebill.grpc.auth import require_covers
from ebill.grpc.deadline import time_left
from engine.errors import EbillError, InvalidArgument
from engine.model import BillStatus, IssuedBill
from engine.statuses import PaperStatus
from protos.ebill.v1 import bill_pb2, issuance_pb2, issuance_pb2_grpc
from usecases.issuance import Issuance, OfflineBill
from wire.bills import bill_to_pb, status_to_pb, work_to_pb
from wire.requests import bill_key, code8, digits

__all__ = ["SERVICE_NAME", "IssuanceServicer"]

SERVICE_NAME = "ebill.v1.IssuanceService"


class IssuanceServicer(issuance_pb2_grpc.IssuanceServiceServicer):
    def __init__(self, issuance: Issuance) -> None:
        self._issuance = issuance

    async def IssueBill(
        self, request: issuance_pb2.IssueBillRequest, context: grpc.aio.ServicerContext
    ) -> issuance_pb2.IssueBillResponse:
        if not request.HasField("bill"):
            raise InvalidArgument("bill: is required", field="bill")
        work = await self._issuance.issue_one(
            request.bill.SerializeToString(), timeout_s=time_left(context)
        )
        return issuance_pb2.IssueBillResponse(bill=work_to_pb(work))

    async def IssueBatch(
        self, request: issuance_pb2.IssueBatchRequest, context: grpc.aio.ServicerContext
    ) -> issuance_pb2.IssueBatchResponse:
        outcomes = await self._issuance.issue_batch(
            [b.SerializeToString() for b in request.bills], timeout_s=time_left(context)
        )
        results = []
        for i, (src, outcome) in enumerate(zip(request.bills, outcomes, strict=True)):
            item = issuance_pb2.ItemResult(index=i, bus_no=src.bus_no)
            if isinstance(outcome, EbillError):
                item.error.CopyFrom(
                    issuance_pb2.ItemError(
                        code=outcome.code, message=outcome.message, field=outcome.field
                    )
                )
            else:
                item.bill.CopyFrom(work_to_pb(outcome))
            results.append(item)
        return issuance_pb2.IssueBatchResponse(results=results)

    async def GetBill(
        self, request: issuance_pb2.GetBillRequest, context: grpc.aio.ServicerContext
    ) -> bill_pb2.IssuedBill:
        return bill_to_pb(await self._bill_in_scope(request))

    async def _bill_in_scope(self, request: issuance_pb2.GetBillRequest) -> IssuedBill:
        """The bill, if the caller's scope holds its issuing point: another
        point's bill is PERMISSION_DENIED (for a bill that exists; NOT_FOUND
        otherwise, as for everyone)."""
        bill = await self._issuance.get_bill(bill_key(request))
        require_covers(bill.unit_code, bill.place_code)
        return bill

    async def GetBillStatus(
        self, request: issuance_pb2.GetBillRequest, context: grpc.aio.ServicerContext
    ) -> issuance_pb2.BillStatusResponse:
        bill = await self._bill_in_scope(request)
        return issuance_pb2.BillStatusResponse(
            bill_code=bill.bill_code,
            bill_no=bill.bill_no,
            bus_no=bill.bus_no,
            status=status_to_pb(bill.status),
            printed_to_paper=bill.paper_status == PaperStatus.PRINTED,
            red_flushed=bill.status is BillStatus.RED_FLUSHED,
        )

    async def GetBacklog(
        self, request: issuance_pb2.GetBacklogRequest, context: grpc.aio.ServicerContext
    ) -> issuance_pb2.Backlog:
        b = await self._issuance.backlog()
        return issuance_pb2.Backlog(
            reserved=b.reserved,
            pending_countersign=b.pending_countersign,
            oldest_unfinished_s=b.oldest_unfinished_s,
            max_attempts=b.max_attempts,
            fiscal_circuit_open=b.fiscal_circuit_open,
            quarantined=b.quarantined,
            quarantine=[
                issuance_pb2.QuarantinedOffline(
                    offline_id=q.offline_id,
                    unit_code=q.unit_code,
                    bus_no=q.bus_no,
                    paper_code=q.paper_code,
                    paper_no=q.paper_no,
                    bill_id=q.bill_id or 0,
                    reason=q.reason,
                    quarantined_at=q.quarantined_at.isoformat(),
                )
                for q in b.quarantine
            ],
        )

    async def RecordOfflineBill(
        self, request: issuance_pb2.RecordOfflineBillRequest, context: grpc.aio.ServicerContext
    ) -> issuance_pb2.RecordOfflineBillResponse:
        if not request.HasField("bill"):
            raise InvalidArgument("bill: is required", field="bill")
        code8(request.paper_code, "paper_code")
        digits(request.paper_no, 10, "paper_no")
        if not request.operator.strip():
            raise InvalidArgument("operator: is required", field="operator")
        offline_id = await self._issuance.record_offline(
            OfflineBill(
                request=request.bill.SerializeToString(),
                paper_code=request.paper_code,
                paper_no=request.paper_no,
                operator=request.operator,
            )
        )
        return issuance_pb2.RecordOfflineBillResponse(offline_id=offline_id)
