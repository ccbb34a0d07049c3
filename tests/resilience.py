"""Helpers for resilience tests: a stack of their own, a HIS that retries until
each bill is acknowledged, and the invariants checked afterwards."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import grpc

# Re-exported: the resilience tests import them from here.
from bench.chaos import FAST_RECOVERY as FAST_RECOVERY
from bench.chaos import public_keys as public_keys
from bench.chaos_check import Acked, Ledger, check
from engine.sealing import KeyRing
from ops.stack import Stack, StackConfig
from protos.ebill.v1 import bill_pb2, issuance_pb2, issuance_pb2_grpc
from usecases import demo
from wire.bills import input_to_pb

_batches = itertools.count(1)


@contextmanager
def own_stack(name: str) -> Iterator[Stack]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"ebill-{name}-"))
    config = StackConfig(data_dir=data_dir, log_dir=data_dir / "logs", extra_env=FAST_RECOVERY)
    with Stack(config) as stack:
        stack.seed_demo(stock=20_000)
        yield stack
    if os.environ.get("EBILL_KEEP_TEST_DATA") != "1":
        shutil.rmtree(data_dir, ignore_errors=True)


def new_bills(n: int, tag: str) -> list[bill_pb2.BillRequest]:
    prefix = f"{tag}{next(_batches):05d}X"
    return [input_to_pb(demo.demo_bill(i, prefix=prefix)) for i in range(n)]


class His:
    """A HIS that resends the same bills (same bus_no) until each is acknowledged,
    the way an integration is told to after a timeout or an error."""

    def __init__(self, connect: Callable[[], grpc.aio.Channel]) -> None:
        # Stack.channel: TLS with the demo client's certificate.
        self.connect = connect
        self.acked: dict[str, bill_pb2.IssuedBill] = {}
        self.errors = 0

    async def issue(self, bills: list[bill_pb2.BillRequest], deadline: float) -> None:
        todo = list(bills)
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(todo)} bills never acknowledged")
            # A fresh channel per attempt: no reconnect backoff carried over a restart.
            async with self.connect() as ch:
                stub = issuance_pb2_grpc.IssuanceServiceStub(ch)
                try:
                    resp = await stub.IssueBatch(
                        issuance_pb2.IssueBatchRequest(bills=todo), timeout=20
                    )
                except grpc.aio.AioRpcError:
                    self.errors += 1
                    await asyncio.sleep(0.3)
                    continue
            for r in resp.results:
                if r.HasField("bill"):
                    prior = self.acked.setdefault(r.bus_no, r.bill)
                    # Once acknowledged, a bus_no never changes its number.
                    assert (prior.bill_code, prior.bill_no) == (r.bill.bill_code, r.bill.bill_no)
                else:
                    assert r.error.code in ("UNAVAILABLE", "INTERNAL"), r.error
                    self.errors += 1
            todo = [b for b in todo if b.bus_no not in self.acked]
            if todo:
                await asyncio.sleep(0.2)

    async def run(self, seconds: float, *, batch: int, tag: str) -> None:
        """Keep sending new batches for ``seconds``; each is retried to the end."""
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            await self.issue(new_bills(batch, tag), deadline=time.monotonic() + 180)


async def wait_until_settled(pool: asyncpg.Pool, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = await pool.fetchval("SELECT count(*) FROM outbox")
        if left == 0:
            return
        await asyncio.sleep(0.5)
    rows = await pool.fetch(
        "SELECT b.status, o.attempts, o.last_error FROM outbox o"
        " JOIN bills b ON b.id = o.bill_id LIMIT 5"
    )
    raise AssertionError(f"outbox not drained: {[dict(r) for r in rows]}")


async def check_invariants(
    pool: asyncpg.Pool,
    acked: dict[str, bill_pb2.IssuedBill],
    keys: tuple[bytes, bytes],
    gmssl_sample: int = 150,
    *,
    ring: KeyRing,
) -> int:
    """Every acknowledged bill is archived as acknowledged, issued and signed; no
    number twice; every leased number is on a bill; granted = issued + available;
    nothing unfinished (the chaos checker, bench/chaos_check.py, on a ledger of
    issued bills). Returns how many bills the database holds.

    Every signature is checked natively; a random sample of ``gmssl_sample`` bills
    is checked again with gmssl (10 ms a check: thousands would take minutes).
    """
    ledger = Ledger()
    for bus_no, bill in acked.items():
        ledger.ack_issued(Acked(bus_no, bill.bill_code, bill.bill_no, bill.check_code))
    report = await check(
        pool,
        ledger,
        keys,
        ring=ring,
        unit_code=demo.UNIT_CODE,
        gmssl_sample=gmssl_sample,
        seed=len(acked),
    )
    assert report.ok, "\n".join(report.lines())
    statuses = {
        r["bus_no"]: r["status"]
        for r in await pool.fetch(
            "SELECT bus_no, status FROM bills WHERE bus_no = ANY($1::text[])", list(acked)
        )
    }
    not_issued = {k: v for k, v in statuses.items() if v != "issued"}
    assert not not_issued, f"acknowledged bills not issued: {list(not_issued.items())[:5]}"
    return int(await pool.fetchval("SELECT count(*) FROM bills"))
