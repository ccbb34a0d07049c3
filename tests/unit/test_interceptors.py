"""The server interceptors: metrics, error mapping and logging for every call of the
engine's services."""

from __future__ import annotations

from collections.abc import AsyncIterator

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


@pytest.fixture
async def stub() -> AsyncIterator[issuance_pb2_grpc.IssuanceServiceStub]:
    server = grpc.aio.server(interceptors=interceptors(AuthInterceptor(None)))
    issuance_pb2_grpc.add_IssuanceServiceServicer_to_server(Fake(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield issuance_pb2_grpc.IssuanceServiceStub(ch)
    finally:
        await server.stop(0)


async def test_an_engine_error_becomes_its_code_message_and_field(
    stub: issuance_pb2_grpc.IssuanceServiceStub,
) -> None:
    before, calls = count("GetBacklog", "INVALID_ARGUMENT"), timed("GetBacklog")
    call = stub.GetBacklog(issuance_pb2.GetBacklogRequest())
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.details() == "x: bad"
    assert ("ebill-field", "x") in tuple(await call.trailing_metadata())
    assert count("GetBacklog", "INVALID_ARGUMENT") == before + 1
    assert timed("GetBacklog") == calls + 1


async def test_success_and_unexpected_failures_are_counted(
    stub: issuance_pb2_grpc.IssuanceServiceStub,
) -> None:
    ok, internal = count("GetBillStatus", "OK"), count("GetBill", "INTERNAL")
    assert (await stub.GetBillStatus(issuance_pb2.GetBillRequest())).bill_code == "12345678"
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetBill(issuance_pb2.GetBillRequest())
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
