"""Lifecycle and stock benchmark against the real stack (`make bench-lifecycle`).

1. batch issuance with and without a low-stock warning rule armed on the issuing
   point (the rule is evaluated inside every reserve transaction);
2. red-flush: C concurrent clients, each red bill signed and countersigned;
3. conversion to paper: C concurrent clients;
4. the stock identity query, while nothing else runs.

Prints one line per run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import tempfile
import time
from pathlib import Path

import grpc

from bench.issuance import Result, requests, run_batch
from ops.stack import Stack, StackConfig
from protos.ebill.v1 import (
    bill_pb2,
    issuance_pb2,
    issuance_pb2_grpc,
    lifecycle_pb2,
    lifecycle_pb2_grpc,
    stock_pb2,
    stock_pb2_grpc,
)
from usecases import demo

__all__ = ["main"]

PLACE = "001"


def operator(place: str = PLACE) -> lifecycle_pb2.Operator:
    return lifecycle_pb2.Operator(unit_code=demo.UNIT_CODE, place_code=place, operator="bench")


def key(b: bill_pb2.IssuedBill) -> issuance_pb2.GetBillRequest:
    return issuance_pb2.GetBillRequest(
        by_number=issuance_pb2.BillNumberKey(bill_code=b.bill_code, bill_no=b.bill_no)
    )


async def issue(
    stub: issuance_pb2_grpc.IssuanceServiceStub, n: int, prefix: str
) -> list[bill_pb2.IssuedBill]:
    out: list[bill_pb2.IssuedBill] = []
    reqs = requests(n, prefix)
    for i in range(0, n, 200):
        resp = await stub.IssueBatch(issuance_pb2.IssueBatchRequest(bills=reqs[i : i + 200]))
        out += [r.bill for r in resp.results if r.HasField("bill")]
    return out


async def concurrently(name: str, calls: list[object], clients: int) -> Result:
    """Run the calls (coroutine factories) with ``clients`` at a time, timing each."""
    latencies: list[float] = []
    errors = 0
    it = iter(calls)

    async def client() -> None:
        nonlocal errors
        for make in it:
            t = time.perf_counter()
            try:
                await make()  # type: ignore[operator]
            except grpc.aio.AioRpcError:
                errors += 1
            latencies.append((time.perf_counter() - t) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return Result(name, len(latencies) - errors, errors, time.perf_counter() - started, latencies)


async def bench(args: argparse.Namespace, stack: Stack) -> list[Result]:
    results = []
    async with stack.channel() as ch:
        issuance = issuance_pb2_grpc.IssuanceServiceStub(ch)
        lifecycle = lifecycle_pb2_grpc.LifecycleServiceStub(ch)
        stock = stock_pb2_grpc.StockServiceStub(ch)
        await issue(issuance, 400, "WARM")

        plain = await run_batch(issuance, args.batch, 4, "PLAIN")
        plain.name = "batch, no warning rule"
        results.append(plain)
        print(plain.line(), flush=True)
        await stock.SetAlertRule(
            stock_pb2.AlertRuleRequest(
                operator=lifecycle_pb2.Operator(unit_code=demo.UNIT_CODE, operator="bench"),
                place_code=PLACE, bill_code="44060119", threshold=10,
            )
        )  # fmt: skip
        ruled = await run_batch(issuance, args.batch, 4, "RULED")
        ruled.name = "batch, warning rule armed"
        results.append(ruled)
        print(ruled.line(), flush=True)

        bills = await issue(issuance, args.n * 2, "LC")
        to_flush, to_print = bills[: args.n], bills[args.n :]
        seq = itertools.count()
        red = await concurrently(
            "red-flush",
            [
                lambda b=b: lifecycle.RedFlush(
                    lifecycle_pb2.RedFlushRequest(
                        operator=operator(),
                        original=key(b),
                        bus_no=f"RB{next(seq):08d}",
                        reason="bench",
                    )
                )
                for b in to_flush
            ],
            args.clients,
        )
        results.append(red)
        print(red.line(), flush=True)

        await lifecycle.ReceivePaper(
            lifecycle_pb2.ReceivePaperRequest(
                operator=operator(), paper_code="44990119", start_no="0000000001",
                end_no=f"{args.n + 10:010d}",
            )
        )  # fmt: skip
        paper = await concurrently(
            "convert to paper",
            [
                lambda b=b: lifecycle.ConvertToPaper(
                    lifecycle_pb2.PaperBillRequest(operator=operator(), bill=key(b))
                )
                for b in to_print
            ],
            args.clients,
        )
        results.append(paper)
        print(paper.line(), flush=True)

        ident = await concurrently(
            "stock identity query",
            [
                lambda: stock.GetStockIdentity(
                    stock_pb2.OperatorOnly(
                        operator=lifecycle_pb2.Operator(unit_code=demo.UNIT_CODE, operator="b")
                    )
                )
                for _ in range(50)
            ],
            1,
        )
        results.append(ident)
        print(ident.line(), flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=10_000, help="bills per batch run")
    parser.add_argument("--n", type=int, default=1_000, help="red-flushes and conversions")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients")
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
        stack.start_engine()
        results = asyncio.run(bench(args, stack))
    print("\nsummary")
    for r in results:
        print(" ", r.line().replace(" bills ", " ops   ").replace("bills/s", "ops/s"))
    plain, ruled = results[0], results[1]
    if plain.rate:
        print(f"  warning rule armed: {ruled.rate / plain.rate:.2f}x the batch rate without")


if __name__ == "__main__":
    main()
