"""Issuance benchmark: bills/s for batch and single-bill RPCs against the real stack.

Starts PostgreSQL (embedded), the sandboxes and the engine as separate processes
on this machine, seeds stock, then runs, one after another:

1. batch: N bills in IssueBatch calls of 200, several calls in flight;
2. single, closed loop: C concurrent clients each sending IssueBill back to back;
3. single, open loop: IssueBill offered at a fixed rate, latency percentiles;
4. Locust, headless: single-bill and batch gRPC users (bench/locustfile.py);
5. the naive per-request baseline (bench/baseline.py) against the same database
   and fiscal sandbox, and the ratio of the engine to it.

Durable commits (fsync on) throughout. Prints one line per run and a summary.
`python -m bench.issuance --help` for the knobs.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench.baseline import run_baseline, setup_baseline
from ops.stack import Stack, StackConfig
from protos.ebill.v1 import bill_pb2, issuance_pb2, issuance_pb2_grpc
from storage.db import connect_pool
from usecases import demo
from wire.bills import input_to_pb

__all__ = ["Result", "main"]


@dataclass
class Result:
    name: str
    bills: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    pcts: dict[int, float] | None = None

    @property
    def rate(self) -> float:
        return self.bills / self.seconds if self.seconds else 0.0

    def pct(self, p: int) -> float:
        if self.pcts is not None:
            return self.pcts[p]
        if not self.latencies_ms:
            return float("nan")
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]

    def line(self) -> str:
        return (
            f"{self.name:<28} {self.bills:>7} bills {self.errors:>5} errors {self.seconds:7.2f}s "
            f"{self.rate:8.0f} bills/s  p50 {self.pct(50):6.1f} ms  p95 {self.pct(95):6.1f} ms  "
            f"p99 {self.pct(99):6.1f} ms"
        )


def requests(n: int, prefix: str) -> list[bill_pb2.BillRequest]:
    return [input_to_pb(demo.demo_bill(i, prefix=prefix)) for i in range(n)]


async def run_batch(
    stub: issuance_pb2_grpc.IssuanceServiceStub, n: int, inflight: int, prefix: str
) -> Result:
    reqs = requests(n, prefix)
    chunks = [reqs[i : i + 200] for i in range(0, n, 200)]
    sem = asyncio.Semaphore(inflight)
    lat: list[float] = []
    errors = 0

    async def one(chunk: list[bill_pb2.BillRequest]) -> None:
        nonlocal errors
        async with sem:
            t = time.perf_counter()
            resp = await stub.IssueBatch(issuance_pb2.IssueBatchRequest(bills=chunk), timeout=300)
            lat.append((time.perf_counter() - t) * 1000)
        errors += sum(1 for r in resp.results if r.HasField("error"))

    started = time.perf_counter()
    await asyncio.gather(*(one(c) for c in chunks))
    return Result(
        f"batch x200, {inflight} in flight", n - errors, errors, time.perf_counter() - started, lat
    )


async def timed_issue(
    stub: issuance_pb2_grpc.IssuanceServiceStub, r: bill_pb2.BillRequest, lat: list[float]
) -> bool:
    """One IssueBill; its latency goes to ``lat`` on success. False on an RPC error."""
    t = time.perf_counter()
    try:
        await stub.IssueBill(issuance_pb2.IssueBillRequest(bill=r), timeout=60)
    except grpc.aio.AioRpcError:
        return False
    lat.append((time.perf_counter() - t) * 1000)
    return True


async def run_single_closed(
    stub: issuance_pb2_grpc.IssuanceServiceStub, n: int, clients: int, prefix: str
) -> Result:
    reqs = requests(n, prefix)
    lat: list[float] = []
    errors = 0
    it = iter(reqs)

    async def client() -> None:
        nonlocal errors
        for r in it:
            errors += not await timed_issue(stub, r, lat)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return Result(
        f"single, {clients} clients", n - errors, errors, time.perf_counter() - started, lat
    )


async def run_single_open(
    stub: issuance_pb2_grpc.IssuanceServiceStub, rate: float, seconds: float, prefix: str
) -> Result:
    n = int(rate * seconds)
    reqs = requests(n, prefix)
    lat: list[float] = []
    errors = 0

    async def one(r: bill_pb2.BillRequest) -> None:
        nonlocal errors
        errors += not await timed_issue(stub, r, lat)

    tasks = []
    started = time.perf_counter()
    for i, r in enumerate(reqs):
        # Fixed arrival schedule: latency is measured from when a request was due.
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(r)))
    await asyncio.gather(*tasks)
    return Result(
        f"single, open loop {rate:.0f}/s", n - errors, errors, time.perf_counter() - started, lat
    )


def run_locust(addr: str, users: int, seconds: int, out_dir: Path) -> list[Result]:
    """Locust headless in its own process (it needs gevent, which must not patch ours)."""
    prefix = out_dir / "locust"
    cmd = [
        sys.executable, "-m", "locust", "-f", str(Path(__file__).with_name("locustfile.py")),
        "--headless", "-u", str(users), "-r", str(users), "-t", f"{seconds}s",
        "--host", addr, "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING",
    ]  # fmt: skip
    subprocess.run(cmd, check=False, capture_output=True, timeout=seconds + 120)
    results = []
    with open(f"{prefix}_stats.csv", newline="") as f:
        for row in csv.DictReader(f):
            name = row["Name"]
            if name == "Aggregated":
                continue
            per_call = int(name.split("x")[-1]) if name.startswith("IssueBatch") else 1
            calls, failures = int(row["Request Count"]), int(row["Failure Count"])
            secs = calls / float(row["Requests/s"]) if float(row["Requests/s"]) else 0.0
            r = Result(
                f"locust {name}", (calls - failures) * per_call, failures * per_call, secs, []
            )
            r.pcts = {p: float(row[f"{p}%"]) for p in (50, 95, 99)}
            results.append(r)
    return results


async def bench(args: argparse.Namespace, stack: Stack) -> list[Result]:
    results: list[Result] = []
    tag = f"B{int(time.time()):x}".upper()
    async with grpc.aio.insecure_channel(stack.config.grpc_addr) as ch:
        stub = issuance_pb2_grpc.IssuanceServiceStub(ch)
        # Warm-up: connections, actor start-up, catalog.
        await run_batch(stub, 400, 2, f"{tag}W")
        if args.batch:
            results.append(await run_batch(stub, args.batch, args.inflight, f"{tag}A"))
            print(results[-1].line(), flush=True)
        if args.single:
            results.append(await run_single_closed(stub, args.single, args.clients, f"{tag}S"))
            print(results[-1].line(), flush=True)
        if args.rate:
            results.append(await run_single_open(stub, args.rate, args.seconds, f"{tag}O"))
            print(results[-1].line(), flush=True)
    if args.locust_seconds:
        for r in await asyncio.to_thread(
            run_locust,
            stack.config.grpc_addr,
            args.locust_users,
            args.locust_seconds,
            stack.config.data_dir,
        ):
            results.append(r)
            print(r.line(), flush=True)
    if args.baseline:
        pool = await connect_pool(stack.database_url, migrate=False)
        try:
            key = await setup_baseline(pool, stack.config.fiscal_addr, args.baseline * 2)
            issued, secs, lat = await run_baseline(
                pool,
                stack.config.fiscal_addr,
                key,
                args.baseline,
                args.baseline_clients,
                f"{tag}N",
            )
        finally:
            await pool.close()
        results.append(
            Result(
                f"baseline, {args.baseline_clients} clients",
                issued,
                args.baseline - issued,
                secs,
                lat,
            )
        )
        print(results[-1].line(), flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--batch", type=int, default=20_000, help="bills in the batch run (0: skip)"
    )
    parser.add_argument("--inflight", type=int, default=4, help="batch calls in flight")
    parser.add_argument("--single", type=int, default=5_000, help="bills in the closed-loop run")
    parser.add_argument("--clients", type=int, default=100, help="concurrent single-bill clients")
    parser.add_argument("--rate", type=float, default=300, help="open-loop offered rate (0: skip)")
    parser.add_argument("--seconds", type=float, default=15, help="open-loop duration")
    parser.add_argument("--locust-seconds", type=int, default=30, help="Locust run (0: skip)")
    parser.add_argument("--locust-users", type=int, default=100, help="Locust users")
    parser.add_argument(
        "--baseline", type=int, default=600, help="bills for the baseline (0: skip)"
    )
    parser.add_argument("--baseline-clients", type=int, default=8, help="baseline concurrency")
    parser.add_argument("--data-dir", default="", help="default: a fresh temporary directory")
    args = parser.parse_args(argv)
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="ebill-bench-"))
    config = StackConfig(
        data_dir=data_dir,
        database_url=os.environ.get("EBILL_DATABASE_URL", ""),
        log_dir=data_dir / "logs",
    )
    print(f"bench data in {data_dir}; cores: {os.cpu_count()}", flush=True)
    with Stack(config) as stack:
        stack.seed_demo(stock=200_000)

        async def durability() -> None:
            pool = await connect_pool(stack.database_url, migrate=False)
            try:
                fsync = await pool.fetchval("SHOW fsync")
                commit = await pool.fetchval("SHOW synchronous_commit")
                print(f"PostgreSQL fsync={fsync} synchronous_commit={commit}", flush=True)
            finally:
                await pool.close()

        asyncio.run(durability())
        stack.start_engine()
        results = asyncio.run(bench(args, stack))
    print("\nsummary")
    for r in results:
        print(" ", r.line())
    base = next((r for r in results if r.name.startswith("baseline")), None)
    if base is not None and base.rate:
        for r in results:
            if r is not base:
                print(f"  {r.name:<28} {r.rate / base.rate:6.1f}x the baseline")


if __name__ == "__main__":
    main()
