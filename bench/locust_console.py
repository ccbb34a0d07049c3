"""The finance console under many signed-in users (issue #16: 1,000 online users
browsing, searching and opening reports, p99 under 1 s).

    python -m bench.locust_console --users 100,300,1000 --seconds 60

Starts a stack of its own, issues ``--bills`` demo bills at the demo points,
then runs Locust (HTTP, headless, a separate process) against the console once
per user count. Each user signs in once (a window cashier or the auditor, by
password: the demo's managers need TOTP; sign-ins spread over up to a minute),
then, with ``--think`` seconds (uniform 0.5x..1.5x, a clerk's 5..15 s by
default) between requests: opens the dashboard, searches the point's bills
(listing, today, by payer ID card, by serial), opens a bill, and (the auditor)
opens the day's issuance report and the peak trend. Prints requests/s, p50, p99
and failures per request type and over all, for the measured seconds after the
ramp-up, from Locust's own statistics. Locust and the engine share this machine's cores, so
the figures are a floor of what the engine alone would do.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["ENV_BILLS", "ENV_CA", "ENV_STAFF", "ENV_THINK", "USERS", "main"]

# What the runner hands the Locust process (bench/locust_console_users.py).
ENV_STAFF = "EBILL_LOCUST_STAFF"  # JSON {username: password}
ENV_CA = "EBILL_LOCUST_CA"
ENV_THINK = "EBILL_LOCUST_THINK"
# A file of JSON [[place, code, no, id_card, bus_no], ...]: 2,000 bills are
# more than one environment string may hold (128 KiB on Linux).
ENV_BILLS = "EBILL_LOCUST_BILLS"
# Staff signing in by password alone (the demo's managers need TOTP).
USERS = ("cashier-001", "cashier-002", "auditor")

LOCUSTFILE = Path(__file__).with_name("locust_console_users.py")

# -- the runner ----------------------------------------------------------------


async def _issue(stack: Any, count: int) -> list[list[str]]:
    from protos.ebill.v1 import issuance_pb2, issuance_pb2_grpc
    from usecases import demo
    from wire.bills import input_to_pb

    out: list[list[str]] = []
    tag = f"LC{os.getpid():x}".upper()
    async with stack.channel() as ch:
        stub = issuance_pb2_grpc.IssuanceServiceStub(ch)
        for start in range(0, count, 200):  # IssueBatch takes at most 200
            given = [
                demo.demo_bill(n, prefix=tag, place_code=("001", "002")[n % 2])
                for n in range(start, min(count, start + 200))
            ]
            resp = await stub.IssueBatch(
                issuance_pb2.IssueBatchRequest(bills=[input_to_pb(b) for b in given]),
                timeout=300,
            )
            for b, r in zip(given, resp.results, strict=True):
                if r.HasField("bill"):
                    out.append(
                        [b.place_code, r.bill.bill_code, r.bill.bill_no, b.payer.id_card_no,
                         b.bus_no]
                    )  # fmt: skip
    return out


def _stats(prefix: Path) -> dict[str, dict[str, float]]:
    """Locust's figures per request name, and "Aggregated" over all of them."""
    with open(f"{prefix}_stats.csv", encoding="utf-8") as f:
        return {
            r["Name"]: {
                "requests": float(r["Request Count"]),
                "failures": float(r["Failure Count"]),
                "rps": float(r["Requests/s"]),
                "p50": float(r["50%"]),
                "p99": float(r["99%"]),
                "max": float(r["Max Response Time"]),
            }
            for r in csv.DictReader(f)
        }


def main(argv: list[str] | None = None) -> None:
    from ops.stack import Stack, StackConfig

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", default="100,300,1000", help="user counts, one run each")
    parser.add_argument("--seconds", type=int, default=60, help="per user count, after ramp-up")
    # A finance clerk reads a page, checks a slip or answers a patient between
    # clicks: 5 to 15 s (mean 10), not a crawler's 0..6 s. The think time sets
    # the load: 1,000 such users make about 100 requests a second.
    parser.add_argument("--think", type=float, default=10.0, help="mean seconds between requests")
    parser.add_argument("--bills", type=int, default=5000, help="bills issued before")
    args = parser.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="ebill-bench-console-"))
    config = StackConfig(
        data_dir=data_dir,
        database_url=os.environ.get("EBILL_DATABASE_URL", ""),
        log_dir=data_dir / "logs",
    )
    results: list[tuple[int, dict[str, dict[str, float]]]] = []
    with Stack(config) as stack:
        stack.seed_demo(stock=max(20_000, args.bills * 2))
        stack.start_engine()
        bills = asyncio.run(_issue(stack, args.bills))
        bills_file = data_dir / "bills.json"
        bills_file.write_text(json.dumps(bills[:2000]), encoding="utf-8")
        tls = stack.tls()
        env = {
            **os.environ,
            ENV_STAFF: json.dumps({u: stack.demo.staff[u].password for u in USERS}),
            ENV_CA: str(tls.ca) if tls else "",
            ENV_THINK: str(args.think),
            ENV_BILLS: str(bills_file),
        }
        for users in (int(u) for u in args.users.split(",")):
            prefix = data_dir / f"locust-{users}"
            # Sign-ins spread over up to three minutes, as a shift's staff arrive.
            # The engine checks one password at a time (argon2id, about 100 ms
            # here), so 1,000 within one minute would be the test's own storm:
            # sign-ins would queue, reported on their own line, not a morning at
            # the hospital. Figures are taken after the ramp (--reset-stats).
            rate = max(5, users // 180)
            cmd = [
                sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
                "-u", str(users), "-r", str(rate), "-t", f"{args.seconds + users // rate}s",
                "--host", stack.http_url, "--csv", str(prefix), "--only-summary",
                "--stop-timeout", "10", "--reset-stats",
            ]  # fmt: skip
            ran = subprocess.run(cmd, env=env, check=False, capture_output=True, text=True)
            if not Path(f"{prefix}_stats.csv").exists():
                raise SystemExit(f"Locust failed ({ran.returncode}):\n{ran.stderr[-3000:]}")
            results.append((users, _stats(prefix)))
            print(f"\n{users} users:", flush=True)
            for name, s in sorted(results[-1][1].items(), key=lambda kv: kv[0] == "Aggregated"):
                print(
                    f"  {name:<28}{s['rps']:7.1f} req/s  p50 {s['p50']:6.0f} ms  "
                    f"p99 {s['p99']:6.0f} ms  max {s['max']:6.0f} ms  "
                    f"failures {s['failures']:.0f}/{s['requests']:.0f}",
                    flush=True,
                )
    print(
        f"\n{len(bills)} bills issued; think time {args.think / 2:.0f}..{1.5 * args.think:.0f} s;"
        f" {args.seconds} s measured after the ramp-up; one run each. Locust shares the cores."
    )


if __name__ == "__main__":
    main()
