"""Resilience on real processes: fiscal outage, kill -9 of the engine under load,
connections cut mid-batch. After each: no acknowledged bill lost, no number
twice, every leased number on a bill, granted = issued + available."""

from __future__ import annotations

import asyncio
import random
import time

import grpc
import pytest

from ops.faultproxy import FaultProxy
from protos.ebill.v1 import bill_pb2, issuance_pb2, issuance_pb2_grpc
from storage.db import connect_pool
from tests.gm_reference import gm_verify
from tests.resilience import (
    His,
    check_invariants,
    new_bills,
    own_stack,
    public_keys,
    wait_until_settled,
)

pytestmark = pytest.mark.slow

PENDING = bill_pb2.BILL_STATUS_PENDING_COUNTERSIGN


def test_fiscal_outage_bills_issue_pending_and_are_countersigned_after() -> None:
    with own_stack("outage") as stack:
        stack.start_engine()

        async def scenario() -> None:
            pool = await connect_pool(stack.database_url, migrate=False)
            keys = await public_keys(stack)
            stack.stop_process("fiscal")
            his = His(stack.config.grpc_addr)
            started = time.monotonic()
            await his.issue(new_bills(150, "OUT"), deadline=time.monotonic() + 60)
            async with grpc.aio.insecure_channel(stack.config.grpc_addr) as ch:
                stub = issuance_pb2_grpc.IssuanceServiceStub(ch)
                for _ in range(10):
                    single = new_bills(1, "OUTS")[0]
                    bill = (await stub.IssueBill(issuance_pb2.IssueBillRequest(bill=single))).bill
                    his.acked[single.bus_no] = bill
                backlog = await stub.GetBacklog(issuance_pb2.GetBacklogRequest())
            elapsed = time.monotonic() - started
            # Issuance went on without the platform: code, number and check code at once,
            # unit-signed, and the breaker spares later calls the wait.
            assert all(b.status == PENDING for b in his.acked.values())
            assert all(len(b.check_code) == 6 and b.bill_no for b in his.acked.values())
            assert all(
                gm_verify(keys[0], b.canonical, b.unit_signature) for b in his.acked.values()
            )
            assert backlog.pending_countersign == 160 and backlog.fiscal_circuit_open
            assert elapsed < 30
            rows = await pool.fetchval(
                "SELECT count(*) FROM bills WHERE status = 'pending_countersign'"
            )
            assert rows == 160

            stack.start_fiscal()
            await wait_until_settled(pool, timeout=90)
            assert await check_invariants(pool, his.acked, keys) == 160
            async with grpc.aio.insecure_channel(stack.config.grpc_addr) as ch:
                stub = issuance_pb2_grpc.IssuanceServiceStub(ch)
                backlog = await stub.GetBacklog(issuance_pb2.GetBacklogRequest())
                assert (backlog.pending_countersign, backlog.reserved) == (0, 0)
                assert not backlog.fiscal_circuit_open
            await pool.close()

        asyncio.run(scenario())


def test_kill_9_of_the_engine_under_load_loses_and_duplicates_nothing() -> None:
    with own_stack("kill9") as stack:
        stack.start_engine()

        async def scenario() -> None:
            pool = await connect_pool(stack.database_url, migrate=False)
            keys = await public_keys(stack)
            clients = [His(stack.config.grpc_addr) for _ in range(4)]
            load = [
                asyncio.create_task(c.run(25, batch=40, tag=f"K{i}")) for i, c in enumerate(clients)
            ]
            rng = random.Random(9)
            for _ in range(3):
                await asyncio.sleep(rng.uniform(2.0, 4.0))
                await asyncio.to_thread(stack.kill_process, "engine")
                await asyncio.sleep(0.5)
                await asyncio.to_thread(stack.start_engine)
            await asyncio.gather(*load)
            await wait_until_settled(pool, timeout=120)
            acked = {k: v for c in clients for k, v in c.acked.items()}
            assert len(acked) > 200
            total = await check_invariants(pool, acked, keys)
            # Every bill in the database was asked for by a client.
            assert total == len(acked)
            assert sum(c.errors for c in clients) > 0, "the kills were not felt"
            await pool.close()

        asyncio.run(scenario())


def test_connections_cut_mid_batch_to_database_signer_and_fiscal() -> None:
    with own_stack("cuts") as stack:
        assert stack.pg is not None
        pg = FaultProxy(upstream_unix=stack.pg.socket_path).start()
        fiscal = FaultProxy(
            upstream_host="127.0.0.1", upstream_port=stack.config.fiscal_port
        ).start()
        signer = FaultProxy(
            upstream_host="127.0.0.1", upstream_port=stack.config.signer_port
        ).start()
        try:
            stack.start_engine(
                EBILL_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{pg.port}/ebill",
                EBILL_FISCAL_ADDR=fiscal.addr,
                EBILL_SIGNER_ADDR=signer.addr,
            )

            async def chaos(seconds: float) -> int:
                rng = random.Random(3)
                stop = time.monotonic() + seconds
                cut = 0
                while time.monotonic() < stop:
                    await asyncio.sleep(rng.uniform(0.2, 0.6))
                    cut += rng.choice([pg, fiscal, signer]).cut()
                return cut

            async def scenario() -> None:
                pool = await connect_pool(stack.database_url, migrate=False)
                keys = await public_keys(stack)
                clients = [His(stack.config.grpc_addr) for _ in range(4)]
                load = [
                    asyncio.create_task(c.run(15, batch=40, tag=f"C{i}"))
                    for i, c in enumerate(clients)
                ]
                cut = await chaos(15)
                await asyncio.gather(*load)
                await wait_until_settled(pool, timeout=120)
                acked = {k: v for c in clients for k, v in c.acked.items()}
                assert len(acked) > 200 and cut > 10
                assert pg.cuts > 3 and fiscal.cuts > 3 and signer.cuts > 3
                total = await check_invariants(pool, acked, keys)
                assert total == len(acked)
                await pool.close()

            asyncio.run(scenario())
        finally:
            for proxy in (pg, fiscal, signer):
                proxy.stop()
