"""Issue #11 items 2 and 5 at the edge: every string of every request of every
service is bounded and free of control characters, and a refusal names the field
the caller sent and quotes only a short prefix of the value.

The requests are found by walking the services' descriptors, so a field or a
method added later is covered without touching this test. The servicers are the
real ones behind the real interceptors, over use cases that do not exist: a call
the edge let through would fail with INTERNAL on them, so INVALID_ARGUMENT here
also shows that nothing was read, let alone written."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any, cast

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from clients.fiscal import FiscalClient
from config.settings import load
from ebill.grpc.auth import AuthInterceptor
from ebill.grpc.delivery import DeliveryServicer
from ebill.grpc.issuance import IssuanceServicer
from ebill.grpc.lifecycle import LifecycleServicer
from ebill.grpc.stock import StockServicer
from ebill.interceptors import interceptors
from protos.ebill.v1 import (
    delivery_pb2,
    delivery_pb2_grpc,
    issuance_pb2,
    issuance_pb2_grpc,
    lifecycle_pb2,
    lifecycle_pb2_grpc,
    stock_pb2,
    stock_pb2_grpc,
)
from wire.guard import RULES, check_request

SERVICES = [
    s
    for mod in (issuance_pb2, lifecycle_pb2, stock_pb2, delivery_pb2)
    for s in mod.DESCRIPTOR.services_by_name.values()
]
BILL = "ebill.v1.BillRequest"


def string_paths(d: Descriptor, prefix: str = "") -> Iterator[tuple[str, list[str]]]:
    """(caller's path, attribute path) of every string field outside bills."""
    for f in d.fields:
        name = f"{f.name}[0]" if f.is_repeated else f.name
        if f.type == FieldDescriptor.TYPE_STRING:
            yield prefix + name, [name]
        elif f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type is not None:
            if f.message_type.full_name == BILL or f.message_type.GetOptions().map_entry:
                continue  # maps: checked where read (delivery template params)
            for path, attrs in string_paths(f.message_type, f"{prefix}{name}."):
                yield path, [name, *attrs]


def build(method: MethodDescriptor, attrs: list[str], value: str) -> Message:
    request = GetMessageClass(method.input_type)()
    target: Any = request
    for attr in attrs[:-1]:
        target = _step(target, attr)
    last = attrs[-1]
    if last.endswith("[0]"):
        getattr(target, last[:-3]).append(value)
    else:
        setattr(target, last, value)
    return request


def _step(target: Any, attr: str) -> Any:
    if attr.endswith("[0]"):
        return getattr(target, attr[:-3]).add()
    return getattr(target, attr)


PATHS = [
    (s.name, m.name, path, attrs)
    for s in SERVICES
    for m in s.methods
    for path, attrs in string_paths(m.input_type)
]
CASES = [pytest.param(*p, id=f"{p[1]}.{p[2]}") for p in PATHS]


def test_the_walk_finds_the_strings() -> None:
    # Sanity: the fields the issue names are among those walked.
    paths = {(m, p) for _, m, p, _ in PATHS}
    for expected in [
        ("RedFlush", "reason"),
        ("RedFlush", "bus_no"),
        ("Refund", "red_bus_no"),
        ("RedFlush", "operator.operator"),
        ("GetBill", "by_number.bill_code"),
        ("SetAlertRule", "email"),
        ("UpdateWriteOff", "lost[0].start_no"),
        ("UpdateWriteOff", "remark"),
        ("VoidBlankPaper", "reason"),
    ]:
        assert expected in paths
    assert len(CASES) > 150


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    settings = replace(load(), fiscal_addr="127.0.0.1:1")
    none = cast(Any, None)
    server = grpc.aio.server(interceptors=interceptors(AuthInterceptor(None)))
    issuance_pb2_grpc.add_IssuanceServiceServicer_to_server(IssuanceServicer(none), server)
    lifecycle_pb2_grpc.add_LifecycleServiceServicer_to_server(LifecycleServicer(none, none), server)
    stock = StockServicer(none, settings, FiscalClient(settings.fiscal_addr))
    stock_pb2_grpc.add_StockServiceServicer_to_server(stock, server)
    delivery_pb2_grpc.add_DeliveryServiceServicer_to_server(DeliveryServicer(none), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield ch
    finally:
        await server.stop(0)


async def _refused(
    ch: grpc.aio.Channel, service: str, method: str, request: Message
) -> tuple[grpc.aio.AioRpcError, dict[str, Any], list[str]]:
    full = next(s for s in SERVICES if s.name == service)
    m = full.methods_by_name[method]
    out = GetMessageClass(m.output_type)
    call = ch.unary_unary(
        f"/{full.full_name}/{method}",
        request_serializer=lambda r: r.SerializeToString(),
        response_deserializer=out.FromString,
    )(request, timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    trailers = dict(tuple(await call.trailing_metadata()))
    status = await rpc_status.aio.from_call(call)
    fields: list[str] = []
    for d in status.details if status else ():
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            d.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    return exc.value, trailers, fields


@pytest.mark.parametrize(("service", "method", "path", "attrs"), CASES)
@pytest.mark.parametrize("bad", ["9" * 10_000, "A\x1bB", "A\x00B"], ids=["long", "esc", "nul"])
async def test_every_request_string_is_bounded_and_clean(
    channel: grpc.aio.Channel, service: str, method: str, path: str, attrs: list[str], bad: str
) -> None:
    m = next(s for s in SERVICES if s.name == service).methods_by_name[method]
    rpc, trailers, fields = await _refused(channel, service, method, build(m, attrs, bad))
    assert rpc.code() is grpc.StatusCode.INVALID_ARGUMENT, (rpc.code(), rpc.details())
    assert trailers.get("ebill-field") == path, rpc.details()
    assert fields == [path]
    assert len(rpc.details() or "") < 200  # a short message, never the value
    assert sum(len(k) + len(v) for k, v in trailers.items()) < 2048


def test_every_field_name_has_a_rule_or_the_default() -> None:
    # Names with a rule are spelled as in the protos (a typo would leave a
    # field on the default bound without anyone noticing).
    names = {p.rsplit(".", 1)[-1].removesuffix("[0]") for _, _, p, _ in PATHS}
    assert set(RULES) <= names


def test_a_bill_inside_a_request_is_left_to_bill_validation() -> None:
    # IssueBatch refuses one bill, not the call: the guard does not look inside.
    req = issuance_pb2.IssueBatchRequest()
    req.bills.add().payer.name = "x" * 10_000
    check_request(req)


def test_every_violation_is_reported_not_only_the_first() -> None:
    req = lifecycle_pb2.RedFlushRequest(bus_no="bad serial!", reason="\x07")
    req.operator.operator = "y" * 51
    from engine.errors import InvalidArgument

    with pytest.raises(InvalidArgument) as err:
        check_request(req)
    assert [v.field for v in err.value.violations] == ["operator.operator", "bus_no", "reason"]
