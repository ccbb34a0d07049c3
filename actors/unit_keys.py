"""Each unit's signing keys as the pipeline needs them: the key id its active
certificate names (the unit-sign stage signs with it) and the public keys of all
its certificates (the countersign stage checks a unit signature the platform
returns against them: a bill resumed after a rotation was signed under the old
one). Cached per unit by its catalogue version: one indexed read per batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

import asyncpg

from config.tuning import DB_RETRY_FIRST_DELAY_S
from engine.sm2 import VerifyingKey
from storage.catalog import unit_versions
from storage.catalog.certs import certificates
from storage.db import connect_pool

__all__ = ["UnitKeys"]

log = logging.getLogger(__name__)


class UnitKeys:
    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._pool: asyncpg.Pool | None = None
        # unit -> (version, active key id or '', every certificate's key)
        self._cache: dict[str, tuple[int, str, tuple[VerifyingKey, ...]]] = {}

    async def _fresh(self, units: Collection[str]) -> None:
        if self._pool is None:
            self._pool = await connect_pool(self._url, size=1, migrate=False)
        pool = self._pool
        for attempt in range(3):
            try:
                versions = await unit_versions(pool, units)
                for u, v in versions.items():
                    if self._cache.get(u, (-1, "", ()))[0] == v:
                        continue
                    certs = await certificates(pool, u)
                    active = next((c.key_id for c in certs if c.active), "")
                    keys = tuple(VerifyingKey(c.public_key) for c in certs)
                    self._cache[u] = (v, active, keys)
                return
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
                if attempt == 2:
                    raise
                log.warning("unit keys: database step failed (%s), retrying", exc)
                await asyncio.sleep(DB_RETRY_FIRST_DELAY_S)

    async def key_ids(self, units: Collection[str]) -> dict[str, str]:
        """unit -> the key id of its active certificate ('' for the default key)."""
        await self._fresh(units)
        return {u: self._cache[u][1] for u in units}

    async def public_keys(self, units: Collection[str]) -> dict[str, tuple[VerifyingKey, ...]]:
        """unit -> the keys of all its certificates (empty: it has none)."""
        await self._fresh(units)
        return {u: self._cache[u][2] for u in units}
