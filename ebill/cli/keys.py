"""`ebill keys rotate | reseal | status`: the data key ring of personal data at rest.

``rotate`` adds a sealing key to EBILL_DATA_KEY_FILE and makes it the active one
(``--index`` replaces the search index key instead); restart the engine, then
``reseal`` moves every sealed value to the active key (the bills' payer data,
identity's app secrets and TOTP seeds, staged history imports; with
``--reindex`` it also recomputes the search digests); ``status`` shows how many rows each key still
seals, so a retired key can leave the file once none does.
docs/personal-data.md describes the whole procedure.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from typing import Annotated

import asyncpg
import typer
from rich.progress import Progress

from config import keys
from config.settings import Settings, load
from engine.sealing import INDEX_KEY_SIZE, KeyRing
from storage.db import EmbeddedPostgres, connect_pool
from usecases.personal import key_status, reseal

__all__ = ["app"]

app = typer.Typer(help="Rotate the data keys and re-seal personal data.", no_args_is_help=True)

DatabaseUrl = Annotated[
    str, typer.Option(help="PostgreSQL URL; default EBILL_DATABASE_URL, else the embedded one")
]


def _ring(settings: Settings) -> KeyRing:
    return keys.load(settings)


async def _connect(settings: Settings, given: str) -> tuple[asyncpg.Pool, EmbeddedPostgres | None]:
    url = given or settings.database_url
    embedded = None
    if not url:
        embedded = EmbeddedPostgres(settings.data_dir)
        url = embedded.url
    # Migrated: a re-seal of a database from before migration 0010 needs its columns.
    return await connect_pool(url, size=2, migrate=True), embedded


@app.command("rotate")
def rotate(
    index: Annotated[
        bool,
        typer.Option(
            "--index",
            help="replace the search index key instead (then run `ebill keys reseal --reindex`)",
        ),
    ] = False,
) -> None:
    """Add a sealing key and make it active (or replace the index key)."""
    settings = load()
    ring = _ring(settings)
    if index:
        new = replace(ring, index_key=os.urandom(INDEX_KEY_SIZE))
        keys.write(settings.data_key_file, new)
        print(f"{settings.data_key_file}: new index key. Restart the engine, then run")
        print("`ebill keys reseal --reindex`; searches by payer miss until it has run.")
        return
    new = ring.rotated()
    keys.write(settings.data_key_file, new)
    print(f"{settings.data_key_file}: key {new.active} added and active ({sorted(new.keys)}).")
    print("Restart the engine so that it seals with it, then run `ebill keys reseal`.")


async def _reseal(settings: Settings, database_url: str, reindex: bool, batch: int) -> None:
    ring = _ring(settings)
    pool, embedded = await _connect(settings, database_url)
    try:
        with Progress() as bar:
            task = bar.add_task(f"re-sealing under key {ring.active}", total=None)
            report = await reseal(
                pool,
                ring,
                reindex=reindex,
                batch=batch,
                progress=lambda n: bar.advance(task, n),
            )
        print(
            f"bills: {report.plain_sealed} sealed from plaintext, {report.rekeyed} re-sealed; "
            f"offline bills: {report.offline_plain_sealed} sealed from plaintext, "
            f"{report.offline_rekeyed} re-sealed; active key {ring.active}"
        )
        others = ", ".join(f"{name}: {n}" for name, n in report.others.items())
        print(f"other sealed columns re-sealed: {others}")
        await _print_status(pool, ring)
    finally:
        await pool.close()
        if embedded is not None:
            embedded.cleanup()


async def _print_status(pool: asyncpg.Pool, ring: KeyRing) -> None:
    counts = await key_status(pool)
    print(f"key ring: keys {sorted(ring.keys)}, active {ring.active}")
    for table, by_key in counts.items():
        parts = [f"{'plaintext' if k == 0 else f'key {k}'}: {n}" for k, n in by_key.items()]
        print(f"  {table}: {', '.join(parts) or 'no rows'}")


@app.command("reseal")
def reseal_cmd(
    database_url: DatabaseUrl = "",
    reindex: Annotated[
        bool, typer.Option(help="reseal every row and recompute every search digest")
    ] = False,
    batch: Annotated[int, typer.Option(help="rows per transaction")] = 500,
) -> None:
    """Seal every value under the active key (and any row still in plaintext)."""
    asyncio.run(_reseal(load(), database_url, reindex, batch))


async def _status(settings: Settings, database_url: str) -> None:
    ring = _ring(settings)
    pool, embedded = await _connect(settings, database_url)
    try:
        await _print_status(pool, ring)
    finally:
        await pool.close()
        if embedded is not None:
            embedded.cleanup()


@app.command("status")
def status(database_url: DatabaseUrl = "") -> None:
    """How many rows each key seals (a key no row names may leave the file)."""
    asyncio.run(_status(load(), database_url))
