"""History import benchmark (`make bench-history`, BILLS=1000000 by default).

Against a fresh embedded PostgreSQL (the import needs no signer, platform or
pipeline): the demo hospital, a generated history file of BILLS bills
(bench/history_data.py; its writing is not timed), then

1. the import: bills/s overall, with the time of each phase;
2. the same file again: its job is done, nothing is imported;
3. the same file again with ``again`` (every row read, checked and found on file):
   nothing imported;
4. the stock identity of the history bill code and the bills on file.

Prints one line per run and the ratios of the re-runs to the import.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from bench.history_data import OLD_BILL_CODE, history_rows, write_jsonl
from engine.sealing import KeyRing
from storage.catalog import PAY_CHANNELS, ensure_unit
from storage.db import EmbeddedPostgres, connect_pool
from storage.stock.segments import identity
from usecases import demo
from usecases.history import HistoryImport

__all__ = ["main"]


async def _run(bills: int, work: Path, batch: int, workers: int, given: Path | None) -> None:
    file = given or work / "history.jsonl"
    if not file.exists():
        t = time.perf_counter()
        write_jsonl(file, history_rows(bills))
        print(f"file written in {time.perf_counter() - t:.0f}s (not timed)", flush=True)
    print(f"file: {file.stat().st_size / 1e6:.0f} MB", flush=True)
    server = EmbeddedPostgres(work)
    pool = await connect_pool(server.url, size=2, migrate=True)
    try:
        await ensure_unit(
            pool, unit_code=demo.UNIT_CODE, unit_name=demo.UNIT_NAME,
            issuing_points=demo.ISSUING_POINTS, charge_codes=demo.CHARGE_CODES,
            bill_codes=[(t, c, n) for t, c, n in demo.BILL_CODES],
        )  # fmt: skip
        assert PAY_CHANNELS
        # A ring of its own: the bench's database is thrown away with it.
        imp = HistoryImport(pool, KeyRing.generate(), batch=batch, workers=workers)
        marks: dict[str, float] = {}

        def tick(phase: str, done: int, total: int) -> None:
            # The first tick of a phase: the previous one (and the checks) ended.
            marks.setdefault(phase, time.perf_counter())

        t0 = time.perf_counter()
        res = await imp.run(file, operator="bench", progress=tick)
        staged = marks.get("import", t0) - t0
        rate = res.imported / res.seconds
        print(
            f"import: {res.imported} bills in {res.seconds:.1f}s = {rate:,.0f} bills/s"
            f" (rejected {res.rejected}, ranges into stock {res.ranges_added});"
            f" read+check+stage+set checks {staged:.1f}s, batches {res.seconds - staged:.1f}s",
            flush=True,
        )
        again = await imp.run(file, operator="bench")
        print(
            f"re-run, same file: imported {again.imported} in {again.seconds:.2f}s"
            f" (job {again.job_id} already done: {again.already_done})",
            flush=True,
        )
        full = await imp.run(file, operator="bench", again=True)
        print(
            f"re-run, every row checked again: imported {full.imported},"
            f" found on file {full.existing}, in {full.seconds:.1f}s",
            flush=True,
        )
        [ident] = [i for i in await identity(pool, demo.UNIT_CODE) if i.bill_code == OLD_BILL_CODE]
        on_file = await pool.fetchval("SELECT count(*) FROM bills WHERE origin = 'history'")
        print(
            f"stock {OLD_BILL_CODE}: granted {ident.granted} issued {ident.issued}"
            f" available {ident.available} balanced {ident.balanced}; history bills {on_file}"
        )
        print(
            f"ratios: re-run/import time {again.seconds / res.seconds:.4f},"
            f" full re-check/import time {full.seconds / res.seconds:.2f};"
            f" 1M-bill import projected {1_000_000 / rate:.0f}s (target < 300s)"
        )
    finally:
        await pool.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bills", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=20_000)
    p.add_argument("--workers", type=int, default=2, help="processes checking rows (0: inline)")
    p.add_argument("--file", type=Path, help="use (or first write) this file: write it ahead")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ebill-bench-history-"))
    try:
        asyncio.run(_run(a.bills, work, a.batch, a.workers, a.file))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
