"""The must-show benchmark of issue #14: single-bill issuance over the vendor
gateway (a Locust HTTP profile, bench/locust_gateway_users.py) against the gRPC
path (IssueBill) at the same offered load, in one run, rounds alternating:

    make bench-gateway          # python -m bench.locust_gateway

Both sides offer the same load: ``--users`` callers, each sending one bill
every 1/``--rate`` s (Locust's constant_throughput; the gRPC callers pace the
same way), so ``users x rate`` bills/s are offered. Set above what the engine
issues, each side's achieved bills/s is its throughput at that load. The HTTP
side runs in a Locust process (gevent); the gRPC side runs in this process
(grpc.aio, no gevent): the two never share a process. Prints each round and
the ratio gateway/gRPC of the totals (target >= 0.80). Run under the lock:

    flock /tmp/ebill-e2e.lock .venv/bin/python -m bench.locust_gateway
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
import uuid
from pathlib import Path
from typing import Any

# Nothing here imports locust: importing it patches this process for gevent
# (monkey.patch_all), and grpc under gevent hangs on its first channel.
__all__ = ["ENV_APP", "ENV_CA", "ENV_CERT", "ENV_KEY", "ENV_KEY_TEXT", "ENV_RATE", "main"]

# What the runner hands the Locust process (bench/locust_gateway_users.py).
ENV_APP = "EBILL_LOCUST_APP"  # the registered app's id
ENV_KEY_TEXT = "EBILL_LOCUST_APP_KEY"  # its vendor key text
ENV_RATE = "EBILL_LOCUST_RATE"  # bills/s each user offers
ENV_CA = "EBILL_LOCUST_CA"
ENV_CERT = "EBILL_LOCUST_CERT"
ENV_KEY = "EBILL_LOCUST_KEY"

LOCUSTFILE = Path(__file__).with_name("locust_gateway_users.py")


def _locust_round(
    stack: Any, users: int, rate: float, seconds: float, prefix: Path
) -> tuple[float, int, int]:
    """One Locust round: (bills/s issued, issued, failed) from Locust's stats."""
    tls = stack.tls()
    env = {
        **os.environ,
        ENV_APP: stack.demo.app_id,
        ENV_KEY_TEXT: stack.demo.app_secret.hex(),
        ENV_RATE: str(rate),
        ENV_CA: str(tls.ca) if tls else "",
        ENV_CERT: str(tls.cert) if tls else "",
        ENV_KEY: str(tls.key) if tls else "",
    }
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "-u", str(users), "-r", str(users), "-t", f"{seconds + 2:g}s", "--reset-stats",
        "--host", stack.http_url, "--csv", str(prefix), "--only-summary", "--stop-timeout", "30",
    ]  # fmt: skip
    subprocess.run(cmd, env=env, check=False, capture_output=True)
    with open(f"{prefix}_stats.csv", encoding="utf-8") as f:
        total = {r["Name"]: r for r in csv.DictReader(f)}["Aggregated"]
    count, failed = int(total["Request Count"]), int(total["Failure Count"])
    rps = float(total["Requests/s"])
    ok_rps = rps * (count - failed) / count if count else 0.0
    return ok_rps, count - failed, failed


async def _grpc_round(
    stack: Any, users: int, rate: float, seconds: float, run: str, seq: list[int]
) -> tuple[float, int, int]:
    """The same load on IssueBill: ``users`` callers, each paced at ``rate``/s."""
    from protos.ebill.v1 import issuance_pb2, issuance_pb2_grpc
    from usecases import demo
    from wire.bills import input_to_pb

    ok = failed = 0
    period = 1 / rate
    async with stack.channel() as ch:
        stub = issuance_pb2_grpc.IssuanceServiceStub(ch)
        stop = time.monotonic() + seconds

        async def caller() -> None:
            nonlocal ok, failed
            while time.monotonic() < stop:
                started = time.monotonic()
                seq[0] += 1
                bill = input_to_pb(demo.demo_bill(seq[0], prefix=f"LA{run}"))
                try:
                    await stub.IssueBill(issuance_pb2.IssueBillRequest(bill=bill), timeout=60)
                    ok += 1
                except Exception:
                    failed += 1
                # constant_throughput: wait out the rest of this caller's period.
                await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))

        begun = time.monotonic()
        await asyncio.gather(*(caller() for _ in range(users)))
        elapsed = time.monotonic() - begun
    return ok / elapsed, ok, failed


def main(argv: list[str] | None = None) -> None:
    from ops.stack import Stack, StackConfig

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=32, help="concurrent callers on each side")
    ap.add_argument("--rate", type=float, default=12.0, help="bills/s each caller offers")
    ap.add_argument("--seconds", type=float, default=20, help="per round")
    ap.add_argument("--rounds", type=int, default=2, help="alternating A/B pairs")
    args = ap.parse_args(argv)
    data = Path(tempfile.mkdtemp(prefix="ebill-bench-locust-gw-"))
    run = uuid.uuid4().hex[:6].upper()
    seq = [0]
    offered = args.users * args.rate
    with Stack(StackConfig(data_dir=data, log_dir=data / "logs")) as stack:
        stack.seed_demo(stock=200_000)
        stack.start_engine()
        # Warm both paths (connections, pipeline, caches); not counted.
        asyncio.run(_grpc_round(stack, args.users, args.rate, 4, run, seq))
        _locust_round(stack, args.users, args.rate, 4, data / "warm")
        totals = {"grpc": [0.0, 0, 0], "gateway": [0.0, 0, 0]}
        for r in range(args.rounds):
            for name in ("grpc", "gateway"):
                if name == "grpc":
                    rps, ok, failed = asyncio.run(
                        _grpc_round(stack, args.users, args.rate, args.seconds, run, seq)
                    )
                else:
                    rps, ok, failed = _locust_round(
                        stack, args.users, args.rate, args.seconds, data / f"round{r}"
                    )
                t = totals[name]
                t[0], t[1], t[2] = t[0] + rps, int(t[1]) + ok, int(t[2]) + failed
                print(
                    f"round {r + 1} {name:8s} {rps:7.1f} bills/s ({ok} issued, {failed} failed)",
                    flush=True,
                )
    a = totals["grpc"][0] / args.rounds
    b = totals["gateway"][0] / args.rounds
    print(
        f"offered {offered:g} bills/s ({args.users} callers x {args.rate:g}/s) on each side; "
        f"gRPC IssueBill {a:.1f} bills/s, gateway invoiceEBillOutpatient (Locust "
        f"FastHttpUser) {b:.1f} bills/s; ratio gateway/gRPC {b / a:.2f} (target >= 0.80; "
        f"{args.rounds} alternating rounds of {args.seconds:g}s, one run)"
    )


if __name__ == "__main__":
    main()
