"""`ebill backup` and `ebill restore`: logical backups of the embedded default
(or any database the URL names) with the PostgreSQL tools that match it
(storage.backup). Production: pgBackRest with WAL archiving (docs/deploy.md).

The recovery point of a restore is the backup's snapshot time (manifest "at"):
what was committed before it is restored, what came after is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import asyncpg
import typer

from config.settings import Settings, load
from storage import backup as store
from storage.db import EmbeddedPostgres, open_embedded
from storage.syspg import SystemPostgres

__all__ = ["register"]

_DB = typer.Option(
    "--database-url", help="PostgreSQL URL; default EBILL_DATABASE_URL, else the embedded one"
)


@contextlib.asynccontextmanager
async def _target(settings: Settings, given: str) -> AsyncIterator[tuple[str, Path]]:
    """(URL, the bin directory of tools matching its server)."""
    url = given or settings.database_url
    embedded: EmbeddedPostgres | SystemPostgres | None = None
    if url:
        bundled = None
        with contextlib.suppress(ImportError):
            from pgserver import _commands

            bundled = Path(_commands.POSTGRES_BIN_PATH)
        bin_dir = store.newest_bin_dir([settings.pg_bin_dir, bundled])
    else:
        embedded = open_embedded(settings)
        url, bin_dir = embedded.url, embedded.bin_dir
    try:
        yield url, bin_dir
    finally:
        if embedded is not None:
            embedded.cleanup()


def _prune(backup_dir: Path, keep: int) -> list[Path]:
    done = sorted(p.parent for p in backup_dir.glob(f"*/{store.MANIFEST_FILE}"))
    gone = done[: max(0, len(done) - keep)] if keep > 0 else []
    for path in gone:
        shutil.rmtree(path)
    return gone


async def _backup(settings: Settings, given: str, keep: int) -> int:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    dest = settings.backup_dir / f"ebill-{stamp}"
    async with _target(settings, given) as (url, bin_dir):
        try:
            manifest = await store.dump(url, dest, bin_dir)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    f = manifest.figures
    print(
        f"backup {dest} ({manifest.dump_bytes / 2**20:.1f} MiB, sha256 {manifest.dump_sha256[:16]})"
    )
    print(
        f"recovery point {manifest.at.isoformat()}: {f.bills} bills, {f.log_leaves} log leaves, "
        f"{f.segments} segments"
    )
    for path in _prune(settings.backup_dir, keep):
        print(f"removed old backup {path.name}")
    return 0


async def _restore(settings: Settings, source: Path, given: str) -> int:
    manifest = store.read_manifest(source)
    if store.sha256_of(source / store.DUMP_FILE) != manifest.dump_sha256:
        print(f"{source / store.DUMP_FILE} does not match its manifest's sha256", file=sys.stderr)
        return 1
    async with _target(settings, given) as (url, bin_dir):
        conn = await asyncpg.connect(url)
        try:
            tables = await conn.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            )
            if tables:
                print(
                    f"the target database has {tables} tables: restore into an empty database "
                    "(a fresh EBILL_DATA_DIR for the embedded default)",
                    file=sys.stderr,
                )
                return 1
            await asyncio.to_thread(store.restore, url, source, bin_dir)
            restored = await store.figures(conn)
        finally:
            await conn.close()
    expected = manifest.figures
    print(f"restored {source.name}: recovery point {manifest.at.isoformat()}")
    if restored != expected:
        print(f"MISMATCH: backed up {expected}, restored {restored}", file=sys.stderr)
        return 1
    print(
        f"verified: {restored.bills} bills ({restored.unit_signed} unit-signed, "
        f"{restored.fiscal_signed} countersigned), {restored.log_leaves} log leaves, "
        f"stock identity {'holds' if not restored.unbalanced else 'BROKEN'}"
    )
    print(
        "next: `ebill migrate --grant-to <engine role>` (grants are not restored), "
        "`ebill audit verify --fetch-key`, then start the engine"
    )
    return 0 if not restored.unbalanced else 1


def cmd_backup(
    database_url: Annotated[str, _DB] = "",
    keep: Annotated[int, typer.Option(help="backups to keep (0: all)")] = 0,
) -> None:
    """Back the database up (pg_dump, one snapshot) under EBILL_BACKUP_DIR."""
    sys.exit(asyncio.run(_backup(load(), database_url, keep)))


def cmd_restore(
    source: Annotated[Path, typer.Argument(help="a backup directory made by `ebill backup`")],
    database_url: Annotated[str, _DB] = "",
) -> None:
    """Restore a backup into an empty database (the embedded one of a fresh
    EBILL_DATA_DIR by default) and check it against the backup's figures."""
    sys.exit(asyncio.run(_restore(load(), source.resolve(), database_url)))


def register(app: typer.Typer) -> None:
    app.command("backup")(cmd_backup)
    app.command("restore")(cmd_restore)
