"""`ebill audit verify` and `ebill audit export`: the transparency log offline.

``verify`` reads a database (``--database-url``, default EBILL_DATABASE_URL or
the embedded one) or an exported JSON-lines log (``--file``), checks every
leaf and signed head, and names the first leaf that was removed, altered or
reordered; it exits 1 when it finds one. Give the signing server's public key
(``--public-key`` hex, or ``--fetch-key`` to ask the signing server) so that
the heads are checked against a key you trust rather than the one stored
beside them. With the data key file (EBILL_DATA_KEY_FILE) present, each bill's
sealed canonical bytes are opened and checked against its issuance leaf too.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from clients.signer import SignerClient
from config import keys
from config.settings import Settings, load
from engine.audit import Report
from engine.sm2 import VerifyingKey
from storage.db import EmbeddedPostgres, connect_pool
from usecases.translog import export_log, verify_database, verify_lines

__all__ = ["app"]

app = typer.Typer(help="Verify or export the transparency log offline.", no_args_is_help=True)


async def _url(settings: Settings, given: str) -> tuple[str, EmbeddedPostgres | None]:
    url = given or settings.database_url
    if url:
        return url, None
    embedded = EmbeddedPostgres(settings.data_dir)
    return embedded.url, embedded


async def _key(settings: Settings, public_key: str, fetch_key: bool) -> VerifyingKey | None:
    if public_key:
        return VerifyingKey(bytes.fromhex(public_key))
    if fetch_key:
        # As the engine would: its certificate on the signer hop.
        tls = settings.hop_tls(settings.signer_tls_dir)
        async with SignerClient(settings.signer_addr, settings.signer_key_id, tls=tls) as signer:
            return await signer.public_key()
    return None


def _print(report: Report) -> int:
    for note in report.notes:
        print(f"note: {note}")
    first = report.first
    if first is None:
        print(f"OK: {report.leaves} leaves, {report.heads_checked} signed heads verified")
        return 0
    print(f"TAMPERED: first bad leaf {first.index}: {first.message}")
    for f in report.findings[:20]:
        print(f"  [{f.kind}] {f.message}")
    if len(report.findings) > 20:
        print(f"  ... {len(report.findings) - 20} more")
    return 1


async def _verify(
    settings: Settings, database_url: str, file: str, public_key: str, fetch_key: bool
) -> int:
    key = await _key(settings, public_key, fetch_key)
    if file:
        with Path(file).open(encoding="utf-8") as f:
            return _print(verify_lines(f, key))
    url, embedded = await _url(settings, database_url)
    pool = await connect_pool(url, size=1, migrate=False)
    try:
        async with pool.acquire() as conn:
            # Read, never made: a verifier has no business creating keys.
            ring = keys.read(settings.data_key_file) if settings.data_key_file.exists() else None
            return _print(await verify_database(conn, key, ring))
    finally:
        await pool.close()
        if embedded is not None:
            embedded.cleanup()


async def _export(settings: Settings, database_url: str, output: str) -> int:
    url, embedded = await _url(settings, database_url)
    pool = await connect_pool(url, size=1, migrate=False)
    try:
        async with pool.acquire() as conn:
            lines = await export_log(conn)
    finally:
        await pool.close()
        if embedded is not None:
            embedded.cleanup()
    text = "".join(line + "\n" for line in lines)
    if output == "-":
        sys.stdout.write(text)
    else:
        Path(output).write_text(text, encoding="utf-8")
    return 0


_DB = typer.Option("--database-url", help="default: EBILL_DATABASE_URL or the embedded one")


@app.command("verify")
def verify(
    database_url: Annotated[str, _DB] = "",
    file: Annotated[str, typer.Option(help="an exported log (JSON lines) instead")] = "",
    public_key: Annotated[str, typer.Option(help="the signer's key, hex 04||x||y")] = "",
    fetch_key: Annotated[bool, typer.Option(help="ask the signing server for its key")] = False,
) -> None:
    """Check every leaf and signed head; exit 1 naming the first bad leaf."""
    sys.exit(asyncio.run(_verify(load(), database_url, file, public_key, fetch_key)))


@app.command("export")
def export(
    database_url: Annotated[str, _DB] = "",
    output: Annotated[str, typer.Option("-o", "--output", help="file, or - for stdout")] = "-",
) -> None:
    """Write the log as JSON lines."""
    sys.exit(asyncio.run(_export(load(), database_url, output)))
