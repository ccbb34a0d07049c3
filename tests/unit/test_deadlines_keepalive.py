"""Issue #11 item 7: the use cases wait the shorter of the caller's deadline and
EBILL_RPC_TIMEOUT_S; the engine's server closes idle connections and keeps a ping
policy its clients' keepalive never trips."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, cast

import grpc
import pytest

from config.tuning import GRPC_KEEPALIVE_TIME_MS, SERVER_MIN_PING_INTERVAL_MS
from ebill.edges import server_options
from ebill.grpc.auth import AuthInterceptor
from ebill.interceptors import interceptors
from engine.errors import DeadlineExceeded
from engine.sealing import KeyRing
from protos.ebill.v1 import issuance_pb2, issuance_pb2_grpc
from tests.unit.test_interceptors import Fake
from usecases.batcher import Lanes, MicroBatcher, Outcome
from usecases.issuance import Issuance


async def _wait(timeout_s: float | None) -> tuple[float, str]:
    gate = asyncio.Event()

    async def silent(items: Sequence[bytes]) -> list[Outcome]:
        await gate.wait()  # a pipeline that does not answer until the test ends
        return [DeadlineExceeded("late")] * len(items)

    batcher: MicroBatcher[bytes] = MicroBatcher(silent, max_batch=10, linger_s=0, max_inflight=1)
    batcher.start()
    # Issuing never touches the pool or the pipeline directly, only the batcher.
    issuance = Issuance(
        Lanes(interactive=batcher, bulk=batcher),
        cast(Any, None),
        cast(Any, None),
        timeout_s=1.0,
        ring=KeyRing.generate(),
    )
    started = time.monotonic()
    try:
        with pytest.raises(DeadlineExceeded) as err:
            await issuance.issue_one(b"", timeout_s=timeout_s)
        return time.monotonic() - started, err.value.message
    finally:
        gate.set()
        await batcher.stop()


def test_the_callers_shorter_deadline_bounds_the_wait() -> None:
    took, message = asyncio.run(_wait(0.2))
    assert 0.15 < took < 1.0
    assert "within 0.2s" in message


def test_a_longer_deadline_is_capped_by_the_rpc_timeout() -> None:
    # 1 s is EBILL_RPC_TIMEOUT_S here; a caller allowing an hour still gets it.
    took, message = asyncio.run(asyncio.wait_for(_wait(3600.0), 10))
    assert 0.9 < took < 3 and "within 1s" in message


def test_server_ping_policy_accepts_our_clients_keepalive() -> None:
    options = dict(server_options())
    assert SERVER_MIN_PING_INTERVAL_MS <= GRPC_KEEPALIVE_TIME_MS
    assert options["grpc.http2.min_recv_ping_interval_without_data_ms"] <= GRPC_KEEPALIVE_TIME_MS
    assert options["grpc.keepalive_time_ms"] > 0 and options["grpc.keepalive_timeout_ms"] > 0


async def test_an_idle_connection_is_closed_by_the_server() -> None:
    server = grpc.aio.server(
        interceptors=interceptors(AuthInterceptor(None)),
        options=server_options(max_connection_idle_ms=300),
    )
    issuance_pb2_grpc.add_IssuanceServiceServicer_to_server(Fake(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = issuance_pb2_grpc.IssuanceServiceStub(ch)
            await stub.GetBillStatus(issuance_pb2.GetBillRequest())
            assert ch.get_state() is grpc.ChannelConnectivity.READY
            deadline = time.monotonic() + 5
            while ch.get_state() is grpc.ChannelConnectivity.READY:
                assert time.monotonic() < deadline, "the idle connection stayed open"
                await asyncio.sleep(0.05)
            # The client simply reconnects for its next call.
            await stub.GetBillStatus(issuance_pb2.GetBillRequest())
    finally:
        await server.stop(0)


def test_a_call_past_its_deadline_queues_nothing() -> None:
    took, message = asyncio.run(_wait(0.0))
    assert took < 0.1 and "before it was queued" in message
