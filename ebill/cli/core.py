"""`ebill serve | run | issue | signer | fiscal`: the engine, the whole stack, demo bills
and the sandboxes. Every flag defaults from its EBILL_* variable (config/settings.py)."""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clients.credentials import Credentials, open_engine_channel, read_credentials
from clients.fiscal import FiscalClient
from clients.signer import SignerClient
from config.settings import load
from config.tls import TlsFiles
from engine.canonical import countersign_message
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
from wire.bills import input_to_pb

if TYPE_CHECKING:
    from ops.stack import Stack

__all__ = ["issue_demo", "register", "verify_bills"]


def _port(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


async def issue_demo(
    addr: str,
    count: int,
    *,
    tls: TlsFiles | None,
    creds: Credentials | None = None,
    batch: int = 100,
    concurrency: int = 4,
    prefix: str | None = None,
    place_code: str = "001",
    progress: bool = True,
) -> list[bill_pb2.IssuedBill]:
    """Issue ``count`` demo bills over gRPC in batches; returns the issued bills."""
    prefix = prefix or f"D{int(time.time()):x}".upper()
    rng = random.Random(count)
    requests = [
        input_to_pb(demo.demo_bill(i, prefix=prefix, place_code=place_code, rng=rng))
        for i in range(count)
    ]
    chunks = [requests[i : i + batch] for i in range(0, count, batch)]
    issued: list[bill_pb2.IssuedBill] = []
    errors: Counter[str] = Counter()
    started = time.perf_counter()
    sem = asyncio.Semaphore(concurrency)
    async with open_engine_channel(addr, tls, creds) as ch:
        stub = issuance_pb2_grpc.IssuanceServiceStub(ch)

        async def send(chunk: list[bill_pb2.BillRequest]) -> None:
            async with sem:
                resp = await stub.IssueBatch(
                    issuance_pb2.IssueBatchRequest(bills=chunk), timeout=120
                )
            for r in resp.results:
                if r.HasField("bill"):
                    issued.append(r.bill)
                else:
                    errors[f"{r.error.code}: {r.error.message}"] += 1
            if progress:
                done = len(issued) + sum(errors.values())
                rate = done / (time.perf_counter() - started)
                print(
                    f"\r  issued {len(issued):>7}/{count}  errors {sum(errors.values()):>5}"
                    f"  {rate:8.0f} bills/s",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )

        await asyncio.gather(*(send(c) for c in chunks))
    elapsed = time.perf_counter() - started
    if progress:
        print(file=sys.stderr)
        print(f"issued {len(issued)} bills in {elapsed:.2f}s = {len(issued) / elapsed:.0f} bills/s")
        for msg, n in errors.most_common(5):
            print(f"  {n} x {msg}")
    return issued


async def verify_bills(
    bills: list[bill_pb2.IssuedBill],
    signer_addr: str,
    key_id: str,
    fiscal_addr: str,
    tls: TlsFiles | None,
) -> int:
    """Check unit and fiscal signatures of issued bills; returns how many hold."""
    async with (
        SignerClient(signer_addr, key_id, tls=tls) as signer,
        FiscalClient(fiscal_addr, tls=tls) as fiscal,
    ):
        unit_pub = await signer.public_key()
        fiscal_pub = await fiscal.public_key()
    return sum(
        unit_pub.verify(b.canonical, b.unit_signature)
        and fiscal_pub.verify(
            countersign_message(b.canonical, b.unit_signature), b.fiscal_signature
        )
        for b in bills
    )


def cmd_serve() -> None:
    """Run the engine: its gRPC server and, beside it, its HTTP server."""
    from ebill.server import run
    from ops import pki

    settings = load()
    pki.ensure_for(settings)
    run(settings)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_run(
    demo_count: Annotated[int, typer.Option("--demo", help="demo bills to issue once up")] = 500,
    batch: Annotated[int, typer.Option(help="bills per IssueBatch call")] = 100,
    once: Annotated[bool, typer.Option("--once", help="stop after the demo")] = False,
) -> None:
    """Start the whole stack on embedded defaults, seeded, with demo bills issued."""
    logging.getLogger().setLevel(logging.WARNING)
    settings = load()
    from ops.stack import Stack, StackConfig

    # SIGTERM and SIGHUP unwind like Ctrl-C, so the stack's processes (each in
    # a process group of its own) are always stopped with the launcher.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    config = StackConfig(
        data_dir=settings.data_dir,
        database_url=settings.database_url,
        grpc_port=_port(settings.grpc_addr),
        signer_port=_port(settings.signer_addr),
        fiscal_port=_port(settings.fiscal_addr),
        metrics_port=settings.metrics_port,
        http_port=_port(settings.http_addr) if settings.http_addr else -1,
        log_dir=settings.data_dir / "logs",
        tls=settings.tls,
    )
    with Stack(config) as stack:
        print(f"PostgreSQL   {stack.database_url}")
        print(f"signer       {config.signer_addr}  (HSM sandbox)")
        print(f"fiscal       {config.fiscal_addr}  (fiscal platform sandbox)")
        pki_dir = config.data_dir.resolve() / "pki"
        print(f"TLS          {f'on, local CA {pki_dir}/ca.pem' if config.tls else 'off'}")

        stack.seed_demo(stock=100_000)
        print(f"seeded demo unit {demo.UNIT_CODE} {demo.UNIT_NAME}")
        print_sign_in(stack)
        print("starting engine (Ray pipeline)...")
        stack.start_engine()
        print(
            f"engine       {config.grpc_addr}  metrics http://127.0.0.1:{config.metrics_port}/metrics"
        )
        if config.http_addr:
            print(
                f"HTTP         {stack.http_url}  (vendor gateway /api/medical/<method>,"
                f" REST /v1, OpenAPI {stack.http_url}/openapi.json)"
            )
        if demo_count:
            tls = stack.tls()
            creds = stack.app_credentials()
            bills = asyncio.run(
                issue_demo(config.grpc_addr, demo_count, batch=batch, tls=tls, creds=creds)
            )
            ok = asyncio.run(
                verify_bills(
                    bills, config.signer_addr, settings.signer_key_id, config.fiscal_addr, tls
                )
            )
            print(f"verified unit signature and fiscal countersignature of {ok}/{len(bills)} bills")
            if bills:
                b = bills[0]
                print(
                    f"first bill: code {b.bill_code} no {b.bill_no} check {b.check_code} "
                    f"total {b.total_amount} status {bill_pb2.BillStatus.Name(b.status)}"
                )

            if bills:
                asyncio.run(lifecycle_demo(config.grpc_addr, bills[0], tls, creds))

        if once:
            return
        print("stack running; Ctrl-C to stop. Logs in", config.log_dir)
        try:
            while all(p.poll() is None for p in stack.procs.values()):
                time.sleep(1)
        except KeyboardInterrupt:
            print("\nstopping")


