"""History import in PostgreSQL: jobs, staging by COPY, set-based checks, batches.

A job moves through phases (history_jobs.phase), each step committing its own
checkpoint, so an interrupted import resumes where it stopped:

- staging: rows checked in Python are COPYed into history_staging with the
  file row they came from (rows_staged = the last file row in);
- check: one transaction under the units' advisory locks (the reserve
  transaction's lock) gives every row a verdict (ok, duplicate, existing,
  rejected) and blocks the numbers in stock: numbers a segment of ours still
  holds unused are carved out of it as a used piece, numbers outside every
  segment enter stock as a granted-and-used history range;
- importing: batches of rows in file order (red bills after the others, so
  that their original is on file), each one INSERT ... SELECT of bills, charge
  items, pay channels, history_bills and transparency-log entries plus the
  checkpoint, in one transaction: a bill is imported whole or not at all.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from engine.canonical import CANONICAL_VERSION
from storage.history_checks import HISTORY_NOTE, Reject, check_job

__all__ = [
    "HISTORY_NOTE",
    "STAGING_COLUMNS",
    "Job",
    "Reject",
    "check_job",
    "copy_text",
    "counts",
    "finish_job",
    "import_batch",
    "new_bill_ids",
    "open_job",
    "rejects",
    "stage_rows",
]

# The transparency log's op of an imported bill.
LOG_OP = "bill.history_import"

STAGING_COLUMNS = (
    "job_id", "row_no", "bill_id", "unit_code", "bus_no", "bus_type", "bill_kind",
    "place_code", "bill_code", "bill_no", "check_code", "status", "total_fen",
    "payer_id_card_hash", "payer_tel_hash", "payer_card_hash", "cashier", "bus_time",
    "issued_at", "request_sealed", "canonical_sealed", "digest", "red_code", "red_no",
    "item_sort", "item_code", "item_name", "item_amt", "item_self", "channel_code",
    "channel_amt", "unit_signature", "fiscal_signature",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    phase: str
    fmt: str
    rows_staged: int
    done_row: int
    done_red: int
    imported: int


def _job(r: asyncpg.Record) -> Job:
    return Job(
        r["id"], r["phase"], r["fmt"], r["rows_staged"], r["done_row"], r["done_red"],
        r["imported"],
    )  # fmt: skip


async def open_job(
    pool: asyncpg.Pool, *, sha256: str, file_name: str, fmt: str, operator: str, again: bool
) -> Job:
    """The unfinished job of this file (to resume), else its finished job, or a
    new one. A finished file gets a new job only when ``again`` (its rows are
    then all found imported already)."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT * FROM history_jobs WHERE file_sha256 = $1 ORDER BY id DESC FOR UPDATE",
            sha256,
        )
        done = next((_job(r) for r in rows if r["phase"] == "done"), None)
        open_ = next((_job(r) for r in rows if r["phase"] != "done"), None)
        if open_ is not None:
            return open_
        if done is not None and not again:
            return done
        r = await conn.fetchrow(
            "INSERT INTO history_jobs (file_sha256, file_name, fmt, operator)"
            " VALUES ($1, $2, $3, $4) RETURNING *",
            sha256,
            file_name,
            fmt,
            operator,
        )
        assert r is not None
        return _job(r)


# COPY text format: backslash, tab, newline and carriage return escaped.
_SPECIAL = re.compile(r"[\\\t\n\r]")


def _escape(text: str) -> str:
    # Most values hold none of the four: one C-level search instead of four passes.
    if _SPECIAL.search(text) is None:
        return text
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _element(v: Any) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(v)


def _json(v: dict[str, Any]) -> str:
    return _escape(json.dumps(v, ensure_ascii=False, separators=(",", ":")))


def _array(v: list[Any]) -> str:
    return _escape("{" + ",".join(_element(e) for e in v) + "}")


# By exact type: one dict lookup per value instead of a chain of isinstance.
_FIELD: dict[type, Any] = {
    type(None): lambda v: "\\N",
    str: _escape,
    bool: lambda v: "t" if v else "f",
    int: str,
    bytes: lambda v: "\\\\x" + v.hex(),
    datetime: datetime.isoformat,
    list: _array,
    dict: _json,
}


def _field(v: Any) -> str:
    encode = _FIELD.get(type(v))
    if encode is None:
        raise TypeError(f"cannot stage a {type(v).__name__}")
    return str(encode(v))


def copy_text(job_id: int, rows: Sequence[tuple[Any, ...]]) -> bytes:
    """Rows (STAGING_COLUMNS after job_id) in COPY text format for :func:`stage_rows`.

    Pure and picklable-cheap: worker processes encode their rows, so the process
    that talks to the database only streams bytes (unpickling the row values
    cost more than checking them took on two cores).
    """
    prefix = f"{job_id}\t"
    return "".join(prefix + "\t".join(_field(v) for v in row) + "\n" for row in rows).encode(
        "utf-8"
    )


async def new_bill_ids(pool: asyncpg.Pool, n: int) -> list[int]:
    """``n`` bill ids from the bills' sequence (the sealed data is bound to the id)."""
    rows = await pool.fetch("SELECT nextval('bills_id_seq') FROM generate_series(1, $1)", n)
    return [int(r[0]) for r in rows]


