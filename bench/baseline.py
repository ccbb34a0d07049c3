"""The naive per-request pipeline, measured beside the engine in the same run.

What a straightforward implementation does for each bill: validate, lease one
number and store the bill in its own transaction, sign with pure-Python SM2
(gmssl) in-process, call the fiscal platform for that one bill, archive it in
another transaction. No batching, no Ray, no native crypto. It reuses the
engine's own storage functions with batches of one, so the difference measured
is the batching and the native signer, not different SQL.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import asyncpg
from gmssl import sm2 as gm

from clients.fiscal import FiscalClient
from config.tls import TlsFiles
from engine.pipeline import Work, finish
from engine.prepare import prepare
from engine.sealing import KeyRing
from engine.sm2 import SigningKey, encode_signature
from engine.validation import validate
from storage import archive as archive_store
from storage import bills as bill_store
from storage.catalog import ensure_unit, load_catalog
from usecases import demo
from usecases.bootstrap import grant_stock

__all__ = ["BASELINE_UNIT", "run_baseline", "setup_baseline"]

BASELINE_UNIT = "BASELINE01"
# The naive pipeline waits for the platform as long as it takes (no pending path).
BASELINE_FISCAL_TIMEOUT_S = 30.0


async def setup_baseline(
    pool: asyncpg.Pool, fiscal_addr: str, stock: int, *, tls: TlsFiles | None
) -> SigningKey:
    """A unit of its own, with a key held in-process and a segment of its own."""
    key = SigningKey.generate()
    await ensure_unit(
        pool,
        unit_code=BASELINE_UNIT,
        unit_name="baseline",
        issuing_points=demo.ISSUING_POINTS[:1],
        charge_codes=demo.CHARGE_CODES,
        bill_codes=demo.BILL_CODES,
    )
    async with FiscalClient(fiscal_addr, BASELINE_FISCAL_TIMEOUT_S, tls=tls) as fiscal:
        await fiscal.register_unit(BASELINE_UNIT, "baseline", key.public)
        await grant_stock(
            pool,
            fiscal,
            unit_code=BASELINE_UNIT,
            place_code="001",
            bill_code="44060119",
            count=stock,
        )
    return key


async def run_baseline(
    pool: asyncpg.Pool,
    fiscal_addr: str,
    key: SigningKey,
    n: int,
    concurrency: int,
    tag: str,
    *,
    tls: TlsFiles | None,
    ring: KeyRing,
) -> tuple[int, float, list[float]]:
    """Issue n bills the naive way; returns (issued, seconds, latencies in ms)."""
    catalog = await load_catalog(pool)
    signer = gm.CryptSM2(private_key=f"{key.secret:064x}", public_key=key.public.point[1:].hex())
    bills = [replace(demo.demo_bill(i, prefix=tag), unit_code=BASELINE_UNIT) for i in range(n)]
    latencies: list[float] = []
    issued = 0
    queue = iter(bills)
    async with FiscalClient(fiscal_addr, BASELINE_FISCAL_TIMEOUT_S, tls=tls) as fiscal:

        async def one_at_a_time() -> None:
            nonlocal issued
            for bill in queue:
                t = time.perf_counter()
                prepared = prepare(validate(bill, catalog))
                out = await bill_store.reserve(
                    pool, [(0, prepared)], ring=ring
                )  # one bill, one commit
                work = out[0]
                assert isinstance(work, Work)
                rs = signer.sign_with_sm3(work.canonical)  # pure Python, ~8 ms
                unit_sig = encode_signature(int(rs[:64], 16), int(rs[64:], 16))
                work = replace(work, unit_signature=unit_sig)
                (r,) = await fiscal.countersign_batch([work])
                if r.ok:
                    work = replace(work, fiscal_signature=r.fiscal_signature)
                await archive_store.archive(pool, [finish(work)])  # another commit
                latencies.append((time.perf_counter() - t) * 1000)
                issued += 1 if r.ok else 0

        started = time.perf_counter()
        await asyncio.gather(*(one_at_a_time() for _ in range(concurrency)))
        return issued, time.perf_counter() - started, latencies
