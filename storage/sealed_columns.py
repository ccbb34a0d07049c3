"""Sealed columns outside the payer data of bills: identity's secrets and the
history import's staged rows. ``ebill keys reseal`` moves them to the active
key and ``ebill keys status`` counts them with the bills (storage.personal),
so a retired key leaves the ring only once no row of any table names it.

- ``users.totp_sealed``: a user's TOTP seed, bound to the username;
- ``apps.secret_sealed``: an app's shared secret, bound to the app id;
- ``history_staging.request_sealed``/``canonical_sealed``: rows of an import job
  not finished yet, bound to the bill id they will take.

Delivery keeps no sealed column: it opens the bill's request when it sends.
Nothing here changes a value, only the key it is sealed under, so no log leaf
is written (as for the bills' re-seal).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from engine.sealing import KeyRing
from storage.identity import app_aad, totp_aad
from storage.personal import bill_aad

__all__ = ["COLUMNS", "SealedColumn", "key_counts", "reseal"]


@dataclass(frozen=True, slots=True)
class SealedColumn:
    table: str
    column: str
    key: tuple[str, ...]  # the columns that name one row
    reads: tuple[str, ...]  # the columns its additional data is made of
    aad: Callable[[asyncpg.Record], bytes]

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"


COLUMNS: tuple[SealedColumn, ...] = (
    SealedColumn("users", "totp_sealed", ("username",), ("username",), lambda r: totp_aad(r[0])),
    SealedColumn("apps", "secret_sealed", ("app_id",), ("app_id",), lambda r: app_aad(r[0])),
    SealedColumn(
        "history_staging",
        "request_sealed",
        ("job_id", "row_no"),
        ("bill_id",),
        lambda r: bill_aad("request", r[0]),
    ),
    SealedColumn(
        "history_staging",
        "canonical_sealed",
        ("job_id", "row_no"),
        ("bill_id",),
        lambda r: bill_aad("canonical", r[0]),
    ),
)


async def key_counts(pool: asyncpg.Pool) -> dict[str, dict[int, int]]:
    """Rows per key id, per sealed column (an empty value is not counted)."""
    out: dict[str, dict[int, int]] = {}
    for c in COLUMNS:
        rows = await pool.fetch(
            f"SELECT get_byte({c.column}, 1) * 256 + get_byte({c.column}, 2) AS key_id,"
            f" count(*) AS n FROM {c.table} WHERE {c.column} IS NOT NULL GROUP BY 1 ORDER BY 1"
        )
        out[c.name] = {int(r["key_id"]): int(r["n"]) for r in rows}
    return out


async def _reseal_column(pool: asyncpg.Pool, ring: KeyRing, c: SealedColumn, batch: int) -> int:
    active = ring.active.to_bytes(2, "big")
    keys = ", ".join(c.key)
    n = len(c.reads)
    where = " AND ".join(f"{k} = ${i + 2}" for i, k in enumerate(c.key))
    done = 0
    while True:
        # One transaction per batch, the rows locked: an engine sealing a new
        # secret at the same time waits for it, and an interrupted re-seal is
        # resumed by running it again. A re-sealed row leaves the selection.
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT {', '.join(c.reads)}, {c.column}, {keys} FROM {c.table}"
                f" WHERE substring({c.column} FROM 2 FOR 2) <> $1"
                f" ORDER BY {keys} LIMIT $2 FOR UPDATE",
                active,
                batch,
            )
            if not rows:
                return done
            await conn.executemany(
                f"UPDATE {c.table} SET {c.column} = $1 WHERE {where}",
                [
                    (ring.seal(ring.open(bytes(r[n]), c.aad(r)), c.aad(r)), *r[n + 1 :])
                    for r in rows
                ],
            )
        done += len(rows)


async def reseal(pool: asyncpg.Pool, ring: KeyRing, *, batch: int = 500) -> dict[str, int]:
    """Every value of COLUMNS under a key other than the active one sealed again
    under the active key; how many, per column."""
    return {c.name: await _reseal_column(pool, ring, c, batch) for c in COLUMNS}
