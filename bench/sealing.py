"""Cost of sealing personal data at rest, measured in one run (A and B alternating).

Sealing happens in one place on the issuing path: the reserve transaction of each
batch (storage.bills.reserve, storage.personal.seal_bill: the request and the
canonical bytes under SM4-GCM, three HMAC-SM3 digests). This benchmark runs that
very function against a real PostgreSQL, batch after batch, alternating

- A: with the engine's key ring (what the engine does), and
- B: with a ring that copies the plaintext instead of sealing it (what the
  engine did before migration 0010, byte sizes alike),

and reports bills/s of each and their ratio, plus the sealing work alone per
bill. The reserve stage is one of five pipeline stages, in an actor of its own;
the ratio is therefore an upper bound of the cost to whole-pipeline throughput.

With ``--engine-before DIR`` (a source tree of the code before sealing, e.g.
``git archive <commit> | tar -x -C DIR``) it also measures the whole engine:
``bench.issuance``'s batch run, alternating the tree in DIR (B, before) and this
one (A, after), each on a fresh stack, ``--pairs`` times.

    python -m bench.sealing [--rounds 6] [--batches 10] [--batch 200]
                            [--engine-before DIR --pairs 3 --engine-bills 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import asyncpg

from engine.model import Reservation
from engine.prepare import Prepared, prepare
from engine.sealing import KeyRing
from engine.validation import validate
from storage.bills import reserve
from storage.catalog import add_segment, ensure_unit, load_catalog
from storage.db import EmbeddedPostgres, connect_pool
from storage.personal import seal_bill
from usecases import demo

__all__ = ["main"]

UNIT = "SEALBENCH1"
PLACE = "001"
BILL_CODE = "44060119"


class _CopyRing(KeyRing):
    """B: the same calls, no cryptography; the "sealed" value is the plaintext
    behind a header (benchmark only: the engine never stores this)."""

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        return b"\x01\x00\x01" + plaintext

    def index(self, value: str, purpose: str = "") -> bytes | None:
        return value.encode()[:32] or None


async def _setup(pool: asyncpg.Pool, numbers: int) -> None:
    await ensure_unit(
        pool,
        unit_code=UNIT,
        unit_name="sealing bench",
        issuing_points=demo.ISSUING_POINTS[:1],
        charge_codes=demo.CHARGE_CODES,
        bill_codes=demo.BILL_CODES,
    )
    start = int(await pool.fetchval("SELECT coalesce(max(end_no), 0) FROM segments")) + 1
    await add_segment(
        pool,
        unit_code=UNIT,
        place_code=PLACE,
        bill_code=BILL_CODE,
        start_no=start,
        end_no=start + numbers - 1,
        grant_id=f"SEALBENCH-{start}",
    )


async def _prepared(pool: asyncpg.Pool, n: int, tag: str) -> list[Prepared]:
    catalog = await load_catalog(pool)
    bills = [
        replace(demo.demo_bill(i, prefix=tag, place_code=PLACE), unit_code=UNIT) for i in range(n)
    ]
    return [prepare(validate(b, catalog)) for b in bills]


async def _run(pool: asyncpg.Pool, ring: KeyRing, bills: list[Prepared], batch: int) -> float:
    """Seconds to reserve ``bills`` in batches of ``batch``."""
    started = time.perf_counter()
    for i in range(0, len(bills), batch):
        chunk = bills[i : i + batch]
        await reserve(pool, list(enumerate(chunk)), ring=ring)
    return time.perf_counter() - started


def _seal_us(ring: KeyRing, p: Prepared, n: int = 5000) -> float:
    canon = p.canonical(Reservation(p.bill_code, "0000000001", "abc123", p.bus_time))
    started = time.perf_counter()
    for i in range(n):
        seal_bill(
            ring, i, p.request, canon, id_card=p.payer_id_card_no, tel=p.payer_tel,
            card=p.payer_card_no,
        )  # fmt: skip
    return (time.perf_counter() - started) / n * 1e6


async def bench(url: str, rounds: int, batches: int, batch: int) -> list[str]:
    pool = await connect_pool(url, size=2, migrate=True)
    try:
        per_arm = batches * batch
        await _setup(pool, per_arm * rounds * 2 + batch)
        real = KeyRing.generate()
        copy = _CopyRing(real.keys, real.active, real.index_key)
        stamp = f"{int(time.time()):x}".upper()[-6:]
        # Warm up: connections, statement caches, the first pages.
        await _run(pool, real, await _prepared(pool, batch, f"SW{stamp}"), batch)
        rates: dict[str, list[float]] = {"A sealed": [], "B plaintext": []}
        for r in range(rounds):
            arms = [("A sealed", real), ("B plaintext", copy)]
            for name, ring in arms if r % 2 == 0 else arms[::-1]:
                bills = await _prepared(pool, per_arm, f"S{name[0]}{r}{stamp}")
                seconds = await _run(pool, ring, bills, batch)
                rates[name].append(per_arm / seconds)
        sample = (await _prepared(pool, 1, f"SU{stamp}"))[0]
        seal_us = _seal_us(real, sample)
    finally:
        await pool.close()
    a, b = (statistics.median(rates[k]) for k in ("A sealed", "B plaintext"))
    lines = [
        f"reserve stage, {rounds} rounds x {batches} batches of {batch} bills per arm,"
        " A and B alternating:",
        *(
            f"  {k}: median {statistics.median(v):,.0f} bills/s"
            f" (rounds: {', '.join(f'{x:,.0f}' for x in v)})"
            for k, v in rates.items()
        ),
        f"  ratio A/B: {a / b:.3f} (sealing costs {100 * (1 - a / b):.1f}% of the reserve"
        " stage's throughput)",
        f"sealing alone: {seal_us:.0f} us per bill (2 x SM4-GCM, 3 x HMAC-SM3, JSON of"
        " the request) on one core",
    ]
    return lines


_HERE = Path(__file__).resolve().parents[1]
_BATCH_LINE = re.compile(
    r"^batch x200, \d+ in flight\s+(\d+) issued.*?([\d.]+)s\s+(\d+) bills/s", re.M
)


def _engine_run(tree: Path, bills: int) -> float:
    """bench.issuance's batch run with the code in ``tree``; bills/s."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.issuance",
            "--batch",
            str(bills),
            "--inflight",
            "4",
            "--mixed-rate",
            "0",
            "--single",
            "0",
            "--rate",
            "0",
            "--locust-seconds",
            "0",
            "--baseline",
            "0",
            "--sm2-seconds",
            "0.2",
        ],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = _BATCH_LINE.search(out)
    if found is None:
        raise SystemExit(f"no batch line in the output of {tree}:\n{out[-2000:]}")
    return float(found.group(3))


