"""Issuance benchmark: bills/s for batch and single-bill RPCs against the real stack.

Starts PostgreSQL (embedded), the sandboxes and the engine as separate processes
on this machine, seeds stock, then runs, one after another:

1. batch: N bills in IssueBatch calls of 200, several calls in flight; then
   single bills while batch saturates: the same batch run again with IssueBill
   offered beside it at --mixed-rate (interactive priority, issue #11 item 12);
2. single, closed loop: C concurrent clients each sending IssueBill back to back;
3. single, open loop: IssueBill offered at a fixed rate, latency percentiles;
4. Locust, headless (bench/locustfile.py): first as many single-bill users as the
   closed-loop run had clients, printed beside it (the two clients must agree),
   then single-bill and batch users together;
5. the naive per-request baseline (bench/baseline.py) against the same database
   and fiscal sandbox, and the ratio of the engine to it.

Before the stack starts it measures native SM2 (Tongsuo) sign and verify rates on
this machine and derives the crypto ceiling: the bills/s this machine could reach
if it did nothing but the SM2 operations every bill needs (SM2_SIGNS_PER_BILL,
SM2_VERIFIES_PER_BILL, the fiscal sandbox on the same machine). Every run is
printed as a share of that ceiling beside its ratio to the baseline.

A bill counts as issued only when its answer says ISSUED (countersigned by the
platform); answers still pending countersignature are counted apart, and a run
with any says so.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bench.baseline import run_baseline, setup_baseline
from bench.ceiling import CryptoCeiling, measure_sm2
from ops.stack import Stack, StackConfig
from protos.ebill.v1 import bill_pb2, issuance_pb2, issuance_pb2_grpc
from storage.db import connect_pool
from usecases import demo
from wire.bills import input_to_pb

__all__ = [
    "Result",
    "main",
]


@dataclass
class Result:
    """One run. ``bills`` counts only bills answered ISSUED (countersigned);
    ``pending`` the answers still waiting for the platform; ``errors`` the rest.
    ``pending`` is None when the client cannot tell (Locust counts answers)."""

    name: str
    bills: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    pcts: dict[int, float] | None = None
    pending: int | None = 0
    ceiling: float = field(default=0.0, repr=False)

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

    def share(self) -> str:
        """The rate as a share of the crypto ceiling."""
        return f"{self.rate / self.ceiling:6.1%} of ceiling" if self.ceiling else ""

    def line(self) -> str:
        pending = "     ?" if self.pending is None else f"{self.pending:>6}"
        return (
            f"{self.name:<28} {self.bills:>7} issued {pending} pending {self.errors:>5} errors "
            f"{self.seconds:7.2f}s {self.rate:8.0f} bills/s {self.share()}  "
            f"p50 {self.pct(50):6.1f} ms  p95 {self.pct(95):6.1f} ms  p99 {self.pct(99):6.1f} ms"
        )


_ISSUED = bill_pb2.BILL_STATUS_ISSUED


def requests(n: int, prefix: str) -> list[bill_pb2.BillRequest]:
    return [input_to_pb(demo.demo_bill(i, prefix=prefix)) for i in range(n)]


async def run_batch(
    stub: issuance_pb2_grpc.IssuanceServiceStub, n: int, inflight: int, prefix: str
) -> Result:
    reqs = requests(n, prefix)
    chunks = [reqs[i : i + 200] for i in range(0, n, 200)]
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
    return Result(
        f"batch x200, {inflight} in flight",
        n - errors - pending,
        errors,
        time.perf_counter() - started,
        lat,
        pending=pending,
    )


class Tally:
    """Answers of single-bill calls: issued (countersigned), pending, errors."""

    def __init__(self) -> None:
        self.issued = self.pending = self.errors = 0
        self.latencies_ms: list[float] = []

    def result(self, name: str, seconds: float) -> Result:
        return Result(
            name, self.issued, self.errors, seconds, self.latencies_ms, pending=self.pending
        )


async def timed_issue(
    stub: issuance_pb2_grpc.IssuanceServiceStub, r: bill_pb2.BillRequest, tally: Tally
) -> None:
    """One IssueBill, counted in ``tally``; the latency of every answer is kept
    (a pending answer kept its caller waiting too)."""
    t = time.perf_counter()
    try:
        resp = await stub.IssueBill(issuance_pb2.IssueBillRequest(bill=r), timeout=60)
    except grpc.aio.AioRpcError:
        tally.errors += 1
        return
    tally.latencies_ms.append((time.perf_counter() - t) * 1000)
    if resp.bill.status == _ISSUED:
        tally.issued += 1
    else:
        tally.pending += 1


async def run_single_closed(
    stub: issuance_pb2_grpc.IssuanceServiceStub, n: int, clients: int, prefix: str
) -> Result:
    reqs = requests(n, prefix)
    tally = Tally()
    it = iter(reqs)

    async def client() -> None:
        for r in it:
            await timed_issue(stub, r, tally)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return tally.result(f"single, {clients} clients", time.perf_counter() - started)


async def run_single_open(
    stub: issuance_pb2_grpc.IssuanceServiceStub, rate: float, seconds: float, prefix: str
) -> Result:
    n = int(rate * seconds)
    reqs = requests(n, prefix)
    tally = Tally()
    tasks = []
    started = time.perf_counter()
    for i, r in enumerate(reqs):
        # Fixed arrival schedule: latency is measured from when a request was due.
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(timed_issue(stub, r, tally)))
    await asyncio.gather(*tasks)
    return tally.result(f"single, open loop {rate:.0f}/s", time.perf_counter() - started)


async def run_mixed(
    stub: issuance_pb2_grpc.IssuanceServiceStub,
    n: int,
    inflight: int,
    rate: float,
    prefix: str,
) -> tuple[Result, Result]:
    """Single bills offered at ``rate`` (open loop, as patients arrive at windows)
    for as long as a batch run of ``n`` bills saturates the engine: the batch
    rate beside them, and their latency behind it."""
    batch_task = asyncio.create_task(run_batch(stub, n, inflight, f"{prefix}B"))
    tally = Tally()
    tasks = []
    started = time.perf_counter()
    i = 0
    while not batch_task.done():
        r = input_to_pb(demo.demo_bill(i, prefix=f"{prefix}I"))
        # Fixed arrival schedule: latency is measured from when a request was due.
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.wait([batch_task], timeout=delay)
            if batch_task.done():
                break
        tasks.append(asyncio.create_task(timed_issue(stub, r, tally)))
        i += 1
    batch = await batch_task
    seconds = time.perf_counter() - started
    await asyncio.gather(*tasks)
    batch.name = f"batch beside single {rate:.0f}/s"
    return batch, tally.result(f"single {rate:.0f}/s beside batch", seconds)


def priority_line(alone: Result, beside: Result, single: Result) -> str:
    """Issue #11 item 12: single-bill p99 < 100 ms while batch work saturates the
    machine, batch throughput at most 10% lower than alone."""
    drop = 1 - beside.rate / alone.rate if alone.rate else float("nan")
    p99 = single.pct(99)
    ok = "met" if p99 < 100 and drop <= 0.10 else "NOT met"
    return (
        f"priority: single p50 {single.pct(50):.1f} ms p99 {p99:.1f} ms beside batch; batch "
        f"{beside.rate:.0f} bills/s vs {alone.rate:.0f} alone ({drop:+.1%} lower) "
        f"[target p99 < 100 ms, <= 10% lower: {ok}]"
    )


def run_locust(
    addr: str, users: int, seconds: int, out_dir: Path, *, classes: Sequence[str], label: str
) -> list[Result]:
    """Locust headless in its own process (it needs gevent, which must not patch ours),
    with only the user ``classes`` of bench/locustfile.py; its log in ``out_dir``."""
    prefix = out_dir / f"locust-{label}"
    cmd = [
        sys.executable, "-m", "locust", "-f", str(Path(__file__).with_name("locustfile.py")),
        "--headless", "-u", str(users), "-r", str(users), "-t", f"{seconds}s",
        "--host", addr, "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING",
        "--logfile", f"{prefix}.log", *classes,
    ]  # fmt: skip
    # The locustfile finds the stack's TLS client certificate under EBILL_DATA_DIR.
    env = {**os.environ, "EBILL_DATA_DIR": str(out_dir)}
    subprocess.run(cmd, check=False, capture_output=True, timeout=seconds + 120, env=env)
    results: list[Result] = []
    if not Path(f"{prefix}_stats.csv").exists():  # Locust failed: its log says why
        return results
    with open(f"{prefix}_stats.csv", newline="") as f:
        for row in csv.DictReader(f):
            name = row["Name"]
            if name == "Aggregated":
                continue
            per_call = int(name.split("x")[-1]) if name.startswith("IssueBatch") else 1
            calls, failures = int(row["Request Count"]), int(row["Failure Count"])
            secs = calls / float(row["Requests/s"]) if float(row["Requests/s"]) else 0.0
            # Locust counts answers, not countersigned bills: pending unknown.
            r = Result(
                f"locust {label}: {name}",
                (calls - failures) * per_call,
                failures * per_call,
                secs,
                [],
                pending=None,
            )
            r.pcts = {p: float(row[f"{p}%"]) for p in (50, 95, 99)}
            results.append(r)
    return results


def agreement_line(own: Result, locust: Result) -> str:
    """Issue #11 item 15: Locust's single-bill figure beside the bench's own client
    at the same load (the same number of closed-loop clients)."""
    return (
        f"locust vs own client, same load: {locust.rate:.0f} vs {own.rate:.0f} bills/s "
        f"({locust.rate / own.rate if own.rate else float('nan'):.2f}x); "
        f"p50 {locust.pct(50):.0f} vs {own.pct(50):.0f} ms; p99 {locust.pct(99):.0f} vs "
        f"{own.pct(99):.0f} ms"
    )


async def bench(args: argparse.Namespace, stack: Stack, ceiling: float) -> _Results:
    results = _Results(ceiling)
    tag = f"B{int(time.time()):x}".upper()
    async with stack.channel() as ch:
        stub = issuance_pb2_grpc.IssuanceServiceStub(ch)
        # Warm-up: connections, actor start-up, catalog.
        await run_batch(stub, 400, 2, f"{tag}W")
        if args.batch:
            alone = await run_batch(stub, args.batch, args.inflight, f"{tag}A")
            results.append(alone)
            if args.mixed_rate:
                beside, single = await run_mixed(
                    stub, args.batch, args.inflight, args.mixed_rate, f"{tag}M"
                )
                results.append(beside)
                results.append(single)
                results.notes.append(priority_line(alone, beside, single))
                print(results.notes[-1], flush=True)
        closed = None
        if args.single:
            closed = await run_single_closed(stub, args.single, args.clients, f"{tag}S")
            results.append(closed)
        if args.rate:
            results.append(await run_single_open(stub, args.rate, args.seconds, f"{tag}O"))
    if args.locust_seconds:
        if closed is not None:
            # The same load as the closed-loop run: as many single-bill users as clients.
            same = await asyncio.to_thread(
                run_locust,
                stack.config.grpc_addr,
                args.clients,
                args.locust_seconds,
                stack.config.data_dir,
                classes=["SingleBillUser"],
                label=f"{args.clients} single users",
            )
            for r in same:
                results.append(r)
            results.notes.append(
                agreement_line(closed, same[0])
                if same
                else f"locust single users: no answers (see {stack.config.data_dir}/locust-*.log)"
            )
            print(results.notes[-1], flush=True)
        for r in await asyncio.to_thread(
            run_locust,
            stack.config.grpc_addr,
            args.locust_users,
            args.locust_seconds,
            stack.config.data_dir,
            classes=["SingleBillUser", "BatchUser"],
            label=f"{args.locust_users} users, single and batch",
        ):
            results.append(r)
    if args.baseline:
        pool = await connect_pool(stack.database_url, migrate=False)
        try:
            key = await setup_baseline(
                pool, stack.config.fiscal_addr, args.baseline * 2, tls=stack.tls("engine")
            )
            issued, secs, lat = await run_baseline(
                pool,
                stack.config.fiscal_addr,
                key,
                args.baseline,
                args.baseline_clients,
                f"{tag}N",
                tls=stack.tls("engine"),
                ring=stack.data_keys(),
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
                # bench/baseline.py counts a bill only when the platform countersigned
                # it; the rest are its errors, so nothing is pending there.
                pending=0,
            )
        )
    return results


class _Results(list[Result]):
    """Results that print themselves as they come, with the ceiling share."""

    def __init__(self, ceiling: float) -> None:
        super().__init__()
        self.ceiling = ceiling
        self.notes: list[str] = []  # comparisons between runs, for the summary

    def append(self, r: Result) -> None:
        r.ceiling = self.ceiling
        super().append(r)
        print(r.line(), flush=True)


def summary(results: list[Result], ceiling: CryptoCeiling, notes: Sequence[str] = ()) -> list[str]:
    """The closing lines: every run's rate as a share of the crypto ceiling beside its
    ratio to the baseline, the comparisons between runs, and a warning when any
    answer was still pending."""
    out = [
        "",
        "summary",
        f"  crypto ceiling {ceiling.bills_per_s:,.0f} bills/s; the fiscal sandbox's SM2 "
        f"work on one core would bound it at {ceiling.platform_serial_per_s:,.0f} bills/s",
    ]
    base = next((r for r in results if r.name.startswith("baseline")), None)
    for r in results:
        ratio = f"{r.rate / base.rate:6.1f}x the baseline" if base and base.rate else ""
        out.append(f"  {r.line()}  {ratio}")
    out.extend(f"  {note}" for note in notes)
    pending = sum(r.pending or 0 for r in results)
    if pending:
        runs = ", ".join(r.name for r in results if r.pending)
        out.append(
            f"  PENDING: {pending} answers were not countersigned ({runs}); they are not "
            "counted as issued"
        )
    unknown = [r.name for r in results if r.pending is None]
    if unknown:
        out.append(f"  pending not told apart (every answer counted) in: {', '.join(unknown)}")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--batch", type=int, default=20_000, help="bills in the batch run (0: skip)"
    )
    parser.add_argument("--inflight", type=int, default=4, help="batch calls in flight")
    parser.add_argument(
        "--mixed-rate",
        type=float,
        default=20,
        help="single bills/s offered while the batch run is repeated beside them (0: skip)",
    )
    parser.add_argument("--single", type=int, default=5_000, help="bills in the closed-loop run")
    parser.add_argument("--clients", type=int, default=100, help="concurrent single-bill clients")
    parser.add_argument("--rate", type=float, default=300, help="open-loop offered rate (0: skip)")
    parser.add_argument("--seconds", type=float, default=15, help="open-loop duration")
    parser.add_argument("--locust-seconds", type=int, default=20, help="each Locust run (0: skip)")
    parser.add_argument("--locust-users", type=int, default=100, help="Locust users")
    parser.add_argument(
        "--baseline", type=int, default=600, help="bills for the baseline (0: skip)"
    )
    parser.add_argument("--baseline-clients", type=int, default=8, help="baseline concurrency")
    parser.add_argument("--data-dir", default="", help="default: a fresh temporary directory")
    parser.add_argument(
        "--sm2-seconds", type=float, default=1.0, help="seconds per SM2 rate measurement"
    )
    args = parser.parse_args(argv)
    # First, on a quiet machine: what SM2 alone allows here.
    ceiling = measure_sm2(args.sm2_seconds)
    print(ceiling.line(), flush=True)
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
        results = asyncio.run(bench(args, stack, ceiling.bills_per_s))
    print("\n".join(summary(results, ceiling, results.notes)), flush=True)


if __name__ == "__main__":
    main()
