"""DeliveryService over gRPC: a bill's delivery status and history, re-send one
or a batch, opt-out, bound accounts, templates, the unit switch.

Reads the request (wire.requests), checks the operator's reach (an issuing
point acts on its own bills; templates and the switch are the bill office's),
calls usecases.delivery and builds the answer. Permissions (in the table of
ebill/grpc/permissions.py): GetDelivery, Resend, ResendBatch, OptOut and
BindAccount need ``delivery.send``; GetTemplate, SetTemplate and SetUnitDelivery
``delivery.manage``.
"""

from __future__ import annotations

from datetime import datetime

import grpc

from engine.delivery import Channel, JobStatus, MessageKind, Template
from engine.errors import InvalidArgument, PermissionDenied
from protos.ebill.v1 import delivery_pb2, delivery_pb2_grpc, lifecycle_pb2
from storage.delivery import JobView
from usecases.delivery import BillDelivery, Delivery
from wire.requests import code8, day, digits, operator_any, operator_office

__all__ = ["DeliveryServicer"]

_CHANNEL = {
    delivery_pb2.DELIVERY_CHANNEL_SMS: Channel.SMS,
    delivery_pb2.DELIVERY_CHANNEL_EMAIL: Channel.EMAIL,
    delivery_pb2.DELIVERY_CHANNEL_WECHAT: Channel.WECHAT,
    delivery_pb2.DELIVERY_CHANNEL_ALIPAY: Channel.ALIPAY,
}
_CHANNEL_PB = {v: k for k, v in _CHANNEL.items()}
_STATUS = {
    delivery_pb2.DELIVERY_STATUS_PENDING: JobStatus.PENDING,
    delivery_pb2.DELIVERY_STATUS_SENT: JobStatus.SENT,
    delivery_pb2.DELIVERY_STATUS_FAILED: JobStatus.FAILED,
    delivery_pb2.DELIVERY_STATUS_SKIPPED: JobStatus.SKIPPED,
}
_STATUS_PB = {v: k for k, v in _STATUS.items()}
_KIND = {
    delivery_pb2.MESSAGE_KIND_ISSUED: MessageKind.ISSUED,
    delivery_pb2.MESSAGE_KIND_RED: MessageKind.RED,
}
_KIND_PB = {v: k for k, v in _KIND.items()}


def _channel(value: int, field: str) -> Channel:
    try:
        return _CHANNEL[value]  # type: ignore[index]
    except KeyError:
        raise InvalidArgument(f"{field}: a delivery channel is required", field=field) from None


def _kind(value: int, field: str) -> MessageKind:
    try:
        return _KIND[value]  # type: ignore[index]
    except KeyError:
        raise InvalidArgument(f"{field}: issued or red is required", field=field) from None


def _number(b: delivery_pb2.BillNumber, field: str = "bill") -> tuple[str, str]:
    code8(b.bill_code, f"{field}.bill_code")
    digits(b.bill_no, 10, f"{field}.bill_no")
    return b.bill_code, b.bill_no


