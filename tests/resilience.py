"""Helpers for resilience tests: a stack of their own, a HIS that retries until
each bill is acknowledged, and the invariants checked afterwards."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import grpc

from engine.sm2 import VerifyingKey
from ops.stack import Stack, StackConfig
from protos.ebill.v1 import bill_pb2, issuance_pb2, issuance_pb2_grpc
from protos.fiscal.v1 import fiscal_pb2, fiscal_pb2_grpc
from protos.hsm.v1 import signer_pb2, signer_pb2_grpc
from tests.gm_reference import gm_verify
from usecases import demo
from wire.bills import input_to_pb

FAST_RECOVERY = {
    "EBILL_OUTBOX_GRACE_S": "2",
    "EBILL_RECOVERY_INTERVAL_S": "0.5",
    "EBILL_FISCAL_TIMEOUT_S": "2",
    "EBILL_BATCH_LINGER_MS": "2",
}

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


async def public_keys(stack: Stack) -> tuple[bytes, bytes]:
    async with stack.channel("signer") as ch:
        unit = await signer_pb2_grpc.SignerStub(ch).ExportPublicKey(
            signer_pb2.ExportPublicKeyRequest(key_id="unit-sign")
        )
    async with stack.channel("fiscal") as ch:
        fiscal = await fiscal_pb2_grpc.FiscalPlatformStub(ch).GetPublicKey(
            fiscal_pb2.GetPublicKeyRequest()
        )
    return bytes(unit.public_key), bytes(fiscal.public_key)


async def check_invariants(
    pool: asyncpg.Pool,
    acked: dict[str, bill_pb2.IssuedBill],
    keys: tuple[bytes, bytes],
    gmssl_sample: int = 150,
) -> int:
    """Every acknowledged bill is archived as acknowledged, issued and signed; no
    number twice; every leased number is on a bill; granted = issued + available.
    Returns how many bills the database holds.

    Every signature is checked natively; a random sample of ``gmssl_sample`` bills
    is checked again with gmssl (10 ms a check: thousands would take minutes).
    """
    rows = {
        r["bus_no"]: r
        for r in await pool.fetch("SELECT * FROM bills WHERE bus_no = ANY($1::text[])", list(acked))
    }
    missing = set(acked) - set(rows)
    assert not missing, f"acknowledged bills missing: {sorted(missing)[:5]}"
    unit_key, fiscal_key = keys
    native_unit, native_fiscal = VerifyingKey(unit_key), VerifyingKey(fiscal_key)
    sample = set(random.Random(len(acked)).sample(sorted(acked), min(gmssl_sample, len(acked))))
    for bus_no, bill in acked.items():
        row = rows[bus_no]
        assert (row["bill_code"], row["bill_no"], row["check_code"]) == (
            bill.bill_code,
            bill.bill_no,
            bill.check_code,
        )
        assert row["status"] == "issued", (bus_no, row["status"])
        canonical = bytes(row["canonical"])
        unit_sig, fiscal_sig = bytes(row["unit_signature"]), bytes(row["fiscal_signature"])
        assert native_unit.verify(canonical, unit_sig)
        assert native_fiscal.verify(canonical + unit_sig, fiscal_sig)
        if bus_no in sample:
            assert gm_verify(unit_key, canonical, unit_sig)
            assert gm_verify(fiscal_key, canonical + unit_sig, fiscal_sig)

    dupes = await pool.fetch(
        "SELECT bill_code, bill_no FROM bills GROUP BY 1, 2 HAVING count(*) > 1"
    )
    assert not dupes, f"duplicate numbers: {dupes}"
    unfinished = await pool.fetchval("SELECT count(*) FROM bills WHERE status <> 'issued'")
    assert unfinished == 0
    for seg in await pool.fetch("SELECT * FROM segments"):
        numbers = sorted(
            int(r["bill_no"])
            for r in await pool.fetch("SELECT bill_no FROM bills WHERE segment_id = $1", seg["id"])
        )
        # Leased numbers are exactly the numbers on bills: none lost, none skipped.
        assert numbers == list(range(seg["start_no"], seg["next_no"])), seg["id"]
        granted = seg["end_no"] - seg["start_no"] + 1
        available = seg["end_no"] - seg["next_no"] + 1
        assert granted == len(numbers) + available
    return int(await pool.fetchval("SELECT count(*) FROM bills"))