async def stage_rows(
    pool: asyncpg.Pool, job_id: int, data: bytes, refused: Sequence[Reject], last_row: int
) -> None:
    """Staged rows (``data`` from :func:`copy_text`) and refused rows of file
    rows up to ``last_row``, with the checkpoint, in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        if data:
            await conn.copy_to_table(
                "history_staging",
                source=io.BytesIO(data),
                columns=STAGING_COLUMNS,
                format="text",
            )
        if refused:
            await conn.executemany(
                "INSERT INTO history_rejects (job_id, row_no, col, reason) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT DO NOTHING",
                [(job_id, r.row_no, r.column, r.reason) for r in refused],
            )
        await conn.execute(
            "UPDATE history_jobs SET rows_staged = $2, updated_at = now() WHERE id = $1",
            job_id,
            last_row,
        )


# -- the batches ------------------------------------------------------------------

_IMPORT = (
    "WITH s AS MATERIALIZED ("
    "  SELECT * FROM history_staging WHERE job_id = $1 AND verdict = 'ok'"
    "  AND (red_code IS NOT NULL) = $2 AND row_no > $3 ORDER BY row_no LIMIT $4),"
    " ins AS (INSERT INTO bills (id, unit_code, bus_no, bus_type, bill_kind, place_code,"
    "  bill_code, bill_no, check_code, segment_id, status, total_fen, payer_id_card_hash,"
    "  payer_tel_hash, payer_card_hash, cashier, bus_time, issued_at, request_sealed,"
    "  canonical_sealed, canonical_version, origin, operator, archived_at, red_of)"
    "  SELECT s.bill_id, s.unit_code, s.bus_no, s.bus_type, s.bill_kind, s.place_code,"
    "  s.bill_code, s.bill_no, s.check_code,"
    # The history piece holding the number, if any (else NULL: used before go-live).
    "  (SELECT h.id FROM (SELECT g.id, g.end_no FROM segments g WHERE g.note = 'history'"
    "    AND g.bill_code = s.bill_code AND g.start_no <= s.bill_no::bigint"
    "    ORDER BY g.start_no DESC LIMIT 1) h WHERE h.end_no >= s.bill_no::bigint),"
    "  s.status, s.total_fen, s.payer_id_card_hash, s.payer_tel_hash, s.payer_card_hash,"
    "  s.cashier, s.bus_time, s.issued_at, s.request_sealed, s.canonical_sealed, $5,"
    "  'history', $6, now(),"
    "  o.id"
    "  FROM s LEFT JOIN bills o ON o.bill_code = s.red_code AND o.bill_no = s.red_no),"
    " items AS (INSERT INTO bill_charge_items (bill_id, sort_no, charge_code, charge_name,"
    "  amt_fen, self_amt_fen) SELECT s.bill_id, i.* FROM s,"
    "  unnest(s.item_sort, s.item_code, s.item_name, s.item_amt, s.item_self) AS i),"
    " channels AS (INSERT INTO bill_pay_channels (bill_id, pay_channel_code, amount_fen)"
    "  SELECT s.bill_id, c.* FROM s, unnest(s.channel_code, s.channel_amt) AS c),"
    " hist AS (INSERT INTO history_bills (bill_id, job_id, row_no, digest, unit_signature,"
    "  fiscal_signature) SELECT bill_id, $1, row_no, digest, unit_signature, fiscal_signature"
    "  FROM s),"
    # The transparency log: one leaf per bill, its content the canonical document
    # (the set-based form of storage.translog.append_entries, same columns).
    " log AS (INSERT INTO log_entries (op, principal, unit_code, ref, occurred_at,"
    "  content_digest, bill_id) SELECT $7, $6, unit_code, bill_code || '/' || bill_no, now(),"
    "  digest, bill_id FROM s)"
    " SELECT count(*) AS n, coalesce(max(row_no), 0) AS last FROM s"
)


async def import_batch(
    pool: asyncpg.Pool, job_id: int, *, red: bool, after: int, limit: int, operator: str
) -> tuple[int, int]:
    """Import the next ``limit`` ok rows after file row ``after`` (red bills when
    ``red``) with the checkpoint, in one transaction. Returns (bills, last row)."""
    async with pool.acquire() as conn, conn.transaction():
        r = await conn.fetchrow(
            _IMPORT, job_id, red, after, limit, CANONICAL_VERSION, operator, LOG_OP
        )
        assert r is not None
        n, last = int(r["n"]), int(r["last"])
        if n:
            await conn.execute(
                "UPDATE history_jobs SET phase = 'importing', imported = imported + $2,"
                f" {'done_red' if red else 'done_row'} = $3, updated_at = now() WHERE id = $1",
                job_id,
                n,
                last,
            )
    return n, last


async def finish_job(pool: asyncpg.Pool, job_id: int) -> None:
    """Done: the staged rows go (the rejects and history_bills stay)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE history_jobs SET phase = 'done', finished_at = now(), updated_at = now()"
            " WHERE id = $1",
            job_id,
        )
        await conn.execute("DELETE FROM history_staging WHERE job_id = $1", job_id)


async def counts(pool: asyncpg.Pool, job_id: int) -> dict[str, int]:
    """Staged rows by verdict (before the job finishes)."""
    rows = await pool.fetch(
        "SELECT verdict, count(*) FROM history_staging WHERE job_id = $1 GROUP BY 1", job_id
    )
    return {r[0]: int(r[1]) for r in rows}


async def rejects(pool: asyncpg.Pool, job_id: int) -> list[Reject]:
    rows = await pool.fetch(
        "SELECT row_no, col, reason FROM history_rejects WHERE job_id = $1 ORDER BY row_no, col",
        job_id,
    )
    return [Reject(int(r[0]), r[1], r[2]) for r in rows]
