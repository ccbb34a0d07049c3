"""History import: the set-based checks of a staged job, and blocking its numbers.

One transaction (:func:`check_job`) under the advisory lock of every unit of the
file gives each staged row its verdict (ok, duplicate, existing, rejected) and
blocks the numbers to import in stock, so that what the batches then write was
decided against one state of the bills and the stock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from engine.numbers import BillNo
from engine.statuses import SegmentStatus
from storage.stock._common import carve, lock_unit

__all__ = ["HISTORY_NOTE", "HISTORY_SOURCE", "Reject", "check_job"]

# segments.note of the pieces holding imported numbers; segment_grants.source of
# the ranges that entered stock with an import.
HISTORY_NOTE = "history"
HISTORY_SOURCE = "history"


@dataclass(frozen=True, slots=True)
class Reject:
    """A refused file row: its number, column and why."""

    row_no: int
    column: str
    reason: str


# -- the set-based checks ------------------------------------------------------


async def _reject(conn: asyncpg.Connection, job_id: int, found: Sequence[Reject]) -> None:
    if not found:
        return
    await conn.executemany(
        "INSERT INTO history_rejects (job_id, row_no, col, reason) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT DO NOTHING",
        [(job_id, r.row_no, r.column, r.reason) for r in found],
    )
    await conn.execute(
        "UPDATE history_staging SET verdict = 'rejected' WHERE job_id = $1"
        " AND row_no = ANY($2::bigint[]) AND verdict <> 'rejected'",
        job_id,
        [r.row_no for r in found],
    )


async def _reject_sql(conn: asyncpg.Connection, job_id: int, select: str, *args: Any) -> None:
    """Reject the rows a query finds: ``select`` yields (row_no, col, reason) for
    job $1 among rows still ok."""
    found = [Reject(r[0], r[1], r[2]) for r in await conn.fetch(select, job_id, *args)]
    await _reject(conn, job_id, found)


async def _duplicates_in_file(conn: asyncpg.Connection, job_id: int, cols: dict[str, str]) -> None:
    """A later row of the same number or serial: a repeat when it is the same bill
    (skipped), refused when it differs."""
    repeats: list[int] = []
    found: list[Reject] = []
    for key, col in (
        ("bill_code, bill_no", cols["bill_no"]),
        ("unit_code, bus_no", cols["bus_no"]),
    ):
        rows = await conn.fetch(
            f"WITH d AS (SELECT {key} FROM history_staging WHERE job_id = $1"
            f"   AND verdict = 'ok' GROUP BY {key} HAVING count(*) > 1)"
            " SELECT s.row_no, s.bill_code, s.bill_no, s.bus_no, s.digest"
            f" FROM history_staging s JOIN d USING ({key})"
            f" WHERE s.job_id = $1 AND s.verdict = 'ok' ORDER BY {key}, s.row_no",
            job_id,
        )
        first: dict[tuple[str, ...], asyncpg.Record] = {}
        for r in rows:
            k = (r["bill_code"], r["bill_no"]) if key.startswith("bill") else (r["bus_no"],)
            f = first.setdefault(k, r)
            if f is r:
                continue
            if f["digest"] == r["digest"]:
                repeats.append(r["row_no"])
            elif key.startswith("bill"):
                why = f"bill {r['bill_code']}/{r['bill_no']} is already on row {f['row_no']}"
                found.append(Reject(r["row_no"], col, why + " with other content"))
            else:
                why = f"serial {r['bus_no'][:50]} is already on row {f['row_no']}"
                found.append(Reject(r["row_no"], col, f"{why} ({f['bill_code']}/{f['bill_no']})"))
        if repeats:
            await conn.execute(
                "UPDATE history_staging SET verdict = 'duplicate' WHERE job_id = $1"
                " AND row_no = ANY($2::bigint[])",
                job_id,
                repeats,
            )
            repeats = []
        await _reject(conn, job_id, found)
        found = []


async def _against_bills(conn: asyncpg.Connection, job_id: int, cols: dict[str, str]) -> None:
    """Bills already on file: the same history bill is 'existing' (a re-run); any
    other bill under the number or the serial refuses the row."""
    await conn.execute(
        "UPDATE history_staging s SET verdict = 'existing' FROM bills b"
        " JOIN history_bills h ON h.bill_id = b.id"
        " WHERE s.job_id = $1 AND s.verdict = 'ok' AND b.bill_code = s.bill_code"
        " AND b.bill_no = s.bill_no AND h.digest = s.digest",
        job_id,
    )
    await _reject_sql(
        conn, job_id,
        "SELECT s.row_no, $2::text, 'bill ' || b.bill_code || '/' || b.bill_no || ' is already on"
        " file (' || b.origin || ', serial ' || left(b.bus_no, 50) || ') with other content'"
        " FROM history_staging s JOIN bills b"
        " ON b.bill_code = s.bill_code AND b.bill_no = s.bill_no"
        " WHERE s.job_id = $1 AND s.verdict = 'ok'",
        cols["bill_no"],
    )  # fmt: skip
    await _reject_sql(
        conn, job_id,
        "SELECT s.row_no, $2::text, 'serial ' || left(s.bus_no, 50) || ' is already on bill '"
        " || b.bill_code || '/' || b.bill_no || ' of unit ' || b.unit_code"
        " FROM history_staging s JOIN bills b ON b.unit_code = s.unit_code AND b.bus_no = s.bus_no"
        " WHERE s.job_id = $1 AND s.verdict IN ('ok', 'existing')"
        " AND (b.bill_code, b.bill_no) <> (s.bill_code, s.bill_no)",
        cols["bus_no"],
    )  # fmt: skip


async def _red_bills(conn: asyncpg.Connection, job_id: int, cols: dict[str, str]) -> None:
    """A red bill cancels an original in the file or on file, marked red-flushed, once."""
    rows = await conn.fetch(
        "SELECT s.row_no, s.red_code, s.red_no,"
        " coalesce(o.status, b.status) AS original_status,"
        " (SELECT count(*) FROM bills r WHERE r.red_of = b.id AND r.status <> 'rejected')"
        "   AS reds_on_file"
        " FROM history_staging s"
        " LEFT JOIN history_staging o ON o.job_id = s.job_id AND o.bill_code = s.red_code"
        "   AND o.bill_no = s.red_no AND o.verdict IN ('ok', 'existing')"
        " LEFT JOIN bills b ON b.bill_code = s.red_code AND b.bill_no = s.red_no"
        " WHERE s.job_id = $1 AND s.verdict = 'ok' AND s.red_code IS NOT NULL ORDER BY s.row_no",
        job_id,
    )
    taken: set[tuple[str, str]] = set()
    found: list[Reject] = []
    for r in rows:
        key = (r["red_code"], r["red_no"])
        label = f"{key[0]}/{key[1]}"
        if r["original_status"] is None:
            found.append(
                Reject(
                    r["row_no"],
                    cols["red_of"],
                    f"original {label} is neither in the file nor on file",
                )
            )
        elif r["original_status"] != "red_flushed":
            found.append(
                Reject(r["row_no"], cols["red_of"], f"original {label} is not marked red_flushed")
            )
        elif key in taken or r["reds_on_file"]:
            found.append(
                Reject(r["row_no"], cols["red_of"], f"original {label} already has a red bill")
            )
        taken.add(key)
    await _reject(conn, job_id, found)


async def _places(conn: asyncpg.Connection, job_id: int, cols: dict[str, str]) -> None:
    await _reject_sql(
        conn, job_id,
        "SELECT s.row_no,"
        " CASE WHEN u.unit_code IS NULL THEN $2::text ELSE $3::text END,"
        " CASE WHEN u.unit_code IS NULL THEN 'unknown issuing unit ' || left(s.unit_code, 50)"
        " ELSE 'unknown issuing point ' || left(s.place_code, 20) || ' of unit ' || s.unit_code END"
        " FROM history_staging s LEFT JOIN units u ON u.unit_code = s.unit_code"
        " LEFT JOIN issuing_points p ON p.unit_code = s.unit_code AND p.place_code = s.place_code"
        " WHERE s.job_id = $1 AND s.verdict = 'ok' AND p.place_code IS NULL",
        cols["unit_code"], cols["place_code"],
    )  # fmt: skip


async def _block_numbers(conn: asyncpg.Connection, job_id: int, cols: dict[str, str]) -> int:
    """Block every number to import in stock; returns how many runs entered stock.

    Runs of consecutive numbers (per unit, bill code and issuing point) are laid
    over the segments of their bill code: what a segment still holds unused is
    carved out as a used piece (reserve never leases it), what lies below a
    segment's cursor was used before (opening stock) and stays as it is, what
    lies in a voided or returned range refuses its rows, and what lies outside
    every segment enters stock as a granted, used history range.
    """
    runs = await conn.fetch(
        "SELECT unit_code, bill_code, place_code, min(no) AS s, max(no) AS e FROM ("
        "  SELECT unit_code, bill_code, place_code, bill_no::bigint AS no,"
        "  bill_no::bigint - row_number() OVER (PARTITION BY unit_code, bill_code, place_code"
        "    ORDER BY bill_no) AS grp"
        "  FROM history_staging WHERE job_id = $1 AND verdict = 'ok') x"
        " GROUP BY unit_code, bill_code, place_code, grp ORDER BY bill_code, s",
        job_id,
    )
    added = 0
    refused: list[Reject] = []
    for run in runs:
        code, s, e = run["bill_code"], run["s"], run["e"]
        segs = await conn.fetch(
            "SELECT * FROM segments WHERE bill_code = $1 AND start_no <= $3 AND end_no >= $2"
            " ORDER BY start_no FOR UPDATE",
            code,
            s,
            e,
        )
        at = s
        for g in segs:
            a, b = max(s, g["start_no"]), min(e, g["end_no"])
            if at < a:
                added += await _history_range(conn, job_id, run, at, a - 1)
            at = b + 1
            # Voided, returned or on their way back up: not ours to use, then or now.
            if g["status"] in (
                SegmentStatus.VOIDED,
                SegmentStatus.RETURNED,
                SegmentStatus.RETURNING,
            ):
                for r in await conn.fetch(
                    "SELECT row_no FROM history_staging WHERE job_id = $1 AND verdict = 'ok'"
                    " AND bill_code = $2 AND bill_no::bigint BETWEEN $3 AND $4",
                    job_id, code, a, b,
                ):  # fmt: skip
                    why = f"number {code}/{BillNo(a)}..{BillNo(b)} was {g['status']}"
                    refused.append(Reject(r[0], cols["bill_no"], why + " in this system's stock"))
                continue
            free = max(a, g["next_no"])
            if free <= b:
                piece = await carve(
                    conn, g, free, b, status=SegmentStatus(g["status"]),
                    place_code=g["place_code"], note=HISTORY_NOTE,
                )  # fmt: skip
                await conn.execute("UPDATE segments SET next_no = end_no + 1 WHERE id = $1", piece)
        if at <= e:
            added += await _history_range(conn, job_id, run, at, e)
    await _reject(conn, job_id, refused)
    return added


async def _history_range(
    conn: asyncpg.Connection, job_id: int, run: asyncpg.Record, start: int, end: int
) -> int:
    grant_id = f"history-{job_id}-{run['bill_code']}-{start}"
    await conn.execute(
        "INSERT INTO segment_grants (grant_id, unit_code, bill_code, start_no, end_no, source)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        grant_id, run["unit_code"], run["bill_code"], start, end, HISTORY_SOURCE,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO segments (unit_code, place_code, bill_code, start_no, end_no, next_no,"
        " grant_id, note) VALUES ($1, $2, $3, $4, $5::bigint, $5::bigint + 1, $6, $7)",
        run["unit_code"], run["place_code"], run["bill_code"], start, end, grant_id, HISTORY_NOTE,
    )  # fmt: skip
    return 1


async def check_job(pool: asyncpg.Pool, job_id: int, cols: dict[str, str]) -> int:
    """Every row's verdict and the numbers blocked in stock, in one transaction
    under the advisory lock of every unit in the file (issuance of those units
    waits for it). ``cols`` names the column of unit_code, place_code, bill_no,
    bus_no and red_of in the file's format. Returns the ranges added to stock."""
    async with pool.acquire() as conn, conn.transaction():
        units = [
            r[0]
            for r in await conn.fetch(
                "SELECT DISTINCT unit_code FROM history_staging WHERE job_id = $1 ORDER BY 1",
                job_id,
            )
        ]
        for unit in units:
            await lock_unit(conn, unit)
        await _places(conn, job_id, cols)
        await _duplicates_in_file(conn, job_id, cols)
        await _against_bills(conn, job_id, cols)
        await _red_bills(conn, job_id, cols)
        added = await _block_numbers(conn, job_id, cols)
        await conn.execute(
            "UPDATE history_jobs SET phase = 'checked', updated_at = now() WHERE id = $1", job_id
        )
    return added
