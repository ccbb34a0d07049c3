"""Single-bill issuance over the vendor gateway (HTTP, signed envelope) against
the gRPC path, at the same offered load, in one run: rounds alternate A (gRPC
IssueBill) and B (gateway invoiceEBillOutpatient), each with the same number
of concurrent callers sending bills back to back for the same time. Reports
bills/s of each and the ratio B/A (target >= 0.8). Run under the shared lock:

    flock /tmp/ebill-e2e.lock .venv/bin/python -m bench.gateway --seconds 15 --callers 32
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.vendor import envelope, result_of, vendor_bill
from ops.stack import Stack, StackConfig, http_ssl_context
from protos.ebill.v1 import issuance_pb2, issuance_pb2_grpc
from usecases import demo
from wire.bills import input_to_pb

__all__ = ["main"]

_seq = iter(range(1, 10**9))


class _Conn:
    """One persistent HTTP/1.1 connection over TLS, the way a HIS keeps one per
    window: request written, answer read by Content-Length. httpx costs the
    client more CPU per request than the whole gateway call on this machine,
    which would measure the load generator rather than the engine."""

    def __init__(self, host: str, port: int, ctx: ssl.SSLContext | None) -> None:
        self.host, self.port, self.ctx = host, port, ctx
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> bytes:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.ctx
            )
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        headers = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in headers.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _round(
    callers: int, seconds: float, one: Callable[[], Awaitable[bool]]
) -> tuple[int, int]:
    ok = failed = 0
    stop = time.monotonic() + seconds

    async def caller() -> None:
        nonlocal ok, failed
        while time.monotonic() < stop:
            if await one():
                ok += 1
            else:
                failed += 1

    await asyncio.gather(*(caller() for _ in range(callers)))
    return ok, failed


async def _run(stack: Stack, callers: int, seconds: float, rounds: int) -> None:
    run = uuid.uuid4().hex[:6]
    appid, key = stack.demo.app_id, stack.demo.app_secret.hex()
    tls = stack.tls()
    host, _, port = stack.config.http_addr.rpartition(":")
    ctx = http_ssl_context(tls) if tls else None
    idle = [_Conn(host, int(port), ctx) for _ in range(callers)]
    async with stack.channel() as ch:
        stub = issuance_pb2_grpc.IssuanceServiceStub(ch)

        async def grpc_one() -> bool:
            b = demo.demo_bill(next(_seq), prefix=f"GA{run}")
            try:
                await stub.IssueBill(issuance_pb2.IssueBillRequest(bill=input_to_pb(b)), timeout=60)
                return True
            except Exception:
                return False

        async def http_one() -> bool:
            body = envelope(appid, key, vendor_bill(next(_seq), f"GB{run}"))
            conn = idle.pop()
            try:
                answer = await conn.post("/api/medical/invoiceEBillOutpatient", body)
            finally:
                idle.append(conn)
            return result_of(answer) == "S0000"

        # Warm both paths (connections, pipeline).
        await _round(callers, 3, grpc_one)
        await _round(callers, 3, http_one)
        totals = {"grpc": [0, 0], "gateway": [0, 0]}
        for r in range(rounds):
            for name, one in (("grpc", grpc_one), ("gateway", http_one)):
                ok, failed = await _round(callers, seconds, one)
                totals[name][0] += ok
                totals[name][1] += failed
                print(f"round {r + 1} {name:8s} {ok / seconds:7.0f} bills/s ({failed} failed)")
        a = totals["grpc"][0] / (rounds * seconds)
        b = totals["gateway"][0] / (rounds * seconds)
        print(
            f"gRPC IssueBill {a:.0f} bills/s, gateway invoiceEBillOutpatient {b:.0f} bills/s, "
            f"ratio gateway/gRPC {b / a:.2f} ({callers} concurrent callers each, "
            f"{rounds} alternating rounds of {seconds:g}s)"
        )
    for conn in idle:
        conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--callers", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="ebill-bench-gw-"))
    with Stack(StackConfig(data_dir=data, log_dir=data / "logs")) as stack:
        stack.seed_demo(stock=200_000)
        stack.start_engine()
        asyncio.run(_run(stack, args.callers, args.seconds, args.rounds))


if __name__ == "__main__":
    main()
