"""Personal data at rest: sealing rows left in plaintext, moving sealed values to
the active key, and what each key still seals (docs/personal-data.md).

The engine's start-up calls :func:`seal_plaintext` before serving; ``ebill keys``
calls :func:`reseal` and :func:`key_status` after a rotation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import asyncpg

from engine.sealing import KeyRing
from storage import personal as store
from storage import sealed_columns
from storage.personal import ResealReport

__all__ = ["ResealReport", "key_status", "reseal", "seal_plaintext"]


async def seal_plaintext(pool: asyncpg.Pool, ring: KeyRing) -> ResealReport:
    """Seal the rows a database from before migration 0010 holds in plaintext
    (one index probe when there are none; storage logs what it sealed)."""
    return await store.reseal(pool, ring, rekey=False)


async def reseal(
    pool: asyncpg.Pool,
    ring: KeyRing,
    *,
    reindex: bool = False,
    batch: int = 500,
    progress: Callable[[int], None] = lambda n: None,
) -> ResealReport:
    """Every sealed value under the active key (and every plaintext row sealed):
    the bills' payer data, identity's secrets and staged imports; with
    ``reindex`` every search digest recomputed under the index key."""
    report = await store.reseal(pool, ring, batch=batch, reindex=reindex, progress=progress)
    return replace(report, others=await sealed_columns.reseal(pool, ring, batch=batch))


async def key_status(pool: asyncpg.Pool) -> dict[str, dict[int, int]]:
    """Rows per key id and table or sealed column (0: not yet sealed)."""
    return {**await store.key_counts(pool), **await sealed_columns.key_counts(pool)}
