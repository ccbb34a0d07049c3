"""Does delivery slow issuance? (`make bench-delivery`, issue #15)

One stack (PostgreSQL, signer, fiscal platform, the SMS/WeChat/Alipay sandboxes,
the engine with its delivery worker) and an SMTP server in this process. Batch
issuance runs alternate between delivery off and on (the demo unit's switch,
read by the archive statement, so nothing restarts): off, on, on, off, off, on...
Every bill has a phone (SMS) and every other one an e-mail. Before each run the
delivery backlog is drained, so an "off" run never pays for the "on" run before
it; an "on" run pays for enqueueing its bills and for the worker sending them
beside issuance, on the same two cores. Prints each run, the ratio of issuance
rates on/off (target >= 0.95) and how long the last messages took to go out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
from aiosmtpd.controller import Controller

from bench.issuance import Result, requests
from ops.stack import Stack, StackConfig, free_port
from protos.ebill.v1 import bill_pb2, issuance_pb2, issuance_pb2_grpc
from storage.db import connect_pool
from storage.delivery_prefs import set_unit_enabled
from usecases import demo

__all__ = ["main"]

_ISSUED = bill_pb2.BILL_STATUS_ISSUED


class _Sink:
    """An SMTP server that accepts and counts."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 OK"


def _bills(n: int, prefix: str) -> list[bill_pb2.BillRequest]:
    reqs = requests(n, prefix)
    for i, r in enumerate(reqs):
        if i % 2 == 0:
            r.payer.email = f"patient{i}@example.com"
    return reqs


async def _issue(
    stub: issuance_pb2_grpc.IssuanceServiceStub, n: int, inflight: int, prefix: str, name: str
) -> Result:
    chunks = [c for c in (_bills(n, prefix)[i : i + 200] for i in range(0, n, 200))]
    sem = asyncio.Semaphore(inflight)
    lat: list[float] = []
    errors = pending = 0

    async def one(chunk: list[bill_pb2.BillRequest]) -> None:
        nonlocal errors, pending
        async with sem:
            t = time.perf_counter()
            resp = await stub.IssueBatch(issuance_pb2.IssueBatchRequest(bills=chunk), timeout=300)
            lat.append((time.perf_counter() - t) * 1000)
        errors += sum(1 for r in resp.results if r.HasField("error"))
        pending += sum(1 for r in resp.results if r.HasField("bill") and r.bill.status != _ISSUED)

    started = time.perf_counter()
    await asyncio.gather(*(one(c) for c in chunks))
    seconds = time.perf_counter() - started
    return Result(name, n - errors - pending, errors, seconds, lat, pending=pending)


async def _backlog(pool: asyncpg.Pool) -> int:
    """Delivery work left, and transparency-log entries not yet sequenced (a run
    must not pay for the one before it, whatever its mode)."""
    return int(
        await pool.fetchval(
            "SELECT (SELECT count(*) FROM delivery_inbox)"
            " + (SELECT count(*) FROM delivery_jobs WHERE status = 'pending')"
            " + (SELECT count(*) FROM log_entries WHERE leaf_index IS NULL)"
        )
    )


async def _drain(pool: asyncpg.Pool, timeout_s: float = 600) -> float:
    started = time.perf_counter()
    while await _backlog(pool):
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError("delivery backlog not drained")
        await asyncio.sleep(0.2)
    return time.perf_counter() - started


async def bench(args: argparse.Namespace, stack: Stack) -> tuple[list[Result], list[float]]:
    pool = await connect_pool(stack.database_url, size=2, migrate=False)
    results: list[Result] = []
    drains: list[float] = []
    try:
        async with stack.channel() as ch:
            stub = issuance_pb2_grpc.IssuanceServiceStub(ch)
            await _issue(stub, 1000, 4, "WARM", "warm-up")
            await _drain(pool)
            order = ["off", "on", "on", "off"] * ((args.rounds + 1) // 2)
            for i, mode in enumerate(order[: args.rounds * 2]):
                await set_unit_enabled(pool, demo.UNIT_CODE, mode == "on", "bench")
                await _drain(pool)
                r = await _issue(stub, args.batch, args.inflight, f"D{i:02d}",
                                 f"batch, delivery {mode}")  # fmt: skip
                results.append(r)
                waited = await _drain(pool)
                if mode == "on":
                    drains.append(waited)
                print(r.line(), f"(backlog drained {waited:.1f}s after)", flush=True)
            sent = await pool.fetchval("SELECT count(*) FROM delivery_jobs WHERE status = 'sent'")
            failed = await pool.fetchval(
                "SELECT count(*) FROM delivery_jobs WHERE status <> 'sent'"
            )
            print(f"messages sent {sent}, not sent {failed}", flush=True)
    finally:
        await pool.close()
    return results, drains


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=5_000, help="bills per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per mode (alternating)")
    parser.add_argument("--inflight", type=int, default=4, help="IssueBatch calls in flight")
    parser.add_argument("--data-dir", default="", help="default: a fresh temporary directory")
    args = parser.parse_args(argv)
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="ebill-bench-delivery-"))
    sink = _Sink()
    smtp_port = free_port()
    smtp = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    config = StackConfig(
        data_dir=data_dir,
        database_url=os.environ.get("EBILL_DATABASE_URL", ""),
        log_dir=data_dir / "logs",
        extra_env={"EBILL_SMTP_HOST": "127.0.0.1", "EBILL_SMTP_PORT": str(smtp_port)},
    )
    print(f"bench data in {data_dir}; cores: {os.cpu_count()}", flush=True)
    try:
        with Stack(config) as stack:
            stack.seed_demo(stock=args.batch * (args.rounds * 2 + 1) + 10_000)
            stack.start_engine()
            results, drains = asyncio.run(bench(args, stack))
    finally:
        smtp.stop()
    on = [r for r in results if r.name.endswith(" on")]
    off = [r for r in results if r.name.endswith(" off")]

    def rate(rs: list[Result]) -> float:
        return sum(r.bills for r in rs) / sum(r.seconds for r in rs)

    print("\nsummary")
    for r in results:
        print(" ", r.line())
    print(f"  e-mails received by the SMTP server: {sink.count}")
    print(f"  issuance with delivery on / off: {rate(on) / rate(off):.3f} "
          f"({rate(on):.0f} / {rate(off):.0f} bills/s; target >= 0.95)")  # fmt: skip
    if drains:
        print(f"  last message out after an 'on' run: {max(drains):.1f}s at most")


if __name__ == "__main__":
    main()
