"""The same pipeline on a multi-node Ray cluster (three local nodes)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import pytest

from ops.raycluster import LocalRayCluster
from protos.ebill.v1 import bill_pb2, issuance_pb2, issuance_pb2_grpc
from storage.db import connect_pool
from tests.e2e.test_ops import scrape
from tests.resilience import check_invariants, own_stack, public_keys, wait_until_settled
from usecases import demo
from wire.bills import input_to_pb

pytestmark = pytest.mark.slow


def test_stages_spread_over_nodes_and_issue() -> None:
    cluster = LocalRayCluster(Path(tempfile.mkdtemp(prefix="ebill-ray-")), nodes=3).start()
    try:
        with own_stack("scale") as stack:
            stack.start_engine(120, **cluster.env(), EBILL_STAGE_REPLICAS="3")
            text = scrape(stack)
            nodes = {
                line.split('node="')[1].split('"')[0]
                for line in text.splitlines()
                if line.startswith("ebill_stage_replicas{")
            }
            assert len(nodes) >= 2, f"stage actors all on one node: {nodes}"

            async def issue() -> None:
                pool = await connect_pool(stack.database_url, migrate=False)
                acked: dict[str, bill_pb2.IssuedBill] = {}
                async with stack.channel() as ch:
                    stub = issuance_pb2_grpc.IssuanceServiceStub(ch)
                    calls = [
                        stub.IssueBatch(
                            issuance_pb2.IssueBatchRequest(
                                bills=[
                                    input_to_pb(demo.demo_bill(i, prefix=f"SC{k}X"))
                                    for i in range(100)
                                ]
                            )
                        )
                        for k in range(6)
                    ]
                    for resp in await asyncio.gather(*calls):
                        for r in resp.results:
                            assert r.HasField("bill"), r.error
                            acked[r.bus_no] = r.bill
                await wait_until_settled(pool, timeout=60)
                assert (
                    await check_invariants(
                        pool, acked, await public_keys(stack), ring=stack.data_keys()
                    )
                    == 600
                )
                await pool.close()

            started = time.monotonic()
            asyncio.run(issue())
            assert time.monotonic() - started < 120
    finally:
        cluster.stop()
