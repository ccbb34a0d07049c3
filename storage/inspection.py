"""What the inspection (usecases.inspection) asks the database: its size and
largest tables, tablespaces, connections, WAL archiving, and per bill code the
numbers left and the bills issued lately (stock runway). Read-only; every query
works for a role without superuser rights (fields it may not see come back
None)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from engine.statuses import SegmentStatus

__all__ = [
    "Archiver",
    "Connections",
    "StockRate",
    "Tablespace",
    "archiver",
    "connections",
    "database_size",
    "largest_tables",
    "stock_rates",
    "tablespaces",
]


@dataclass(frozen=True, slots=True)
class Tablespace:
    name: str
    # Empty for the two built into the data directory (pg_default, pg_global).
    location: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class Connections:
    used: int
    max: int
    # Connections to this database by application_name.
    by_application: dict[str, int]
    data_directory: str | None


@dataclass(frozen=True, slots=True)
class Archiver:
    mode: str
    archived: int
    failed: int
    # Seconds since the last archived and the last failed WAL file; None: never.
    last_archived_s: float | None
    last_failed_s: float | None


@dataclass(frozen=True, slots=True)
class StockRate:
    unit_code: str
    bill_code: str
    available: int
    issued: int


async def database_size(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT pg_database_size(current_database())"))


async def largest_tables(pool: asyncpg.Pool, n: int = 5) -> list[tuple[str, int]]:
    """(table, bytes with its indexes and TOAST) of the ``n`` largest tables."""
    rows = await pool.fetch(
        "SELECT c.relname, pg_total_relation_size(c.oid) AS bytes FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY 2 DESC LIMIT $1",
        n,
    )
    return [(r["relname"], int(r["bytes"])) for r in rows]


async def tablespaces(pool: asyncpg.Pool) -> list[Tablespace]:
    rows = await pool.fetch(
        "SELECT spcname, pg_tablespace_location(oid) AS loc, pg_tablespace_size(oid) AS bytes"
        " FROM pg_tablespace ORDER BY spcname"
    )
    return [Tablespace(r["spcname"], r["loc"] or "", int(r["bytes"])) for r in rows]


async def connections(pool: asyncpg.Pool) -> Connections:
    rows = await pool.fetch(
        "SELECT coalesce(nullif(application_name, ''), '(none)') AS app, count(*) AS n"
        " FROM pg_stat_activity WHERE datname = current_database() GROUP BY 1"
    )
    used = int(
        await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        )
    )
    max_conn = int(await pool.fetchval("SELECT current_setting('max_connections')::int"))
    # Superusers and pg_read_all_settings members see it; others get None.
    data_dir = await pool.fetchval("SELECT current_setting('data_directory', true)")
    return Connections(used, max_conn, {r["app"]: int(r["n"]) for r in rows}, data_dir)


async def archiver(pool: asyncpg.Pool) -> Archiver:
    row = await pool.fetchrow(
        "SELECT current_setting('archive_mode') AS mode, archived_count, failed_count,"
        " extract(epoch FROM now() - last_archived_time) AS archived_s,"
        " extract(epoch FROM now() - last_failed_time) AS failed_s"
        " FROM pg_stat_archiver"
    )
    assert row is not None

    def secs(v: object) -> float | None:
        return None if v is None else float(v)  # type: ignore[arg-type]

    return Archiver(
        row["mode"],
        int(row["archived_count"]),
        int(row["failed_count"]),
        secs(row["archived_s"]),
        secs(row["failed_s"]),
    )


async def stock_rates(pool: asyncpg.Pool, window_days: float) -> list[StockRate]:
    """Per unit and bill code: numbers left in enabled segments (bill office and
    issuing points) and bills issued in the last ``window_days``."""
    rows = await pool.fetch(
        "WITH left_ AS ("
        "  SELECT unit_code, bill_code, sum(end_no - next_no + 1) AS available FROM segments"
        f"  WHERE status = '{SegmentStatus.ENABLED}' GROUP BY 1, 2),"
        " rate AS ("
        "  SELECT unit_code, bill_code, count(*) AS issued FROM bills"
        "  WHERE issued_at > now() - make_interval(secs => $1) GROUP BY 1, 2)"
        " SELECT coalesce(l.unit_code, r.unit_code) AS unit_code,"
        "  coalesce(l.bill_code, r.bill_code) AS bill_code,"
        "  coalesce(l.available, 0) AS available, coalesce(r.issued, 0) AS issued"
        " FROM left_ l FULL JOIN rate r USING (unit_code, bill_code) ORDER BY 1, 2",
        window_days * 86400.0,
    )
    return [
        StockRate(r["unit_code"], r["bill_code"].strip(), int(r["available"]), int(r["issued"]))
        for r in rows
    ]