def engine_ab(before: Path, pairs: int, bills: int) -> list[str]:
    rates: dict[str, list[float]] = {"A sealed (this tree)": [], f"B before ({before})": []}
    for i in range(pairs):
        arms = [("A sealed (this tree)", _HERE), (f"B before ({before})", before)]
        for name, tree in arms if i % 2 == 0 else arms[::-1]:
            rates[name].append(_engine_run(tree, bills))
            print(f"  {name}: {rates[name][-1]:,.0f} bills/s", flush=True)
    a, b = (statistics.mean(v) for v in rates.values())
    pair_ratios = [x / y for x, y in zip(*rates.values(), strict=True)]
    return [
        f"whole engine, batch issuance ({bills} bills, 200 a call, 4 in flight), {pairs} pairs"
        " alternating, a fresh stack each:",
        *(f"  {k}: {', '.join(f'{x:,.0f}' for x in v)} bills/s" for k, v in rates.items()),
        f"  ratio A/B (means): {a / b:.3f} (pairs {min(pair_ratios):.2f} to"
        f" {max(pair_ratios):.2f})",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=6, help="rounds (each runs A and B)")
    parser.add_argument("--batches", type=int, default=10, help="batches per arm and round")
    parser.add_argument("--batch", type=int, default=200, help="bills per batch")
    parser.add_argument(
        "--engine-before", default="", help="source tree before sealing: also A/B the engine"
    )
    parser.add_argument("--pairs", type=int, default=3, help="engine A/B pairs")
    parser.add_argument("--engine-bills", type=int, default=4000, help="bills per engine run")
    args = parser.parse_args(argv)
    url = os.environ.get("EBILL_DATABASE_URL", "")
    data_dir: Path | None = None
    embedded = None
    if not url:
        data_dir = Path(tempfile.mkdtemp(prefix="ebill-bench-sealing-"))
        embedded = EmbeddedPostgres(data_dir)
        url = embedded.url
    try:
        lines = asyncio.run(bench(url, args.rounds, args.batches, args.batch))
    finally:
        if embedded is not None:
            embedded.cleanup()
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)
    print("\n".join(lines), flush=True)
    if args.engine_before:
        lines = engine_ab(Path(args.engine_before).resolve(), args.pairs, args.engine_bills)
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
