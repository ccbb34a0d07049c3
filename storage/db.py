"""Connecting to PostgreSQL: a configured URL, or the embedded private server.

Migrations in storage/migrations are applied in order, each in its own
transaction, under an advisory lock so that several processes starting at once
apply each migration exactly once: at start (EBILL_MIGRATE_ON_START, the
embedded default) or by `ebill migrate` as its own step, so that the running
engine's role needs no right to change tables (:func:`pending_migrations` then
refuses to start on a schema behind the code).

Every connection carries an ``application_name`` (``ebill-engine``,
``ebill-engine/reserve``...) so pg_stat_activity shows who holds each one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import time
import urllib.parse
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg

from config.settings import Settings
from storage.syspg import SystemPostgres

__all__ = [
    "EmbeddedPostgres",
    "application_name",
    "apply_migrations",
    "connect_pool",
    "grant_runtime",
    "migration_files",
    "open_embedded",
    "pending_migrations",
    "with_application_name",
]

log = logging.getLogger(__name__)

_MIGRATION_LOCK = 0x6562696C6C  # "ebill"


class EmbeddedPostgres:
    """A private PostgreSQL 16 server in ``data_dir/pg`` (the pgserver package).

    Stopped when the owning process exits; data persists across runs.
    """

    def __init__(self, data_dir: Path) -> None:
        # Heavy import: only when the embedded default is used.
        import pgserver

        pgdata = data_dir / "pg"
        pgdata.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
        self.url: str = self._server.get_uri()
        self._ensure_database("ebill")
        self.url = self._server.get_uri("ebill")

    def _ensure_database(self, name: str) -> None:
        out = self._server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}';")
        if "(1 row)" not in out:
            self._server.psql(f"CREATE DATABASE {name};")

    @property
    def bin_dir(self) -> Path:
        """pgserver's bundled PostgreSQL tools (pg_dump, pg_restore...)."""
        from pgserver import _commands

        return Path(_commands.POSTGRES_BIN_PATH)

    @property
    def socket_path(self) -> str:
        """The Unix socket the server listens on (it has no TCP listener)."""
        directory = Path(self.url.split("host=", 1)[1].split("&", 1)[0])
        return str(next(directory.glob(".s.PGSQL.*")))

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends together (crash rehearsal)."""
        import psutil  # type: ignore[import-untyped]

        pid = self._server.get_pid()
        if pid is None:
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            postmaster = psutil.Process(pid)
            procs = [postmaster, *postmaster.children(recursive=True)]
            for proc in procs:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
            psutil.wait_procs(procs, timeout=10)

    def restart(self, attempts: int = 3) -> None:
        """Start the server again on the same data and socket (after ``kill``).

        pg_ctl itself was seen to die (SIGSEGV) once in dozens of restarts, with
        the server not started; starting again then works.
        """
        for attempt in range(attempts):
            try:
                with self._server._lock:
                    self._server.ensure_postgres_running()
                return
            except subprocess.SubprocessError:
                if attempt == attempts - 1:
                    raise
                log.warning("pg_ctl start failed, trying again", exc_info=True)
                time.sleep(1)

    def cleanup(self) -> None:
        self._server.cleanup()


def open_embedded(
    settings: Settings, data_dir: Path | None = None
) -> EmbeddedPostgres | SystemPostgres:
    """The embedded default's private PostgreSQL under ``data_dir`` (default
    settings.data_dir): pgserver's bundled server, or the system's where
    pgserver is not installed (no wheel for this Python or CPU) or
    EBILL_EMBEDDED_PG=system says so."""
    where = data_dir or settings.data_dir
    kind = settings.embedded_pg
    if kind == "auto":
        try:
            import pgserver  # noqa: F401
        except ImportError:
            log.warning(
                "pgserver is not installed (it has wheels for CPython 3.10-3.12 on x86-64 "
                "and macOS only): the embedded default uses the system's PostgreSQL"
            )
            kind = "system"
        else:
            kind = "pgserver"
    if kind == "system":
        return SystemPostgres(where, settings.pg_bin_dir)
    return EmbeddedPostgres(where)


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration, in order."""
    out: list[tuple[int, str, str]] = []
    for entry in resources.files("storage").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            out.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(out)


async def pending_migrations(conn: asyncpg.Connection) -> list[str]:
    """Names of the migrations the database has not had yet (all of them on an
    empty database); read-only, so any role may ask."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    done: set[int] = set()
    if exists:
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    return [name for version, name, _ in migration_files() if version not in done]


async def apply_migrations(conn: asyncpg.Connection) -> list[str]:
    """Apply the migrations not yet applied; returns their names."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version int PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            applied.append(name)
            log.info("applied migration %s", name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied


async def grant_runtime(conn: asyncpg.Connection, role: str) -> None:
    """Give ``role`` what the running engine needs and nothing more: read and
    write rows of every table, use the sequences; no CREATE on the schema, no
    ALTER, no DROP (it owns nothing). Also for tables later migrations make."""
    ident = '"' + role.replace('"', '""') + '"'
    async with conn.transaction():
        await conn.execute(f"GRANT USAGE ON SCHEMA public TO {ident}")
        await conn.execute(f"REVOKE CREATE ON SCHEMA public FROM {ident}")
        await conn.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {ident}"
        )
        await conn.execute(
            f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {ident}"
        )
        await conn.execute(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {ident}"
        )
        await conn.execute(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
            f"GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {ident}"
        )


def _jsonb_encode(value: Any) -> bytes:
    # Binary jsonb is a version byte (1) and the text; binary is what COPY needs.
    return b"\x01" + json.dumps(value, ensure_ascii=False).encode("utf-8")


def _jsonb_decode(data: bytes) -> Any:
    return json.loads(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=_jsonb_encode, decoder=_jsonb_decode, schema="pg_catalog", format="binary"
    )


# PostgreSQL keeps the first NAMEDATALEN-1 bytes of application_name.
_APP_NAME_MAX = 63


def with_application_name(url: str, name: str) -> str:
    """``url`` with its ``application_name`` set to ``name`` (asyncpg passes the
    query parameter to the server as a setting)."""
    parts = urllib.parse.urlsplit(url)
    query = [
        (k, v)
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if k != "application_name"
    ]
    query.append(("application_name", name[:_APP_NAME_MAX]))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def application_name(url: str) -> str:
    """The ``application_name`` ``url`` carries; "ebill" if none."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    return query.get("application_name", ["ebill"])[0]


async def connect_pool(
    url: str, *, size: int = 4, migrate: bool = True, role: str = "", **kw: Any
) -> asyncpg.Pool:
    """A pool on ``url``; retries while the server is starting. ``role`` (a
    pipeline stage, a CLI command) is appended to the URL's application_name."""
    if role:
        url = with_application_name(url, f"{application_name(url)}/{role}")
    elif "application_name=" not in url:
        url = with_application_name(url, "ebill")
    delay = 0.1
    for attempt in range(50):
        try:
            pool = await asyncpg.create_pool(
                url, min_size=1, max_size=size, init=_init_connection, **kw
            )
            break
        except (OSError, asyncpg.CannotConnectNowError) as exc:
            if attempt == 49:
                raise
            log.info("database not ready (%s), retrying", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
    assert pool is not None
    if migrate:
        async with pool.acquire() as conn:
            await apply_migrations(conn)
    return pool
