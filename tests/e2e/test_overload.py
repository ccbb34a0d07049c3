"""Overload (issue #11 item 8): offered far more than the engine's queue holds, the
engine answers every call at once - a bill, or RESOURCE_EXHAUSTED with RetryInfo and
nothing written - its queue stays within the bound, and every acknowledged bill is
in the database exactly once."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from protos.ebill.v1 import bill_pb2, issuance_pb2, issuance_pb2_grpc
from storage.db import connect_pool
from tests.resilience import new_bills, own_stack

pytestmark = pytest.mark.slow

QUEUE_MAX = 40
OFFERED = 600  # fifteen times the bound, all at once


def retry_delay(status: object) -> float | None:
    for d in getattr(status, "details", ()):
        if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            d.Unpack(info)
            return float(info.retry_delay.ToNanoseconds()) / 1e9
    return None


def queue_depth(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(r"^ebill_queue_depth (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_overload_is_refused_at_once_and_no_acknowledged_bill_is_lost() -> None:
    with own_stack("overload") as stack:
        stack.start_engine(
            EBILL_QUEUE_MAX=str(QUEUE_MAX), EBILL_BATCH_MAX="20", EBILL_MAX_INFLIGHT="1"
        )

        async def scenario() -> None:
            bills = new_bills(OFFERED, "OVL")
            acked: dict[str, bill_pb2.IssuedBill] = {}
            refused: list[tuple[bill_pb2.BillRequest, float]] = []
            others: list[str] = []
            depths: list[float] = []

            async def one(
                stub: issuance_pb2_grpc.IssuanceServiceStub, b: bill_pb2.BillRequest
            ) -> None:
                call = stub.IssueBill(issuance_pb2.IssueBillRequest(bill=b), timeout=60)
                try:
                    acked[b.bus_no] = (await call).bill
                except grpc.aio.AioRpcError as exc:
                    delay = retry_delay(await rpc_status.aio.from_call(call))
                    if exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and delay:
                        refused.append((b, delay))
                    else:
                        others.append(f"{exc.code().name}: {exc.details()} (retry {delay})")

            async def watch(stop: asyncio.Event) -> None:
                while not stop.is_set():
                    depths.append(await asyncio.to_thread(queue_depth, stack.config.metrics_port))
                    await asyncio.sleep(0.05)

            channels = [stack.channel() for _ in range(4)]
            stubs = [issuance_pb2_grpc.IssuanceServiceStub(ch) for ch in channels]
            stop = asyncio.Event()
            watcher = asyncio.create_task(watch(stop))
            started = time.monotonic()
            await asyncio.gather(*(one(stubs[i % 4], b) for i, b in enumerate(bills)))
            first_round = time.monotonic() - started
            stop.set()
            await watcher

            assert not others, others[:5]  # every call: a bill or a clean refusal
            assert len(acked) + len(refused) == OFFERED
            assert refused, "nothing refused: the queue is not bounded"
            assert acked, "nothing issued"
            # Single bills queue in the interactive lane, which the gauge now counts.
            assert 0 < max(depths) <= QUEUE_MAX, max(depths)
            assert first_round < 60

            pool = await connect_pool(stack.database_url, migrate=False)
            try:
                # Nothing of a refused call was written.
                gone = [b.bus_no for b, _ in refused]
                assert (
                    await pool.fetchval(
                        "SELECT count(*) FROM bills WHERE bus_no = ANY($1::text[])", gone
                    )
                    == 0
                )
                # The HIS retries the refused ones after the delay it was given.
                todo = [b for b, _ in refused]
                for _ in range(200):
                    if not todo:
                        break
                    await asyncio.sleep(max(d for _, d in refused))
                    refused.clear()
                    await asyncio.gather(*(one(stubs[i % 4], b) for i, b in enumerate(todo)))
                    assert not others, others[:5]
                    todo = [b for b, _ in refused]
                assert not todo
                # Every acknowledged bill once, as acknowledged; numbers never twice.
                rows = await pool.fetch(
                    "SELECT bus_no, bill_code, bill_no, count(*) OVER (PARTITION BY bus_no) AS n"
                    " FROM bills WHERE bus_no = ANY($1::text[])",
                    [b.bus_no for b in bills],
                )
                assert len(rows) == OFFERED
                for r in rows:
                    assert r["n"] == 1
                    ack = acked[r["bus_no"]]
                    assert (r["bill_code"], r["bill_no"]) == (ack.bill_code, ack.bill_no)
            finally:
                await pool.close()
                for ch in channels:
                    await ch.close()

        asyncio.run(scenario())
