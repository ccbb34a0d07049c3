"""Logical backups of the database with PostgreSQL's own tools (pg_dump in the
custom format, pg_restore), as `ebill backup` and `ebill restore` run them for the
embedded default. Production on an external PostgreSQL uses pgBackRest with
WAL archiving instead (point-in-time recovery; docs/deploy.md).

The dump reads one exported snapshot, and the figures written beside it (bills,
signatures, transparency-log leaves, stock identity) are counted in that same
snapshot: a restore is checked against exactly what was backed up, and the
recovery point is the snapshot's time.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from storage.stock.segments import identity
from storage.syspg import find_bin_dirs, server_version

__all__ = [
    "DUMP_FILE",
    "MANIFEST_FILE",
    "Figures",
    "Manifest",
    "dump",
    "figures",
    "newest_bin_dir",
    "read_manifest",
    "restore",
    "sha256_of",
]

DUMP_FILE = "db.dump"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True, slots=True)
class Figures:
    """What a restore must reproduce exactly."""

    bills: int
    unit_signed: int
    fiscal_signed: int
    max_bill_id: int
    log_leaves: int
    segments: int
    # Bill codes whose stock identity (granted = issued + available + voided +
    # returned) does not hold; a healthy database has none.
    unbalanced: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Manifest:
    at: datetime
    database: str
    server_version: str
    dump_sha256: str
    dump_bytes: int
    figures: Figures

    def to_json(self) -> str:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        data["figures"]["unbalanced"] = list(self.figures.unbalanced)
        return json.dumps(data, indent=1)


def read_manifest(directory: Path) -> Manifest:
    data: dict[str, Any] = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    fig = data["figures"]
    fig["unbalanced"] = tuple(fig["unbalanced"])
    return Manifest(
        at=datetime.fromisoformat(data["at"]),
        database=data["database"],
        server_version=data["server_version"],
        dump_sha256=data["dump_sha256"],
        dump_bytes=int(data["dump_bytes"]),
        figures=Figures(**fig),
    )


async def figures(conn: asyncpg.Connection) -> Figures:
    """The figures of the database as ``conn`` sees it (its snapshot)."""
    row = await conn.fetchrow(
        "SELECT count(*) AS bills, count(unit_signature) AS unit_signed,"
        " count(fiscal_signature) AS fiscal_signed, coalesce(max(id), 0) AS max_id FROM bills"
    )
    assert row is not None
    leaves = await conn.fetchval(
        "SELECT CASE WHEN to_regclass('log_entries') IS NULL THEN 0"
        " ELSE (SELECT count(*) FROM log_entries) END"
    )
    segments = await conn.fetchval("SELECT count(*) FROM segments")
    units = [r["unit_code"] for r in await conn.fetch("SELECT unit_code FROM units")]
    unbalanced: list[str] = []
    for unit in units:
        # identity() takes a pool; a connection answers the same calls.
        for line in await identity(conn, unit):
            if not line.balanced:
                unbalanced.append(f"{unit}/{line.bill_code}")
    return Figures(
        bills=int(row["bills"]),
        unit_signed=int(row["unit_signed"]),
        fiscal_signed=int(row["fiscal_signed"]),
        max_bill_id=int(row["max_id"]),
        log_leaves=int(leaves),
        segments=int(segments),
        unbalanced=tuple(unbalanced),
    )


def newest_bin_dir(candidates: Iterable[Path | None]) -> Path:
    """The directory with the newest pg_dump among ``candidates`` and the system's
    (pg_dump reads servers of its own version and older)."""
    dirs = [d for d in candidates if d is not None and (d / "pg_dump").exists()]
    dirs += [d for d in find_bin_dirs() if (d / "pg_dump").exists()]
    on_path = shutil.which("pg_dump")
    if on_path:
        dirs.append(Path(on_path).parent)
    if not dirs:
        raise SystemExit("no pg_dump found: install postgresql-client or set EBILL_PG_BIN_DIR")
    return max(dirs, key=lambda d: server_version(d, "pg_dump"))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _run(cmd: list[str]) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=6 * 3600)
    if out.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed: {out.stderr.strip()[-1500:]}")


async def dump(url: str, dest: Path, bin_dir: Path) -> Manifest:
    """Dump the database at ``url`` into ``dest`` (a new directory): db.dump and
    manifest.json, the figures counted in the dump's own snapshot."""
    dest.mkdir(parents=True)
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            at = await conn.fetchval("SELECT now()")
            database = await conn.fetchval("SELECT current_database()")
            version = await conn.fetchval("SHOW server_version")
            counted = await figures(conn)
            # The transaction stays open while pg_dump reads its snapshot.
            _run(
                [
                    str(bin_dir / "pg_dump"),
                    "--format=custom",
                    f"--snapshot={snapshot}",
                    "--no-password",
                    f"--file={dest / DUMP_FILE}",
                    f"--dbname={url}",
                ]
            )
    finally:
        await conn.close()
    path = dest / DUMP_FILE
    manifest = Manifest(at, database, version, sha256_of(path), path.stat().st_size, counted)
    # The manifest last: a backup without one did not finish (the inspection
    # and restore ignore it).
    (dest / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
    return manifest


def restore(url: str, src: Path, bin_dir: Path) -> None:
    """Restore the dump in ``src`` into the (empty) database at ``url``. Owners
    and grants are not restored: the target's roles are its own (`ebill migrate
    --grant-to` gives the engine's role its rights again)."""
    _run(
        [
            str(bin_dir / "pg_restore"),
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--no-password",
            f"--dbname={url}",
            str(src / DUMP_FILE),
        ]
    )
