"""Storage tests: real PostgreSQL, no Ray, no sandboxes, no engine.

One server per session (embedded, or EBILL_TEST_DATABASE_URL), migrated once.
Each test gets ``db``: a pool-shaped view of ONE connection inside a transaction
that is rolled back after the test, so tests cannot see each other's rows and
need no clean-up. Storage code that opens its own ``transaction()`` gets a
savepoint (asyncpg nests them), ``acquire()`` yields the same connection, and
advisory transaction locks are held until the rollback.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import asyncpg
import pytest
import pytest_asyncio

from storage.db import EmbeddedPostgres, connect_pool

__all__ = ["OneConnection"]


class OneConnection:
    """What storage functions call on an ``asyncpg.Pool``, served by one connection.

    Only one operation at a time, as on any asyncpg connection: storage code that
    runs queries concurrently on one pool cannot be tested this way.
    """

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    @asynccontextmanager
    async def acquire(self, *, timeout: float | None = None) -> AsyncIterator[asyncpg.Connection]:
        yield self._conn

    def transaction(self, **kw: Any) -> Any:
        return self._conn.transaction(**kw)

    async def fetch(self, query: str, *args: Any, **kw: Any) -> list[asyncpg.Record]:
        return cast(list[asyncpg.Record], await self._conn.fetch(query, *args, **kw))

    async def fetchrow(self, query: str, *args: Any, **kw: Any) -> asyncpg.Record | None:
        return cast(asyncpg.Record | None, await self._conn.fetchrow(query, *args, **kw))

    async def fetchval(self, query: str, *args: Any, **kw: Any) -> Any:
        return await self._conn.fetchval(query, *args, **kw)

    async def execute(self, query: str, *args: Any, **kw: Any) -> str:
        return cast(str, await self._conn.execute(query, *args, **kw))

    async def executemany(self, command: str, args: Any, **kw: Any) -> None:
        await self._conn.executemany(command, args, **kw)

    async def copy_records_to_table(self, table_name: str, **kw: Any) -> str:
        return cast(str, await self._conn.copy_records_to_table(table_name, **kw))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = os.environ.get("EBILL_TEST_DATABASE_URL", "")
    if url:
        yield url
        return
    data_dir = Path(tempfile.mkdtemp(prefix="ebill-storage-test-"))
    server = EmbeddedPostgres(data_dir)
    try:
        yield server.url
    finally:
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest_asyncio.fixture(scope="session")
async def session_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    # Migrated once; every test then works inside a transaction of its own.
    pool = await connect_pool(database_url, size=2, migrate=True)
    yield pool
    await pool.close()


@pytest_asyncio.fixture
async def db(session_pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """A pool for storage functions whose every write is rolled back after the test."""
    async with session_pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            # Typed as the pool storage functions take: OneConnection has what they call.
            yield cast(asyncpg.Pool, OneConnection(conn))
        finally:
            await tx.rollback()
