"""`ebill migrate | inspect | backup | restore`: operating the engine.

``migrate`` is a step of its own so the engine can run as a database role that
cannot change tables (EBILL_MIGRATE_ON_START=false, docs/deploy.md): run it as
the schema owner before starting a new version; ``--grant-to`` gives the
engine's role the rights it needs on every table, the new ones included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import typer

from config import keys
from config.settings import Settings, load, split_addr
from ebill.cli import backup
from engine.inspection import Report
from ops import metrics
from storage.db import (
    EmbeddedPostgres,
    apply_migrations,
    connect_pool,
    grant_runtime,
    open_embedded,
    pending_migrations,
)
from storage.syspg import SystemPostgres
from usecases.inspection import inspect
from usecases.personal import seal_plaintext

__all__ = ["register"]

_DB = typer.Option(
    "--database-url", help="PostgreSQL URL; default EBILL_DATABASE_URL, else the embedded one"
)


@contextlib.asynccontextmanager
async def database_url(settings: Settings, given: str) -> AsyncIterator[str]:
    """The URL to work on: ``given``, EBILL_DATABASE_URL, or the embedded
    server (started for the command and stopped after it)."""
    url = given or settings.database_url
    embedded: EmbeddedPostgres | SystemPostgres | None = None
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
            # Sealing rows from before migration 0010 ends by validating its
            # constraints (ALTER TABLE): the owner's work, so that the engine's
            # own start-up seal finds nothing to change and needs no DDL.
            await seal_plaintext(pool, keys.load(settings))
            async with pool.acquire() as conn:
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


def _scrape(settings: Settings) -> str | None:
    """The engine's /metrics text, or None when it does not answer."""
    if not settings.metrics_port:
        return None
    host, port = split_addr(settings.metrics_addr)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode("utf-8"))
    except OSError:
        return None


def _previous(out_dir: Path) -> dict[str, float] | None:
    reports = sorted(out_dir.glob("inspection-*.json"))
    if not reports:
        return None
    try:
        carry = json.loads(reports[-1].read_text(encoding="utf-8"))["carry"]
        return {k: float(v) for k, v in carry.items()}
    except (OSError, ValueError, KeyError):
        return None


def write_report(report: Report, out_dir: Path) -> list[Path]:
    """The report as Markdown, HTML and JSON (the next report's growth), and the
    gauges' text file the engine serves; returns the report files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"inspection-{report.at:%Y%m%dT%H%M%SZ}"
    paths = []
    for suffix, text in (
        (".md", report.to_markdown()),
        (".html", report.to_html()),
        (".json", report.to_json()),
    ):
        path = stem.with_suffix(suffix)
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    metrics.record_inspection(report)
    metrics.write_inspection(out_dir)
    return paths


async def _inspect(settings: Settings, given: str, out_dir: Path) -> int:
    previous = _previous(out_dir)
    async with database_url(settings, given) as url:
        pool = await connect_pool(url, size=2, migrate=False, role="inspect")
        try:
            report = await inspect(
                pool,
                settings,
                previous=previous,
                engine_metrics=lambda: asyncio.to_thread(_scrape, settings),
            )
        finally:
            await pool.close()
    paths = write_report(report, out_dir)
    for c in report.breaches:
        print(f"BREACH {c.title}: {c.advice or c.detail}")
    print(report.summary())
    for path in paths[:2]:
        print(f"report {path}")
    return report.exit_code


def cmd_inspect(
    database_url: Annotated[str, _DB] = "",
    out_dir: Annotated[
        str, typer.Option("--out", help="where reports are kept; default <data dir>/inspections")
    ] = "",
) -> None:
    """Inspect the system (巡检): database, disks, backups, logs, certificates, signer,
    platform, Ray, stock runway. Writes HTML and Markdown reports; exit 1 on a breach."""
    settings = load()
    target = Path(out_dir) if out_dir else settings.data_dir / "inspections"
    sys.exit(asyncio.run(_inspect(settings, database_url, target)))


def register(app: typer.Typer) -> None:
    app.command("migrate")(cmd_migrate)
    app.command("inspect")(cmd_inspect)
    backup.register(app)
