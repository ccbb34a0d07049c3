"""Issue #11 items 5 and 6: an error carries every field violation as
google.rpc.BadRequest beside the ebill-field key, RetryInfo where a retry helps,
and stays small in trailing metadata whatever the request held."""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator
from dataclasses import replace

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from config.tuning import MAX_FIELD_VIOLATIONS
from ebill.grpc.auth import AuthInterceptor
from ebill.interceptors import interceptors
from engine.errors import (
    DeadlineExceeded,
    EbillError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from engine.fields import prefixed
from engine.validation import validate
from protos.ebill.v1 import issuance_pb2, issuance_pb2_grpc
from tests.factories import bill, catalog
from tests.unit.test_interceptors import Fake


def _many_errors() -> InvalidArgument:
    b = bill(3)
    bad = replace(
        b,
        cashier="",
        remark="r" * 10_000,
        payer=replace(b.payer, name="", tel="x"),
        medical=replace(b.medical, sex="banana"),
    )
    with pytest.raises(InvalidArgument) as err:
        validate(bad, catalog())
    return err.value


class Raising(Fake):
    """GetBacklog raises whatever error the test put in ``error``."""

    error: EbillError = NotFound("nothing")

    async def GetBacklog(
        self, request: issuance_pb2.GetBacklogRequest, context: grpc.aio.ServicerContext
    ) -> issuance_pb2.Backlog:
        raise self.error


@pytest.fixture
async def served() -> AsyncIterator[tuple[Raising, issuance_pb2_grpc.IssuanceServiceStub]]:
    servicer = Raising()
    server = grpc.aio.server(interceptors=interceptors(AuthInterceptor(None)))
    issuance_pb2_grpc.add_IssuanceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield servicer, issuance_pb2_grpc.IssuanceServiceStub(ch)
    finally:
        await server.stop(0)


async def _status(
    served: tuple[Raising, issuance_pb2_grpc.IssuanceServiceStub], error: EbillError
) -> tuple[grpc.aio.AioRpcError, status_pb2.Status, dict[str, str | bytes]]:
    servicer, stub = served
    servicer.error = error
    call = stub.GetBacklog(issuance_pb2.GetBacklogRequest())
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    status = await rpc_status.aio.from_call(call)
    assert status is not None, "no google.rpc.Status in the trailers"
    return exc.value, status, dict(tuple(await call.trailing_metadata()))


def _details(
    status: status_pb2.Status,
) -> tuple[error_details_pb2.BadRequest | None, error_details_pb2.RetryInfo | None]:
    bad = retry = None
    for d in status.details:
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            d.Unpack(bad)
        elif d.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            d.Unpack(retry)
    return bad, retry


def test_validation_collects_every_violation_and_keeps_the_first_as_message() -> None:
    err = _many_errors()
    fields = [v.field for v in err.violations]
    assert fields[0] == err.field
    assert err.message.startswith(f"{err.field}: ")
    assert f"(and {len(fields) - 1} more)" in err.message
    for f in ("payer.name", "payer.tel", "cashier", "remark", "medical.sex"):
        assert f in fields
    # Through Ray (pickle) and under the request's path they stay whole.
    again = prefixed(pickle.loads(pickle.dumps(err)), "bills[3]")
    assert [v.field for v in again.violations] == [f"bills[3].{f}" for f in fields]
    assert again.field == f"bills[3].{err.field}"


async def test_every_violation_travels_as_bad_request(
    served: tuple[Raising, issuance_pb2_grpc.IssuanceServiceStub],
) -> None:
    err = prefixed(_many_errors(), "bill")
    rpc, status, trailers = await _status(served, err)
    assert rpc.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert rpc.details() == err.message  # today's message, unchanged
    assert trailers["ebill-field"] == err.field  # today's key, unchanged
    bad, retry = _details(status)
    assert bad is not None and retry is None
    got = [(v.field, v.description) for v in bad.field_violations]
    assert got == [(v.field, v.message) for v in err.violations]
    assert "bill.medical.sex" in [f for f, _ in got]
    assert all(len(d) < 200 for _, d in got)  # the 10,000-character remark is not echoed


async def test_a_single_field_error_is_a_one_violation_bad_request(
    served: tuple[Raising, issuance_pb2_grpc.IssuanceServiceStub],
) -> None:
    _, status, _ = await _status(served, InvalidArgument("reason: is required", field="reason"))
    bad, _ = _details(status)
    assert bad is not None
    assert [(v.field, v.description) for v in bad.field_violations] == [("reason", "is required")]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ResourceExhausted("queue full", retry_after_s=0.2), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (Unavailable("signer down"), grpc.StatusCode.UNAVAILABLE),
        (DeadlineExceeded("no answer"), grpc.StatusCode.DEADLINE_EXCEEDED),
    ],
)
async def test_retryable_errors_carry_retry_info(
    served: tuple[Raising, issuance_pb2_grpc.IssuanceServiceStub],
    error: EbillError,
    code: grpc.StatusCode,
) -> None:
    rpc, status, _ = await _status(served, error)
    assert rpc.code() is code
    _, retry = _details(status)
    assert retry is not None
    assert retry.retry_delay.ToNanoseconds() == int((error.retry_after_s or 0) * 1e9) > 0


async def test_a_refusal_that_a_retry_cannot_fix_has_no_retry_info(
    served: tuple[Raising, issuance_pb2_grpc.IssuanceServiceStub],
) -> None:
    _, status, _ = await _status(served, NotFound("no such bill"))
    assert _details(status) == (None, None)


async def test_trailers_stay_small_whatever_the_error_holds(
    served: tuple[Raising, issuance_pb2_grpc.IssuanceServiceStub],
) -> None:
    from engine.errors import FieldError

    many = tuple(FieldError(f"bills[0].list_items[{i}].spec", "x" * 5000) for i in range(2000))
    err = InvalidArgument("y" * 20_000, field="f" * 20_000, violations=many)
    rpc, status, trailers = await _status(served, err)
    assert rpc.code() is grpc.StatusCode.INVALID_ARGUMENT  # not a broken call
    size = sum(len(k) + len(v) for k, v in trailers.items()) + len(rpc.details() or "")
    assert size < 8 * 1024
    bad, _ = _details(status)
    assert bad is not None and len(bad.field_violations) == MAX_FIELD_VIOLATIONS
    assert "1990 more" in bad.field_violations[-1].description