async def lifecycle_demo(
    addr: str, bill: bill_pb2.IssuedBill, tls: TlsFiles | None, creds: Credentials | None
) -> None:
    """Red-flush one demo bill and show the stock identity, over the engine's own API."""
    async with open_engine_channel(addr, tls, creds) as ch:
        operator = lifecycle_pb2.Operator(
            unit_code=bill.unit_code, place_code=bill.place_code, operator="demo-clerk"
        )
        key = issuance_pb2.GetBillRequest(
            by_number=issuance_pb2.BillNumberKey(bill_code=bill.bill_code, bill_no=bill.bill_no)
        )
        resp = await lifecycle_pb2_grpc.LifecycleServiceStub(ch).RedFlush(
            lifecycle_pb2.RedFlushRequest(
                operator=operator,
                original=key,
                bus_no=f"RED-{bill.bus_no}",
                reason="demo: charged twice",
            ),
            timeout=60,
        )
        red = resp.red_bill
        print(
            f"red-flushed {bill.bill_code}/{bill.bill_no}: red bill {red.bill_code}/"
            f"{red.bill_no} total {red.total_amount}, original now "
            f"{bill_pb2.BillStatus.Name(resp.original.status)}"
        )
        ident = await stock_pb2_grpc.StockServiceStub(ch).GetStockIdentity(
            stock_pb2.OperatorOnly(
                operator=lifecycle_pb2.Operator(unit_code=bill.unit_code, operator="demo")
            ),
            timeout=30,
        )
        for line in ident.lines:
            print(
                f"  stock identity {line.bill_code}: granted {line.granted} = issued "
                f"{line.issued} + available {line.available} + voided {line.voided} + returned "
                f"{line.returned}  {'ok' if line.balanced else 'UNBALANCED'}"
            )


def cmd_issue(
    demo_count: Annotated[int, typer.Option("--demo", help="how many bills")] = 100,
    batch: Annotated[int, typer.Option(help="bills per IssueBatch call")] = 100,
    concurrency: Annotated[int, typer.Option(help="calls in flight")] = 4,
    place_code: Annotated[str, typer.Option(help="issuing point")] = "001",
    addr: Annotated[str, typer.Option(help="engine address; default EBILL_GRPC_ADDR")] = "",
    credentials: Annotated[
        str,
        typer.Option(help="app credentials JSON; default <data dir>/demo-credentials.json"),
    ] = "",
) -> None:
    """Issue demo bills against a running engine, signed as the demo HIS app."""
    from ops import pki

    settings = load()
    path = Path(credentials) if credentials else settings.data_dir / "demo-credentials.json"
    creds = read_credentials(path) if path.exists() else None
    asyncio.run(
        issue_demo(
            addr or settings.grpc_addr,
            demo_count,
            batch=batch,
            concurrency=concurrency,
            place_code=place_code,
            tls=pki.client_files(settings),
            creds=creds,
        )
    )


def print_sign_in(stack: Stack) -> None:
    """How to sign in to the demo (make run): the app's credentials and the staff."""
    demo_creds = stack.demo
    print(f"credentials  {stack.credentials_file}  (0600; fresh at each seeding)")
    print(
        f"  demo HIS app  id {demo_creds.app_id}  secret {demo_creds.app_secret.hex()}"
        "  (sign each call: docs/identity.md)"
    )
    for s in demo_creds.staff.values():
        second = f"  TOTP {s.otpauth_uri}" if s.totp_secret else ""
        print(f"  user {s.username:<12} {s.role:<14} password {s.password}{second}")
    print("  sign in: IdentityService.Login(username, password, totp) -> Bearer token")


def cmd_signer() -> None:
    """Run the signing-server (HSM) sandbox."""
    from ops.sandboxes import signer

    signer.main([])


def cmd_fiscal() -> None:
    """Run the fiscal-platform sandbox."""
    from ops.sandboxes import fiscal

    fiscal.main([])


def register(app: typer.Typer) -> None:
    app.command("serve")(cmd_serve)
    app.command("run")(cmd_run)
    app.command("issue")(cmd_issue)
    app.command("signer")(cmd_signer)
    app.command("fiscal")(cmd_fiscal)
