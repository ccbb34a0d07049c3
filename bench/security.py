"""What security costs issuance, all of it at once (issue 12): TLS on every hop,
authentication and the transparency log ON, against all three OFF, alternating
in one run on one stack (README "Security").

ON: TLS between client and engine and from the engine to the signer and the
platform; every call signed as the demo HIS app (HMAC-SM3, nonce claimed in
PostgreSQL, permission and scope checked); a log leaf per bill in the reserve
transaction, sequenced into the Merkle tree and signed tree heads.
OFF: plain gRPC on every hop (EBILL_TLS=0, the sandboxes restarted too),
EBILL_AUTH=0 and EBILL_BENCH_NO_TRANSLOG=1 (no leaves). The last switch exists
for this benchmark only: config.settings refuses it unless the engine listens
on loopback, and the engine logs a warning when it is on.

Each round restarts the signer, the platform and the engine in the round's
mode; the modes alternate (on, off, on, off ...) so that drift of the shared
machine falls on both. The summary is the median per mode and the ratio.

`python -m bench.security --rounds 3 --batch 4000 --single 1500` (make bench-security).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg

from bench.issuance import Result, run_batch, run_single_closed
from ops.stack import Stack, StackConfig
from protos.ebill.v1 import issuance_pb2_grpc

__all__ = ["main"]

# Delivery is not part of what is measured: no provider is configured.
_NO_DELIVERY = {"EBILL_SMS_URL": "", "EBILL_WECHAT_URL": "", "EBILL_ALIPAY_URL": ""}


async def _runs(stack: Stack, on: bool, args: argparse.Namespace, tag: str) -> list[Result]:
    async with stack.channel(creds=on) as ch:
        stub = issuance_pb2_grpc.IssuanceServiceStub(ch)
        await run_batch(stub, 400, 2, f"{tag}W")  # warm-up after the restart
        out = [await run_batch(stub, args.batch, args.inflight, f"{tag}B")]
        out.append(await run_single_closed(stub, args.single, args.clients, f"{tag}S"))
        return out


def _switch(stack: Stack, on: bool) -> None:
    """Restart the signer, the platform and the engine with everything on or off."""
    for name in ("engine", "fiscal", "signer"):
        stack.stop_process(name)
    stack.config.tls = on
    stack.start_signer()
    stack.start_fiscal()
    stack.start_engine(
        EBILL_AUTH="1" if on else "0",
        EBILL_BENCH_NO_TRANSLOG="0" if on else "1",
        EBILL_TLS_CLIENT_AUTH="1" if on else "0",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="on/off pairs")
    parser.add_argument("--batch", type=int, default=4000, help="bills per batch run")
    parser.add_argument("--inflight", type=int, default=4, help="batch calls in flight")
    parser.add_argument("--single", type=int, default=1500, help="bills per single-bill run")
    parser.add_argument("--clients", type=int, default=50, help="single-bill clients")
    args = parser.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="ebill-bench-security-"))
    config = StackConfig(
        data_dir=data_dir,
        database_url=os.environ.get("EBILL_DATABASE_URL", ""),
        log_dir=data_dir / "logs",
        tls=True,  # the PKI is made on entry; rounds switch it per mode
        extra_env=dict(_NO_DELIVERY),
    )
    rates: dict[tuple[bool, str], list[float]] = {}
    with Stack(config) as stack:
        for name in ("sms", "wechat", "alipay"):
            stack.stop_process(name)
        stack.seed_demo(stock=200_000)
        leaves0 = _leaves(stack)
        for round_ in range(args.rounds):
            for on in (True, False):
                _switch(stack, on)
                tag = f"S{int(time.time()):x}{round_}{int(on)}".upper()
                before = _leaves(stack)
                for r in asyncio.run(_runs(stack, on, args, tag)):
                    label = "on " if on else "off"
                    print(f"security {label} round {round_ + 1}: {r.line()}", flush=True)
                    rates.setdefault((on, r.name), []).append(r.rate)
                print(f"  log entries written this round: {_leaves(stack) - before}", flush=True)
        print(f"\nlog entries over the run: {_leaves(stack) - leaves0}")
    print("summary (median bills/s per mode; ratio on/off; the machine is shared and noisy)")
    for name in dict.fromkeys(n for _, n in rates):
        on_rate = statistics.median(rates[(True, name)])
        off_rate = statistics.median(rates[(False, name)])
        # Each round's on/off pair ran back to back: their ratios show the noise.
        pairs = [a / b for a, b in zip(rates[(True, name)], rates[(False, name)], strict=True)]
        print(
            f"  {name:<28} on {on_rate:8.0f}  off {off_rate:8.0f}  ratio {on_rate / off_rate:5.3f}"
            f"  (cost {100 * (1 - on_rate / off_rate):+.1f}% of throughput;"
            f" per round {', '.join(f'{r:.2f}' for r in pairs)},"
            f" median {statistics.median(pairs):.3f})"
        )


def _leaves(stack: Stack) -> int:
    async def count() -> int:
        conn = await asyncpg.connect(stack.database_url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM log_entries"))
        finally:
            await conn.close()

    return asyncio.run(count())


if __name__ == "__main__":
    main()