def _time(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if at else ""


def _job_pb(j: JobView) -> delivery_pb2.ChannelDelivery:
    return delivery_pb2.ChannelDelivery(
        channel=_CHANNEL_PB[j.channel],
        status=_STATUS_PB[j.status],
        attempts=j.attempts,
        provider_id=j.provider_id,
        last_error=j.last_error,
        created_at=_time(j.created_at),
        sent_at=_time(j.sent_at),
        history=[
            delivery_pb2.DeliveryAttempt(at=_time(a.at), outcome=a.outcome.value,
                                         provider_id=a.provider_id, error=a.error,
                                         address=a.address)
            for a in j.history
        ],
    )  # fmt: skip


def _template_pb(t: Template, default: bool) -> delivery_pb2.DeliveryTemplate:
    return delivery_pb2.DeliveryTemplate(
        channel=_CHANNEL_PB[t.channel], kind=_KIND_PB[t.kind],
        provider_template=t.provider_template, subject=t.subject, body=t.body,
        params=dict(t.params), is_default=default,
    )  # fmt: skip


class DeliveryServicer(delivery_pb2_grpc.DeliveryServiceServicer):
    def __init__(self, delivery: Delivery) -> None:
        self._delivery = delivery

    async def _reach(self, op: lifecycle_pb2.Operator, code: str, no: str) -> BillDelivery:
        """The operator's unit owns the bill, and a point's operator its point."""
        status = await self._delivery.status(code, no)
        if status.unit_code != op.unit_code or (
            op.place_code and op.place_code != status.place_code
        ):
            raise PermissionDenied(f"bill {code}/{no} is not this operator's", field="bill")
        return status

    async def GetDelivery(
        self, request: delivery_pb2.GetDeliveryRequest, context: grpc.aio.ServicerContext
    ) -> delivery_pb2.GetDeliveryResponse:
        operator_any(request.operator)
        code, no = _number(request.bill)
        status = await self._reach(request.operator, code, no)
        return delivery_pb2.GetDeliveryResponse(
            bill=delivery_pb2.BillNumber(bill_code=code, bill_no=no),
            channels=[_job_pb(j) for j in status.jobs],
        )

    async def Resend(
        self, request: delivery_pb2.ResendRequest, context: grpc.aio.ServicerContext
    ) -> delivery_pb2.ResendResponse:
        _, who = operator_any(request.operator)
        code, no = _number(request.bill)
        channels = [_channel(c, f"channels[{i}]") for i, c in enumerate(request.channels)]
        await self._reach(request.operator, code, no)
        queued = await self._delivery.resend(code, no, channels, who)
        return delivery_pb2.ResendResponse(queued=queued)

    async def ResendBatch(
        self, request: delivery_pb2.ResendBatchRequest, context: grpc.aio.ServicerContext
    ) -> delivery_pb2.ResendResponse:
        unit, who = operator_any(request.operator)
        place = request.place_code
        if request.operator.place_code:
            if place and place != request.operator.place_code:
                raise PermissionDenied("place_code: an issuing point re-sends its own bills",
                                       field="place_code")  # fmt: skip
            place = request.operator.place_code
        statuses = []
        for i, s in enumerate(request.statuses):
            if s not in _STATUS:
                raise InvalidArgument(f"statuses[{i}]: unknown status", field=f"statuses[{i}]")
            statuses.append(_STATUS[s])
        queued = await self._delivery.resend_batch(
            unit, who,
            day_from=day(request.day_from, "day_from") if request.day_from else None,
            day_to=day(request.day_to, "day_to") if request.day_to else None,
            place_code=place, statuses=statuses,
            channels=[_channel(c, f"channels[{i}]") for i, c in enumerate(request.channels)],
        )  # fmt: skip
        return delivery_pb2.ResendResponse(queued=queued)

    async def OptOut(
        self, request: delivery_pb2.OptOutRequest, context: grpc.aio.ServicerContext
    ) -> delivery_pb2.OptOutResponse:
        unit, who = operator_any(request.operator)
        channel = _channel(request.channel, "channel")
        changed = await self._delivery.opt_out(
            unit, channel, request.address, who, out=not request.opt_in
        )
        return delivery_pb2.OptOutResponse(changed=changed)

    async def BindAccount(
        self, request: delivery_pb2.BindAccountRequest, context: grpc.aio.ServicerContext
    ) -> delivery_pb2.BindAccountResponse:
        unit, _ = operator_any(request.operator)
        if not request.card_no.strip():
            raise InvalidArgument("card_no: is required", field="card_no")
        channel = _channel(request.channel, "channel")
        await self._delivery.bind_account(unit, request.card_no, channel, request.account)
        return delivery_pb2.BindAccountResponse()

    async def GetTemplate(
        self, request: delivery_pb2.GetTemplateRequest, context: grpc.aio.ServicerContext
    ) -> delivery_pb2.DeliveryTemplate:
        unit, _ = operator_office(request.operator)
        t, default = await self._delivery.template(
            unit, _channel(request.channel, "channel"), _kind(request.kind, "kind")
        )
        return _template_pb(t, default)

    async def SetTemplate(
        self, request: delivery_pb2.SetTemplateRequest, context: grpc.aio.ServicerContext
    ) -> delivery_pb2.DeliveryTemplate:
        unit, who = operator_office(request.operator)
        t = request.template
        channel = _channel(t.channel, "template.channel")
        kind = _kind(t.kind, "template.kind")
        if request.reset:
            await self._delivery.reset_template(unit, channel, kind, who)
        else:
            await self._delivery.set_template(
                unit,
                Template(channel, kind, t.provider_template, t.subject, t.body, dict(t.params)),
                who,
            )
        current, default = await self._delivery.template(unit, channel, kind)
        return _template_pb(current, default)

    async def SetUnitDelivery(
        self, request: delivery_pb2.SetUnitDeliveryRequest, context: grpc.aio.ServicerContext
    ) -> delivery_pb2.SetUnitDeliveryResponse:
        unit, who = operator_office(request.operator)
        await self._delivery.set_unit_enabled(unit, request.enabled, who)
        return delivery_pb2.SetUnitDeliveryResponse()
