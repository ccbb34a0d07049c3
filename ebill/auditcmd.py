"""`ebill audit verify` and `ebill audit export`: the transparency log offline.

``verify`` reads a database (``--database-url``, default EBILL_DATABASE_URL or
the embedded one) or an exported JSON-lines log (``--file``), checks every
leaf and signed head, and names the first leaf that was removed, altered or
reordered; it exits 1 when it finds one. Give the signing server's public key
(``--public-key`` hex, or ``--fetch-key`` to ask the signing server) so that
the heads are checked against a key you trust rather than the one stored
beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from clients.signer import SignerClient
from config.settings import Settings
from engine.audit import Report
from engine.sm2 import VerifyingKey
from storage.db import EmbeddedPostgres, connect_pool
from usecases.translog import export_log, verify_database, verify_lines

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="verify or export the transparency log offline")
    cmds = audit.add_subparsers(dest="audit_cmd", required=True)
    verify = cmds.add_parser("verify", help="check every leaf and signed head")
    verify.add_argument("--database-url", default="", help="default: EBILL_DATABASE_URL")
    verify.add_argument("--file", default="", help="an exported log (JSON lines) instead")
    verify.add_argument("--public-key", default="", help="the signer's key, hex 04||x||y")
    verify.add_argument(
        "--fetch-key", action="store_true", help="ask the signing server for its key"
    )
    export = cmds.add_parser("export", help="write the log as JSON lines")
    export.add_argument("--database-url", default="", help="default: EBILL_DATABASE_URL")
    export.add_argument("-o", "--output", default="-", help="file, or - for stdout")


async def _url(settings: Settings, given: str) -> tuple[str, EmbeddedPostgres | None]:
    url = given or settings.database_url
    if url:
        return url, None
    embedded = EmbeddedPostgres(settings.data_dir)
    return embedded.url, embedded


async def _key(settings: Settings, args: argparse.Namespace) -> VerifyingKey | None:
    if args.public_key:
        return VerifyingKey(bytes.fromhex(args.public_key))
    if args.fetch_key:
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


async def _verify(settings: Settings, args: argparse.Namespace) -> int:
    key = await _key(settings, args)
    if args.file:
        with Path(args.file).open(encoding="utf-8") as f:
            return _print(verify_lines(f, key))
    url, embedded = await _url(settings, args.database_url)
    pool = await connect_pool(url, size=1, migrate=False)
    try:
        async with pool.acquire() as conn:
            return _print(await verify_database(conn, key))
    finally:
        await pool.close()
        if embedded is not None:
            embedded.cleanup()


async def _export(settings: Settings, args: argparse.Namespace) -> int:
    url, embedded = await _url(settings, args.database_url)
    pool = await connect_pool(url, size=1, migrate=False)
    try:
        async with pool.acquire() as conn:
            lines = await export_log(conn)
    finally:
        await pool.close()
        if embedded is not None:
            embedded.cleanup()
    text = "".join(line + "\n" for line in lines)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0


def run(settings: Settings, args: argparse.Namespace) -> None:
    cmd = _verify if args.audit_cmd == "verify" else _export
    sys.exit(asyncio.run(cmd(settings, args)))
