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
from storage.paper import receive_paper
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
            his = His(stack.channel)
            started = time.monotonic()
            await his.issue(new_bills(150, "OUT"), deadline=time.monotonic() + 60)
            async with stack.channel() as ch:
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
            assert await check_invariants(pool, his.acked, keys, ring=stack.data_keys()) == 160
            async with stack.channel() as ch:
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
            clients = [His(stack.channel) for _ in range(4)]
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
            total = await check_invariants(pool, acked, keys, ring=stack.data_keys())
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
                clients = [His(stack.channel) for _ in range(4)]
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
                total = await check_invariants(pool, acked, keys, ring=stack.data_keys())
                assert total == len(acked)
                await pool.close()

            asyncio.run(scenario())
        finally:
            for proxy in (pg, fiscal, signer):
                proxy.stop()


def test_offline_paper_bills_are_back_issued_as_e_bills_when_the_platform_returns() -> None:
    with own_stack("offline") as stack:
        stack.start_engine()

        async def scenario() -> None:
            pool = await connect_pool(stack.database_url, migrate=False)
            keys = await public_keys(stack)
            stack.stop_process("fiscal")
            bills = new_bills(5, "OFF")
            # The sheets handed out offline are blanks the point received.
            await receive_paper(
                pool, unit_code=bills[0].unit_code, place_code=bills[0].place_code,
                paper_code="44061119", start_no=101, end_no=300, operator="收费员01",
            )  # fmt: skip
            leased = "SELECT sum(next_no - start_no) FROM segments"
            before = await pool.fetchval(leased)
            async with stack.channel() as ch:
                stub = issuance_pb2_grpc.IssuanceServiceStub(ch)

                def offline(
                    b: bill_pb2.BillRequest, no: int
                ) -> issuance_pb2.RecordOfflineBillRequest:
                    return issuance_pb2.RecordOfflineBillRequest(
                        bill=b, paper_code="44061119", paper_no=f"{no:010d}", operator="收费员01"
                    )

                for i, b in enumerate(bills):
                    resp = await stub.RecordOfflineBill(offline(b, 101 + i))
                    assert resp.offline_id > 0
                # No e-bill number is taken for a paper bill handed out offline.
                assert await pool.fetchval(leased) == before
                assert await pool.fetchval("SELECT count(*) FROM offline_bills") == 5

                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.RecordOfflineBill(offline(new_bills(1, "OFX")[0], 101))
                assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
                assert "paper" in (err.value.details() or "")
                bad = new_bills(1, "OFB")[0]
                bad.total_amount = "1.234"
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.RecordOfflineBill(offline(bad, 200))
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert (err.value.details() or "").startswith("bill.total_amount:")
                assert await pool.fetchval("SELECT count(*) FROM offline_bills") == 5

                stack.start_fiscal()
                deadline = time.monotonic() + 90
                waiting = "SELECT count(*) FROM offline_bills WHERE bill_id IS NULL"
                while await pool.fetchval(waiting) > 0:
                    assert time.monotonic() < deadline, "offline bills never back-issued"
                    await asyncio.sleep(0.5)
                await wait_until_settled(pool, timeout=60)

                acked = {}
                for i, b in enumerate(bills):
                    key = issuance_pb2.GetBillRequest(
                        by_bus=issuance_pb2.BusKey(unit_code=b.unit_code, bus_no=b.bus_no)
                    )
                    got = await stub.GetBill(key)
                    assert (got.paper_code, got.paper_no) == ("44061119", f"{101 + i:010d}")
                    status = await stub.GetBillStatus(key)
                    assert status.printed_to_paper
                    acked[b.bus_no] = got
                    # The HIS asking again for the same charge gets the back-issued bill.
                    again = await stub.IssueBill(issuance_pb2.IssueBillRequest(bill=b))
                    assert again.bill.bill_no == got.bill_no and again.bill.replayed
            assert await check_invariants(pool, acked, keys, ring=stack.data_keys()) == 5
            await pool.close()

        asyncio.run(scenario())


def test_signer_away_rpc_deadline_then_the_same_request_gets_the_bill() -> None:
    with own_stack("deadline") as stack:
        stack.start_engine(EBILL_RPC_TIMEOUT_S="2")

        async def scenario() -> None:
            pool = await connect_pool(stack.database_url, migrate=False)
            keys = await public_keys(stack)
            stack.stop_process("signer")
            (bill,) = new_bills(1, "DL")
            async with stack.channel() as ch:
                stub = issuance_pb2_grpc.IssuanceServiceStub(ch)
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.IssueBill(issuance_pb2.IssueBillRequest(bill=bill))
                assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert "same bus_no" in (err.value.details() or "")
                stack.start_signer()
                his = His(stack.channel)
                await his.issue([bill], deadline=time.monotonic() + 60)
            await wait_until_settled(pool, timeout=60)
            # One bill for the charge, numbered once, whichever path finished it.
            assert await check_invariants(pool, his.acked, keys, ring=stack.data_keys()) == 1
            await pool.close()

        asyncio.run(scenario())


def test_slow_fiscal_platform_bills_return_pending_then_are_countersigned() -> None:
    with own_stack("slow") as stack:
        # Slower than the inline wait (EBILL_FISCAL_TIMEOUT_S=2 in these stacks),
        # faster than the recovery loop's 30 s.
        stack.stop_process("fiscal")
        stack.start_fiscal(EBILL_FISCAL_LATENCY_MS="3000")
        stack.start_engine()

        async def scenario() -> None:
            pool = await connect_pool(stack.database_url, migrate=False)
            keys = await public_keys(stack)
            his = His(stack.channel)
            started = time.monotonic()
            await his.issue(new_bills(20, "SLOW"), deadline=time.monotonic() + 60)
            # The HIS is answered after the inline wait, not after the platform.
            assert time.monotonic() - started < 10
            assert all(b.status == PENDING and b.bill_no for b in his.acked.values())
            await wait_until_settled(pool, timeout=90)
            assert await check_invariants(pool, his.acked, keys, ring=stack.data_keys()) == 20
            await pool.close()

        asyncio.run(scenario())
