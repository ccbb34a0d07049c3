"""The server interceptors: metrics, error mapping and logging for every call of the
engine's services.

A refused call's status reaches the client before the metrics interceptor counts
it: ``context.abort`` (ebill.interceptors.abort, inside the error interceptor)
sends the status and only then raises through the outer interceptors. Reading a
counter as soon as the client has the status therefore raced the server's
unwinding, and lost under load (the client's continuation ran first). The tests
now wait until the server has finished the call (``Settled``, outermost) before
they read the counters, so they check the same counts, deterministically.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from prometheus_client import REGISTRY

from ebill.grpc.auth import AuthInterceptor
from ebill.interceptors import STATUS_DETAILS_KEY, interceptors
from engine.errors import InvalidArgument
from protos.ebill.v1 import bill_pb2, issuance_pb2, issuance_pb2_grpc


class Fake(issuance_pb2_grpc.IssuanceServiceServicer):
    async def GetBacklog(
        self, request: issuance_pb2.GetBacklogRequest, context: grpc.aio.ServicerContext
    ) -> issuance_pb2.Backlog:
        raise InvalidArgument("x: bad", field="x")

    async def GetBill(
        self, request: issuance_pb2.GetBillRequest, context: grpc.aio.ServicerContext
    ) -> bill_pb2.IssuedBill:
        raise RuntimeError("boom")

    async def IssueBatch(
        self, request: issuance_pb2.IssueBatchRequest, context: grpc.aio.ServicerContext
    ) -> issuance_pb2.IssueBatchResponse:
        return issuance_pb2.IssueBatchResponse()

    async def RecordOfflineBill(
        self, request: issuance_pb2.RecordOfflineBillRequest, context: grpc.aio.ServicerContext
    ) -> issuance_pb2.RecordOfflineBillResponse:
        # What a use case sees when PostgreSQL goes away under it.
        raise ConnectionResetError("connection reset by peer")

    async def GetBillStatus(
        self, request: issuance_pb2.GetBillRequest, context: grpc.aio.ServicerContext
    ) -> issuance_pb2.BillStatusResponse:
        return issuance_pb2.BillStatusResponse(bill_code="12345678")

    async def IssueBill(
        self, request: issuance_pb2.IssueBillRequest, context: grpc.aio.ServicerContext
    ) -> issuance_pb2.IssueBillResponse:
        raise InvalidArgument("bill: is required", field="bill")


def count(method: str, code: str) -> float:
    value = REGISTRY.get_sample_value("ebill_rpc_total", {"method": method, "code": code})
    return value or 0.0


def timed(method: str) -> float:
    return REGISTRY.get_sample_value("ebill_rpc_seconds_count", {"method": method}) or 0.0


class Settled(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Outermost: notes each unary call once every interceptor inside it, the
    metrics one included, has finished with it."""

    def __init__(self) -> None:
        self.done: asyncio.Queue[str] = asyncio.Queue()

    async def intercept_service(
        self, continuation: Any, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner, method = handler.unary_unary, str(details.method).rsplit("/", 1)[-1]

        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await inner(request, context)
            finally:
                self.done.put_nowait(method)

        return grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def wait(self, *methods: str) -> None:
        """Until the server has finished these calls, in this order (a bound, not
        a timing: a call the server never finishes fails the test)."""
        for method in methods:
            assert await asyncio.wait_for(self.done.get(), 30) == method


@pytest.fixture
def settled() -> Settled:
    return Settled()


@pytest.fixture
async def stub(settled: Settled) -> AsyncIterator[issuance_pb2_grpc.IssuanceServiceStub]:
    server = grpc.aio.server(interceptors=[settled, *interceptors(AuthInterceptor(None))])
    issuance_pb2_grpc.add_IssuanceServiceServicer_to_server(Fake(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield issuance_pb2_grpc.IssuanceServiceStub(ch)
    finally:
        await server.stop(0)


async def test_an_engine_error_becomes_its_code_message_and_field(
    stub: issuance_pb2_grpc.IssuanceServiceStub, settled: Settled
) -> None:
    before, calls = count("GetBacklog", "INVALID_ARGUMENT"), timed("GetBacklog")
    call = stub.GetBacklog(issuance_pb2.GetBacklogRequest())
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.details() == "x: bad"
    assert ("ebill-field", "x") in tuple(await call.trailing_metadata())
    await settled.wait("GetBacklog")
    assert count("GetBacklog", "INVALID_ARGUMENT") == before + 1
    assert timed("GetBacklog") == calls + 1


async def test_success_and_unexpected_failures_are_counted(
    stub: issuance_pb2_grpc.IssuanceServiceStub, settled: Settled
) -> None:
    ok, internal = count("GetBillStatus", "OK"), count("GetBill", "INTERNAL")
    assert (await stub.GetBillStatus(issuance_pb2.GetBillRequest())).bill_code == "12345678"
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetBill(issuance_pb2.GetBillRequest())
    await settled.wait("GetBillStatus", "GetBill")
    assert count("GetBillStatus", "OK") == ok + 1
    assert count("GetBill", "INTERNAL") == internal + 1


async def test_a_lost_database_connection_is_unavailable_with_a_retry_hint(
    stub: issuance_pb2_grpc.IssuanceServiceStub,
) -> None:
    call = stub.RecordOfflineBill(issuance_pb2.RecordOfflineBillRequest())
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    assert exc.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "database unavailable" in (exc.value.details() or "")
    details = dict(await call.trailing_metadata())[STATUS_DETAILS_KEY]
    status = status_pb2.Status.FromString(details)
    hints = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert len(hints) == 1
