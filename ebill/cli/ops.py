"""`ebill migrate | inspect | backup | restore`: operating the engine.

``migrate`` is a step of its own so the engine can run as a database role that
cannot change tables (EBILL_MIGRATE_ON_START=false, docs/deploy.md): run it as
the schema owner before starting a new version; ``--grant-to`` gives the
engine's role the rights it needs on every table, the new ones included.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Annotated

import typer

from config.settings import Settings, load
from storage.db import (
    EmbeddedPostgres,
    apply_migrations,
    connect_pool,
    grant_runtime,
    open_embedded,
    pending_migrations,
)

__all__ = ["register"]

_DB = typer.Option(
    "--database-url", help="PostgreSQL URL; default EBILL_DATABASE_URL, else the embedded one"
)


@contextlib.asynccontextmanager
async def database_url(settings: Settings, given: str) -> AsyncIterator[str]:
    """The URL to work on: ``given``, EBILL_DATABASE_URL, or the embedded
    server (started for the command and stopped after it)."""
    url = given or settings.database_url
    embedded: EmbeddedPostgres | None = None
    if not url:
        embedded = open_embedded(settings)
        url = embedded.url
    try:
        yield url
    finally:
        if embedded is not None:
            embedded.cleanup()


async def _migrate(settings: Settings, given: str, grant_to: str, status: bool) -> int:
    async with database_url(settings, given) as url:
        pool = await connect_pool(url, size=1, migrate=False, role="migrate")
        try:
            async with pool.acquire() as conn:
                if status:
                    pending = await pending_migrations(conn)
                    for name in pending:
                        print(f"pending {name}")
                    print(f"{len(pending)} migration(s) pending")
                    return 1 if pending else 0
                applied = await apply_migrations(conn)
                for name in applied:
                    print(f"applied {name}")
                print(f"schema up to date ({len(applied)} applied now)")
                if grant_to:
                    await grant_runtime(conn, grant_to)
                    print(f"granted row access (no DDL) to role {grant_to}")
        finally:
            await pool.close()
    return 0


def cmd_migrate(
    database_url: Annotated[str, _DB] = "",
    grant_to: Annotated[
        str, typer.Option("--grant-to", help="role the engine runs as: gets row rights, no DDL")
    ] = "",
    status: Annotated[
        bool, typer.Option("--status", help="list pending migrations; exit 1 if any")
    ] = False,
) -> None:
    """Apply the database migrations (as the schema owner), before starting the engine."""
    sys.exit(asyncio.run(_migrate(load(), database_url, grant_to, status)))


def register(app: typer.Typer) -> None:
    app.command("migrate")(cmd_migrate)
