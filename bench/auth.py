"""What authentication costs issuance: the same runs with EBILL_AUTH on and off,
alternating in one run on one stack (README "Security").

With auth on the client signs every call as the demo HIS app (HMAC-SM3 over
the SM3 digest of the request) and the engine checks the signature, claims the
nonce in PostgreSQL (one INSERT per event-loop turn, shared by the calls that
arrive together) and checks permission and scope; with auth off the client
sends no credentials and the engine checks nothing. TLS and the transparency
log stay on in both (neither can be turned off per run without restarting the
sandboxes); the engine restarts between modes, and the modes alternate
(on, off, on, off ...) so that drift of the machine falls on both.

`python -m bench.auth --rounds 2 --batch 4000 --single 1500` (make bench-auth).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.issuance import Result, run_batch, run_single_closed
from ops.stack import Stack, StackConfig
from protos.ebill.v1 import issuance_pb2_grpc

__all__ = ["main"]


async def _runs(stack: Stack, auth: bool, args: argparse.Namespace, tag: str) -> list[Result]:
    async with stack.channel(creds=auth) as ch:
        stub = issuance_pb2_grpc.IssuanceServiceStub(ch)
        await run_batch(stub, 400, 2, f"{tag}W")  # warm-up after the restart
        out = [await run_batch(stub, args.batch, args.inflight, f"{tag}B")]
        out.append(await run_single_closed(stub, args.single, args.clients, f"{tag}S"))
        return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2, help="on/off pairs")
    parser.add_argument("--batch", type=int, default=4000, help="bills per batch run")
    parser.add_argument("--inflight", type=int, default=4, help="batch calls in flight")
    parser.add_argument("--single", type=int, default=1500, help="bills per single-bill run")
    parser.add_argument("--clients", type=int, default=50, help="single-bill clients")
    args = parser.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="ebill-bench-auth-"))
    config = StackConfig(
        data_dir=data_dir,
        database_url=os.environ.get("EBILL_DATABASE_URL", ""),
        log_dir=data_dir / "logs",
    )
    rates: dict[tuple[bool, str], list[float]] = {}
    with Stack(config) as stack:
        stack.seed_demo(stock=200_000)
        for round_ in range(args.rounds):
            for auth in (True, False):
                stack.stop_process("engine")
                stack.start_engine(EBILL_AUTH="1" if auth else "0")
                tag = f"A{int(time.time()):x}{round_}{int(auth)}".upper()
                for r in asyncio.run(_runs(stack, auth, args, tag)):
                    label = "on " if auth else "off"
                    print(f"auth {label} round {round_ + 1}: {r.line()}", flush=True)
                    rates.setdefault((auth, r.name), []).append(r.rate)
    print("\nsummary (median bills/s per mode; ratio on/off)")
    for name in dict.fromkeys(n for _, n in rates):
        on = statistics.median(rates[(True, name)])
        off = statistics.median(rates[(False, name)])
        print(f"  {name:<28} on {on:8.0f}  off {off:8.0f}  ratio {on / off:5.3f}")


if __name__ == "__main__":
    main()
