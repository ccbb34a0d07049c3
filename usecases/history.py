"""History migration: import the bills a previous system issued (docs/history-import.md).

A file is read once into a staging table (each row checked by the issuance
rules in Python, refused rows reported with their column), checked set-based
in the database (duplicates, bills already on file, unknown points, red bills
and their originals, numbers blocked in stock), then imported in batches, each
its own transaction with its checkpoint. Running the same file again resumes
its unfinished job, or finds it done and imports nothing.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from engine.sealing import KeyRing
from storage import history as store
from storage.personal import seal_bill
from usecases.history_rows import RowError, check_row, csv_rows, json_rows

__all__ = [
    "Checked",
    "HistoryImport",
    "ImportResult",
    "Progress",
    "check_rows",
    "file_format",
    "write_report",
]

# (phase, done, total or 0 when unknown): staging counts bytes read, import bills.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class ImportResult:
    job_id: int
    imported: int  # bills written by this run
    imported_total: int  # by the job, over every run of it
    duplicates: int  # rows repeating an earlier row of the file
    existing: int  # rows already imported (by an earlier job)
    rejected: int
    ranges_added: int  # number ranges that entered stock
    already_done: bool  # the file was imported before: nothing to do
    resumed: bool  # an interrupted job was continued
    seconds: float


# A file row as read: a JSON line, a CSV row, or why it cannot be read.
_Raw = str | dict[str, Any] | RowError
# Files smaller than this are checked in-process (starting workers costs ~1 s).
_INLINE_BYTES = 4 << 20


@dataclass(frozen=True, slots=True)
class Checked:
    """A chunk of file rows checked: the staged ones in COPY form, the refused ones."""

    last_row: int
    staged: int
    data: bytes
    refused: list[store.Reject]


def check_rows(
    job_id: int, chunk: list[tuple[int, _Raw]], ids: list[int], fmt: str, ring: KeyRing
) -> Checked:
    """Check a chunk of rows and seal the payer's data of those that pass under
    their bill ids (``ids``, one per row). Runs in a worker process: top-level and
    picklable; a JSON line travels as text, cheaper to parse here than to pickle."""
    good: list[tuple[Any, ...]] = []
    refused: list[store.Reject] = []
    for (row_no, raw), bill_id in zip(chunk, ids, strict=True):
        if isinstance(raw, str):
            if "\ufffd" in raw:
                raw = RowError(row_no, "", "the line is not UTF-8")
            else:
                [(_, raw)] = json_rows([raw])  # one line, numbered 1
        out = [raw] if isinstance(raw, RowError) else check_row(raw, row_no, fmt)
        if isinstance(out, list):
            refused.extend(store.Reject(row_no, e.column, e.reason) for e in out)
            continue
        (unit, bus_no, bus_type, kind, place, code, no, check, status, total,
         _name, id_card, card, tel, cashier, bus_time, issued_at, request, canonical,
         *rest) = out  # fmt: skip
        sealed = seal_bill(ring, bill_id, request, canonical, id_card=id_card, tel=tel, card=card)
        good.append(
            (
                row_no, bill_id, unit, bus_no, bus_type, kind, place, code, no, check, status,
                total, sealed.payer_id_card_hash, sealed.payer_tel_hash, sealed.payer_card_hash,
                cashier, bus_time, issued_at, sealed.request_sealed, sealed.canonical_sealed,
                *rest,
            )
        )  # fmt: skip
    return Checked(chunk[-1][0], len(good), store.copy_text(job_id, good), refused)


def _raw_rows(lines: Iterator[str], fmt: str) -> Iterator[tuple[int, _Raw]]:
    """(row number, line) of a JSON-lines file (blank lines skipped), else read rows."""
    if fmt == "csv":
        yield from csv_rows(lines)
        return
    for n, line in enumerate(lines, 1):
        if line.strip():
            yield n, line


def _chunks(
    rows: Iterator[tuple[int, _Raw]], after: int, size: int
) -> Iterator[list[tuple[int, _Raw]]]:
    """Rows after file row ``after`` (the staging checkpoint), ``size`` at a time."""
    chunk: list[tuple[int, _Raw]] = []
    for row_no, raw in rows:
        if row_no <= after:
            continue
        chunk.append((row_no, raw))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def file_format(path: Path, given: str = "") -> str:
    """'jsonl' or 'csv', as given or by the file's extension."""
    if given:
        return given
    return "csv" if path.suffix.lower() == ".csv" else "jsonl"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _columns(fmt: str) -> dict[str, str]:
    if fmt == "csv":
        return {
            "unit_code": "unit_code",
            "place_code": "place_code",
            "bill_no": "bill_no",
            "bus_no": "bus_no",
            "red_of": "red_of_bill_no",
        }
    return {
        "unit_code": "bill.unit_code",
        "place_code": "bill.place_code",
        "bill_no": "bill_no",
        "bus_no": "bill.bus_no",
        "red_of": "red_of",
    }


