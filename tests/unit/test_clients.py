"""The typed clients against a tiny in-process gRPC server (real gRPC, no mocks):
error mapping, retries with jitter on UNAVAILABLE for idempotent RPCs only, one
deadline across attempts, cached public keys, and mail."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from typing import Any

import grpc
import pytest
from aiosmtpd.controller import Controller

from clients._grpc import NO_RETRY, RetryPolicy, call, to_error
from clients.fiscal import (
    AuditLine,
    FiscalClient,
    WriteOffDeclaration,
    WriteOffFigures,
)
from clients.mail import Mailer
from clients.signer import SignerClient, VerifyItem
from engine.catalog import ItemEntry
from engine.errors import (
    AlreadyExists,
    DeadlineExceeded,
    EbillError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from engine.model import BillStatus
from engine.numbers import NumberRange
from engine.pipeline import Work
from engine.sm2 import SigningKey
from engine.statuses import Medium
from ops.stack import free_port
from protos.fiscal.v1 import fiscal_pb2, fiscal_pb2_grpc
from protos.hsm.v1 import signer_pb2, signer_pb2_grpc

FAST = RetryPolicy(attempts=4, initial_backoff_s=0.01, multiplier=2.0, max_backoff_s=0.05)
KEY = SigningKey.generate()


class Flaky:
    """Fails the next ``fail[rpc]`` calls of an RPC with UNAVAILABLE, then answers;
    counts every call it sees."""

    def __init__(self) -> None:
        self.fail: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.delay_s = 0.0

    async def weather(self, rpc: str, context: grpc.aio.ServicerContext) -> None:
        self.calls[rpc] += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail[rpc] > 0:
            self.fail[rpc] -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{rpc}: down for a moment")


class Fiscal(fiscal_pb2_grpc.FiscalPlatformServicer):
    def __init__(self, flaky: Flaky) -> None:
        self.flaky = flaky

    async def CountersignBatch(self, request: Any, context: Any) -> Any:
        await self.flaky.weather("CountersignBatch", context)
        return fiscal_pb2.CountersignBatchResponse(
            results=[
                fiscal_pb2.CountersignResult(
                    bill_code=i.bill_code,
                    bill_no=i.bill_no,
                    ok=True,
                    fiscal_signature=b"fs:" + i.bill_no.encode(),
                    unit_signature=i.unit_signature,
                    countersigned_at="2026-11-23T00:00:00+08:00",
                )
                for i in request.items
            ]
        )

    async def GrantSegment(self, request: Any, context: Any) -> Any:
        await self.flaky.weather("GrantSegment", context)
        return fiscal_pb2.GrantSegmentResponse(
            grant_id="g1", bill_code=request.bill_code, start_no="0000000001", end_no="0000000100"
        )

    async def SubmitWriteOff(self, request: Any, context: Any) -> Any:
        await self.flaky.weather("SubmitWriteOff", context)
        assert request.figures.lost_count == 3
        return fiscal_pb2.SubmitWriteOffResponse(accepted=True, fiscal_ref="WO1")

    async def SubmitAuditReport(self, request: Any, context: Any) -> Any:
        await self.flaky.weather("SubmitAuditReport", context)
        return fiscal_pb2.SubmitAuditReportResponse(fiscal_ref="AR1", platform=request.lines)

    async def GetPublicKey(self, request: Any, context: Any) -> Any:
        await self.flaky.weather("GetPublicKey", context)
        return fiscal_pb2.GetPublicKeyResponse(public_key=KEY.public.point)

    async def RegisterUnit(self, request: Any, context: Any) -> Any:
        await self.flaky.weather("RegisterUnit", context)
        assert request.public_key == KEY.public.point
        return fiscal_pb2.RegisterUnitResponse()

    async def SubmitGrantApplication(self, request: Any, context: Any) -> Any:
        await self.flaky.weather("SubmitGrantApplication", context)
        return fiscal_pb2.SubmitGrantApplicationResponse(fiscal_ref="APP-" + request.ref)

    async def GetGrantApplications(self, request: Any, context: Any) -> Any:
        await self.flaky.weather("GetGrantApplications", context)
        return fiscal_pb2.GetGrantApplicationsResponse(
            decisions=[
                fiscal_pb2.GrantDecision(fiscal_ref="APP-1", status="pending"),
                fiscal_pb2.GrantDecision(
                    fiscal_ref="APP-2", status="granted", grant_id="g2", bill_code="44060119",
                    start_no="0000000101", end_no="0000000200",
                ),
            ]
        )  # fmt: skip

    async def GetBaseData(self, request: Any, context: Any) -> Any:
        await self.flaky.weather("GetBaseData", context)
        return fiscal_pb2.BaseData(
            unit_code=request.unit_code,
            version=7,
            items=[
                fiscal_pb2.BaseItem(charge_code="0101", charge_name="西药费", valid_to="20270101")
            ],
        )

    async def PublishBaseData(self, request: Any, context: Any) -> Any:
        return fiscal_pb2.BaseData(unit_code=request.unit_code)

    async def RegisterCertificate(self, request: Any, context: Any) -> Any:
        return fiscal_pb2.RegisterCertificateResponse(serial="1")

    async def ReturnSegment(self, request: Any, context: Any) -> Any:
        await self.flaky.weather("ReturnSegment", context)
        assert (request.start_no, request.end_no) == ("0000000090", "0000000100")
        return fiscal_pb2.ReturnSegmentResponse()

    async def VerifyBill(self, request: Any, context: Any) -> Any:
        # The bill code names the status to fail with: the error-mapping probe.
        await context.abort(grpc.StatusCode[request.bill_code], f"as asked: {request.bill_code}")


class Signer(signer_pb2_grpc.SignerServicer):
    def __init__(self, flaky: Flaky) -> None:
        self.flaky = flaky

    async def SignBatch(self, request: Any, context: Any) -> Any:
        await self.flaky.weather("SignBatch", context)
        return signer_pb2.SignBatchResponse(signatures=[b"sig:" + d for d in request.data])

    async def VerifyBatch(self, request: Any, context: Any) -> Any:
        await self.flaky.weather("VerifyBatch", context)
        return signer_pb2.VerifyBatchResponse(
            valid=[i.signature == b"sig:" + i.data for i in request.items]
        )

    async def ExportPublicKey(self, request: Any, context: Any) -> Any:
        await self.flaky.weather("ExportPublicKey", context)
        return signer_pb2.ExportPublicKeyResponse(
            key_id=request.key_id, public_key=KEY.public.point
        )


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Flaky]]:
    flaky = Flaky()
    srv = grpc.aio.server()
    fiscal_pb2_grpc.add_FiscalPlatformServicer_to_server(Fiscal(flaky), srv)
    signer_pb2_grpc.add_SignerServicer_to_server(Signer(flaky), srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    try:
        yield f"127.0.0.1:{port}", flaky
    finally:
        await srv.stop(None)


def work(no: int) -> Work:
    return Work(
        bill_id=no, unit_code="U1", bus_no=f"B{no}", bus_type="02", place_code="001",
        bill_code="44060119", bill_no=f"{no:010d}", check_code="abcdef", total_fen=100,
        issued_at=datetime.now(UTC), canonical=b"{}", canonical_version="ebill-canonical/1",
        status=BillStatus.PENDING_COUNTERSIGN, unit_signature=b"us",
    )  # fmt: skip


# -- error mapping ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("INVALID_ARGUMENT", InvalidArgument),
        ("OUT_OF_RANGE", InvalidArgument),
        ("NOT_FOUND", NotFound),
        ("ALREADY_EXISTS", AlreadyExists),
        ("FAILED_PRECONDITION", FailedPrecondition),
        ("PERMISSION_DENIED", PermissionDenied),
        ("UNAUTHENTICATED", PermissionDenied),
        ("RESOURCE_EXHAUSTED", ResourceExhausted),
        ("UNAVAILABLE", Unavailable),
        ("ABORTED", Unavailable),
        ("DEADLINE_EXCEEDED", DeadlineExceeded),
        ("INTERNAL", Internal),
        ("UNKNOWN", Internal),
        ("UNIMPLEMENTED", Internal),
    ],
)
async def test_each_grpc_status_maps_to_one_engine_error(
    server: tuple[str, Flaky], code: str, error: type[EbillError]
) -> None:
    addr, _ = server
    async with FiscalClient(addr, 5.0, retry=NO_RETRY) as fiscal:
        with pytest.raises(error) as caught:
            await fiscal.verify_bill(code, "0000000001", "abcdef")
    assert type(caught.value) is error
    assert caught.value.message == f"fiscal platform VerifyBill: as asked: {code} ({code})"
    assert isinstance(caught.value.__cause__, grpc.aio.AioRpcError)


async def test_a_server_that_is_not_there_is_unavailable_without_waiting_for_ready() -> None:
    stub = fiscal_pb2_grpc.FiscalPlatformStub(grpc.aio.insecure_channel(f"127.0.0.1:{free_port()}"))
    with pytest.raises(Unavailable):
        await call(
            stub.GetPublicKey,
            fiscal_pb2.GetPublicKeyRequest(),
            what="fiscal platform GetPublicKey",
            timeout_s=5.0,
            idempotent=True,
            retry=NO_RETRY,
            wait_for_ready=False,
        )


async def test_to_error_names_the_call() -> None:
    exc = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "gone"
    )
    err = to_error(exc, "signing server SignBatch")
    assert isinstance(err, Unavailable)
    assert err.code == "UNAVAILABLE"
    assert "signing server SignBatch: gone" in err.message


# -- retries ----------------------------------------------------------------------------


async def test_an_idempotent_rpc_is_retried_until_it_answers(server: tuple[str, Flaky]) -> None:
    addr, flaky = server
    flaky.fail["CountersignBatch"] = 3
    async with FiscalClient(addr, 5.0, retry=FAST) as fiscal:
        results = await fiscal.countersign_batch([work(1), work(2)])
    assert flaky.calls["CountersignBatch"] == 4
    assert [(r.bill_no, r.ok, r.fiscal_signature) for r in results] == [
        ("0000000001", True, b"fs:0000000001"),
        ("0000000002", True, b"fs:0000000002"),
    ]


async def test_retries_stop_after_the_policy_s_attempts(server: tuple[str, Flaky]) -> None:
    addr, flaky = server
    flaky.fail["SignBatch"] = 10
    async with SignerClient(addr, "unit-sign", 5.0, retry=FAST) as signer:
        with pytest.raises(Unavailable):
            await signer.sign_batch([b"a"])
    assert flaky.calls["SignBatch"] == FAST.attempts


@pytest.mark.parametrize("rpc", ["GrantSegment", "SubmitWriteOff", "SubmitAuditReport"])
async def test_a_non_idempotent_rpc_is_never_sent_twice(
    server: tuple[str, Flaky], rpc: str
) -> None:
    addr, flaky = server
    flaky.fail[rpc] = 1
    async with FiscalClient(addr, 5.0, retry=FAST) as fiscal:
        with pytest.raises(Unavailable):
            if rpc == "GrantSegment":
                await fiscal.grant_segment("U1", "44060119", 100)
            elif rpc == "SubmitWriteOff":
                await fiscal.submit_write_off(declaration())
            else:
                await fiscal.submit_audit_report(
                    "U1", date(2026, 1, 1), date(2026, 1, 31), [AuditLine("44060119", 1, 100)]
                )
        assert flaky.calls[rpc] == 1
        # The next call (a human's decision to try again) goes through.
        if rpc == "GrantSegment":
            grant = await fiscal.grant_segment("U1", "44060119", 100)
            assert grant.numbers == NumberRange.of(1, 100)
        elif rpc == "SubmitWriteOff":
            assert (await fiscal.submit_write_off(declaration())).fiscal_ref == "WO1"
        else:
            receipt = await fiscal.submit_audit_report(
                "U1", date(2026, 1, 1), date(2026, 1, 31), [AuditLine("44060119", 1, 100)]
            )
            assert receipt.platform == (AuditLine("44060119", 1, 100),)
    assert flaky.calls[rpc] == 2


def declaration() -> WriteOffDeclaration:
    return WriteOffDeclaration(
        unit_code="U1",
        medium=Medium.EBILL,
        code="44060119",
        period_from=date(2026, 1, 1),
        period_to=date(2026, 1, 31),
        figures=WriteOffFigures(
            issued_count=1,
            issued_fen=100,
            red_count=0,
            red_fen=0,
            red_flushed_count=0,
            voided_count=0,
            printed_count=0,
            used=(NumberRange.of(1, 1),),
            lost=(NumberRange.of(5, 7),),
        ),
        ref="wo-1",
    )


async def test_retries_share_the_call_s_one_deadline(server: tuple[str, Flaky]) -> None:
    addr, flaky = server
    flaky.fail["CountersignBatch"] = 1000
    patient = RetryPolicy(attempts=1000, initial_backoff_s=0.05, max_backoff_s=0.05)
    async with FiscalClient(addr, 0.5, retry=patient) as fiscal:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await fiscal.countersign_batch([work(1)])
        took = time.monotonic() - started
    assert took < 0.5 + 0.2
    assert 2 < flaky.calls["CountersignBatch"] < 1000


async def test_a_deadline_exceeded_is_not_retried(server: tuple[str, Flaky]) -> None:
    addr, flaky = server
    flaky.delay_s = 0.5
    async with FiscalClient(addr, 0.2, retry=FAST) as fiscal:
        with pytest.raises(DeadlineExceeded):
            await fiscal.countersign_batch([work(1)])
    assert flaky.calls["CountersignBatch"] == 1


def test_backoff_is_exponential_capped_and_fully_jittered() -> None:
    policy = RetryPolicy(attempts=10, initial_backoff_s=0.1, multiplier=2.0, max_backoff_s=1.0)
    rng = random.Random(7)
    for retry, cap in enumerate([0.1, 0.2, 0.4, 0.8, 1.0, 1.0]):
        draws = [policy.backoff(retry, rng) for _ in range(500)]
        assert all(0.0 <= d <= cap for d in draws)
        # Full jitter: spread over the whole interval, not bunched at the cap.
        assert min(draws) < cap * 0.1
        assert max(draws) > cap * 0.9
        assert len(set(draws)) == len(draws)


async def test_the_waits_between_attempts_are_the_jittered_backoffs(
    server: tuple[str, Flaky],
) -> None:
    addr, flaky = server
    flaky.fail["GetPublicKey"] = 3
    policy = RetryPolicy(attempts=4, initial_backoff_s=0.1, multiplier=2.0, max_backoff_s=1.0)
    expected_rng = random.Random(11)
    expected = [policy.backoff(n, expected_rng) for n in range(3)]
    stub = fiscal_pb2_grpc.FiscalPlatformStub(grpc.aio.insecure_channel(addr))
    started = time.monotonic()
    resp = await call(
        stub.GetPublicKey,
        fiscal_pb2.GetPublicKeyRequest(),
        what="fiscal platform GetPublicKey",
        timeout_s=10.0,
        idempotent=True,
        retry=policy,
        rng=random.Random(11),
    )
    took = time.monotonic() - started
    assert resp.public_key == KEY.public.point
    assert flaky.calls["GetPublicKey"] == 4
    assert sum(expected) <= took < sum(expected) + 0.5


# -- the clients' own behaviour ---------------------------------------------------------------


async def test_public_keys_are_fetched_once(server: tuple[str, Flaky]) -> None:
    addr, flaky = server
    async with SignerClient(addr, "unit-sign") as signer, FiscalClient(addr) as fiscal:
        assert await signer.public_key() == KEY.public
        assert await signer.public_key() == KEY.public
        assert await fiscal.public_key() == KEY.public
        assert await fiscal.public_key() == KEY.public
    assert flaky.calls["ExportPublicKey"] == 1
    assert flaky.calls["GetPublicKey"] == 1


async def test_the_idempotent_fiscal_rpcs_are_retried(server: tuple[str, Flaky]) -> None:
    addr, flaky = server
    for rpc in ("RegisterUnit", "SubmitGrantApplication", "GetGrantApplications", "ReturnSegment"):
        flaky.fail[rpc] = 1
    async with FiscalClient(addr, 5.0, retry=FAST) as fiscal:
        await fiscal.register_unit("U1", "unit", KEY.public)
        assert await fiscal.submit_grant_application("U1", "44060119", 100, "1") == "APP-1"
        pending, granted = await fiscal.grant_decisions("U1", ["APP-1", "APP-2"])
        await fiscal.return_segment("U1", "44060119", NumberRange.of(90, 100), "return-1")
    assert (pending.status, pending.numbers) == ("pending", None)
    assert (granted.status, granted.grant_id, granted.numbers) == (
        "granted",
        "g2",
        NumberRange.of(101, 200),
    )
    for rpc in ("RegisterUnit", "SubmitGrantApplication", "GetGrantApplications", "ReturnSegment"):
        assert flaky.calls[rpc] == 2, rpc


async def test_verify_batch_answers_per_item(server: tuple[str, Flaky]) -> None:
    addr, flaky = server
    flaky.fail["VerifyBatch"] = 1
    async with SignerClient(addr, "unit-sign", retry=FAST) as signer:
        valid = await signer.verify_batch([VerifyItem(b"a", b"sig:a"), VerifyItem(b"b", b"sig:x")])
    assert valid == [True, False]


async def test_sign_batch_keeps_the_order(server: tuple[str, Flaky]) -> None:
    addr, _ = server
    async with SignerClient(addr, "unit-sign") as signer:
        assert await signer.sign_batch([b"a", b"b", b"c"]) == [b"sig:a", b"sig:b", b"sig:c"]


async def test_a_closed_client_opens_a_new_channel_on_next_use(server: tuple[str, Flaky]) -> None:
    addr, _ = server
    signer = SignerClient(addr, "unit-sign")
    assert await signer.sign_batch([b"a"]) == [b"sig:a"]
    await signer.close()
    assert await signer.sign_batch([b"b"]) == [b"sig:b"]
    await signer.close()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


async def test_mailer_sends_through_a_real_smtp_server() -> None:
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        mailer = Mailer("127.0.0.1", port, "ebill@hospital.test")
        assert mailer.enabled
        await mailer.send("keeper@hospital.test", "库存预警 low stock", "只剩 10 张")
    finally:
        controller.stop()
    (msg,) = inbox.messages
    assert msg["From"] == "ebill@hospital.test"
    assert msg["To"] == "keeper@hospital.test"
    assert msg["Subject"] == "库存预警 low stock"
    assert msg.get_content().strip() == "只剩 10 张"


async def test_mail_is_off_without_a_host() -> None:
    mailer = Mailer("", 25, "ebill@localhost")
    assert not mailer.enabled
    with pytest.raises(RuntimeError):
        await mailer.send("a@b", "s", "b")


async def test_base_data_is_read_as_platform_items_and_retried(server: tuple[str, Flaky]) -> None:
    addr, flaky = server
    flaky.fail["GetBaseData"] = 2
    async with FiscalClient(addr, 5.0, retry=FAST) as fiscal:
        got = await fiscal.base_data("350203001")
    assert flaky.calls["GetBaseData"] == 3
    assert got.version == 7
    assert got.items == (ItemEntry("0101", "西药费", None, date(2027, 1, 1), "platform"),)