class _Counting:
    """Lines of a text file, counting the bytes read for the progress bar."""

    def __init__(self, path: Path) -> None:
        # Binary, so that the count is in bytes like the file's size.
        self._f = path.open("rb")
        self.read = 0

    def __iter__(self) -> Iterator[str]:
        for line in self._f:
            self.read += len(line)
            try:
                yield line.decode("utf-8-sig" if self.read == len(line) else "utf-8")
            except UnicodeDecodeError:
                # The row is refused for it (check_rows), not the whole file.
                yield line.decode("utf-8", errors="replace")

    def close(self) -> None:
        self._f.close()


class HistoryImport:
    """Imports history files into one database."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        ring: KeyRing,
        *,
        batch: int = 20_000,
        chunk: int = 5_000,
        workers: int = 2,
    ) -> None:
        """``ring`` seals the payer's data of every imported bill (docs/personal-data.md)."""
        self._pool = pool
        self._ring = ring
        self._batch = batch
        self._chunk = chunk
        self._workers = workers

    async def run(
        self,
        path: Path,
        *,
        operator: str,
        fmt: str = "",
        again: bool = False,
        progress: Progress | None = None,
    ) -> ImportResult:
        """Import ``path`` (or resume its interrupted import). ``again`` checks a
        file imported before once more (every row is then found on file)."""
        started = time.perf_counter()
        tick = progress or (lambda phase, done, total: None)
        fmt = file_format(path, fmt)
        job = await store.open_job(
            self._pool, sha256=_sha256(path), file_name=path.name, fmt=fmt,
            operator=operator, again=again,
        )  # fmt: skip
        if job.phase == "done":
            return ImportResult(
                job.id, 0, job.imported, 0, 0, await self._rejected(job.id),
                0, True, False, time.perf_counter() - started,
            )  # fmt: skip
        resumed = job.rows_staged > 0 or job.phase != "staging"
        added = 0
        if job.phase == "staging":
            await self._stage(path, job, tick)
            added = await store.check_job(self._pool, job.id, _columns(fmt))
        tally = await store.counts(self._pool, job.id)
        total_ok = tally.get("ok", 0)
        imported = 0
        base = job.imported
        tick("import", base, total_ok)
        for red, after in ((False, job.done_row), (True, job.done_red)):
            while True:
                n, last = await store.import_batch(
                    self._pool, job.id, red=red, after=after, limit=self._batch,
                    operator=operator,
                )  # fmt: skip
                if not n:
                    break
                imported += n
                after = last
                tick("import", base + imported, total_ok)
        rejected = await self._rejected(job.id)
        await store.finish_job(self._pool, job.id)
        return ImportResult(
            job.id, imported, base + imported, tally.get("duplicate", 0),
            tally.get("existing", 0), rejected, added, False, resumed,
            time.perf_counter() - started,
        )  # fmt: skip

    async def _rejected(self, job_id: int) -> int:
        return len({r.row_no for r in await store.rejects(self._pool, job_id)})

    async def _stage(self, path: Path, job: store.Job, tick: Progress) -> None:
        """Check the rows not staged yet, in worker processes when the file is big
        (the rules cost ~0.15 ms a row in Python), and COPY them in chunks."""
        size = path.stat().st_size
        lines = _Counting(path)
        loop = asyncio.get_running_loop()
        pool = (
            ProcessPoolExecutor(self._workers, mp_context=multiprocessing.get_context("spawn"))
            if self._workers and size > _INLINE_BYTES
            else None
        )
        try:
            chunks = _chunks(_raw_rows(iter(lines), job.fmt), job.rows_staged, self._chunk)
            pending: deque[asyncio.Future[Checked]] = deque()
            for chunk in chunks:
                ids = await store.new_bill_ids(self._pool, len(chunk))
                if pool is None:
                    await self._flush(job.id, check_rows(job.id, chunk, ids, job.fmt, self._ring))
                    tick("stage", lines.read, size)
                    continue
                pending.append(
                    loop.run_in_executor(pool, check_rows, job.id, chunk, ids, job.fmt, self._ring)
                )
                # Keep every worker busy while the oldest chunk is copied in.
                if len(pending) > 2 * self._workers:
                    await self._flush(job.id, await pending.popleft())
                    tick("stage", lines.read, size)
            while pending:
                await self._flush(job.id, await pending.popleft())
            tick("stage", size, size)
        finally:
            lines.close()
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    async def _flush(self, job_id: int, checked: Checked) -> None:
        """One chunk into staging with its checkpoint (the last file row it covers)."""
        await store.stage_rows(self._pool, job_id, checked.data, checked.refused, checked.last_row)

    async def report(self, job_id: int, path: Path) -> int:
        """Write the rejected rows of a job (row, column, reason) as CSV; returns how many."""
        found = await store.rejects(self._pool, job_id)
        write_report(path, found)
        return len(found)


def write_report(path: Path, found: list[store.Reject]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "column", "reason"])
        for r in found:
            w.writerow([r.row_no, r.column, r.reason])
