"""Gathering the inspection (`ebill inspect`): database, disks, connections,
backups, WAL archiving, logs, backlog and circuit, certificates, the signing
server and the fiscal platform, the Ray cluster, stock runway. Each figure is
held to its line by engine.inspection; this module only measures.

The engine's live state (the fiscal circuit, the Ray placement) is read from
its Prometheus metrics, which the caller scrapes and passes in as text: the
inspection runs in a process of its own (a systemd timer), not in the engine.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from config.settings import Settings
from engine.inspection import Check, Report, Status, at_least, at_most, runway_days
from storage import archive as archive_store
from storage import inspection as q
from usecases.probes import certificates, platform_probe, signer_probe

__all__ = [
    "BACKLOG_MAX_AGE_S",
    "CONNECTIONS_MAX_PCT",
    "RATE_WINDOW_DAYS",
    "Backup",
    "inspect",
    "latest_backup",
    "log_errors",
]

# The oldest unfinished bill may be this old before the backlog counts as stuck
# (recovery retries every EBILL_RECOVERY_INTERVAL_S; minutes mean it cannot).
BACKLOG_MAX_AGE_S = 600.0
CONNECTIONS_MAX_PCT = 90.0
# Stock runway is measured at the issuance rate of the last week.
RATE_WINDOW_DAYS = 7.0

_TEXT_LOG = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ \S+ (ERROR|CRITICAL) ")


@dataclass(frozen=True, slots=True)
class Backup:
    """One backup made by `ebill backup` (its manifest.json)."""

    path: Path
    at: datetime
    size_bytes: int


def latest_backup(backup_dir: Path) -> Backup | None:
    """The newest backup under ``backup_dir`` that finished (has a manifest)."""
    best: Backup | None = None
    for manifest in backup_dir.glob("*/manifest.json"):
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            at = datetime.fromisoformat(data["at"])
        except (OSError, ValueError, KeyError):
            continue
        if best is None or at > best.at:
            size = sum(f.stat().st_size for f in manifest.parent.iterdir() if f.is_file())
            best = Backup(manifest.parent, at, size)
    return best


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _disks(settings: Settings, extra: Iterable[tuple[str, str]]) -> list[Check]:
    """Use of every volume the system writes to, once per device."""
    seen: set[int] = set()
    out: list[Check] = []
    places = [("data", str(settings.data_dir)), ("backups", str(settings.backup_dir)), *extra]
    for label, where in places:
        path = Path(where)
        while not path.exists() and path != path.parent:
            path = path.parent
        try:
            dev = path.stat().st_dev
            usage = shutil.disk_usage(path)
        except OSError as exc:
            out.append(
                Check(
                    "Disk and tablespaces",
                    f"disk:{label}",
                    f"disk of {label}",
                    Status.UNKNOWN,
                    detail=f"{where}: {exc}",
                )
            )
            continue
        if dev in seen:
            continue
        seen.add(dev)
        pct = 100.0 * (usage.total - usage.free) / usage.total if usage.total else 0.0
        out.append(
            at_most(
                "Disk and tablespaces",
                f"disk:{label}",
                f"disk use of {label} ({path})",
                round(pct, 2),
                settings.disk_alert_pct,
                unit="%",
                detail=f"{_gib(usage.total - usage.free)} of {_gib(usage.total)} used",
                advice=f"free space on {path} or grow the volume: past "
                f"{settings.disk_alert_pct:g}% PostgreSQL and the logs may stop writing",
            )
        )
    return out


def log_errors(settings: Settings, since: float) -> Check:
    """ERROR and CRITICAL lines written to the engine's logs since ``since``."""
    log_dir = settings.log_file.parent if settings.log_file else settings.data_dir / "logs"
    count, files = 0, 0
    for path in sorted(log_dir.glob("*.log*")) if log_dir.is_dir() else []:
        try:
            if path.stat().st_mtime < since:
                continue
            files += 1
            with path.open(encoding="utf-8", errors="replace") as f:
                for line in f:
                    count += _is_error_since(line, since)
        except OSError:
            continue
    return at_most(
        "Logs",
        "log_errors",
        f"errors in the logs since {datetime.fromtimestamp(since, UTC):%Y-%m-%d %H:%M} UTC",
        count,
        settings.log_error_max + 1,
        detail=f"{files} log file(s) under {log_dir}",
        advice=f"read the ERROR lines in {log_dir} and fix their cause",
    )


def _is_error_since(line: str, since: float) -> bool:
    if line.startswith("{"):
        try:
            rec = json.loads(line)
            ts = datetime.fromisoformat(rec["ts"]).timestamp()
        except (ValueError, KeyError, TypeError):
            return False
        return rec.get("level") in ("ERROR", "CRITICAL") and ts >= since
    m = _TEXT_LOG.match(line)
    if m is None:
        return False
    # asctime is local time, as the handler wrote it.
    return time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) >= since


def _engine(metrics_text: str | None, addr: str) -> list[Check]:
    """Circuit and Ray placement as the running engine reports them."""
    area = "Engine, backlog and Ray cluster"
    if metrics_text is None:
        return [
            Check(
                area,
                "engine",
                f"engine metrics at {addr}",
                Status.BREACH,
                detail="not reachable",
                advice="the engine is down or its metrics are off (EBILL_METRICS_ADDR)",
            )
        ]
    circuit = 0.0
    nodes: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "ebill_fiscal_circuit_open":
                circuit = sample.value
            elif sample.name == "ebill_stage_replicas" and sample.value > 0:
                nodes.setdefault(sample.labels["stage"], set()).add(sample.labels["node"])
    all_nodes = set().union(*nodes.values()) if nodes else set()
    ray = Check(
        area,
        "ray",
        "Ray cluster nodes running stages",
        Status.OK if nodes else Status.BREACH,
        float(len(all_nodes)),
        "nodes",
        detail=", ".join(f"{s}: {len(n)} node(s)" for s, n in sorted(nodes.items())),
        advice="" if nodes else "no pipeline stage is placed: check the Ray cluster",
    )
    return [
        Check(area, "engine", f"engine metrics at {addr}", Status.OK, detail="reachable"),
        Check(
            area,
            "circuit",
            "fiscal platform circuit",
            Status.BREACH if circuit else Status.OK,
            circuit,
            detail="open: countersigning paused" if circuit else "closed",
            advice="the platform keeps failing: bills wait in the outbox; check the platform",
        ),
        ray,
    ]


async def inspect(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    previous: dict[str, float] | None = None,
    engine_metrics: Callable[[], Awaitable[str | None]],
    now: datetime | None = None,
) -> Report:
    """Every check, now. ``previous`` is the last report's carry (database size
    and time, for growth and for which log lines are new)."""
    now = now or datetime.now(UTC)
    previous = previous or {}
    checks: list[Check] = []

    size = await q.database_size(pool)
    top = await q.largest_tables(pool)
    growth = ""
    if "db_size" in previous and "at" in previous and now.timestamp() > previous["at"]:
        per_day = (size - previous["db_size"]) / ((now.timestamp() - previous["at"]) / 86400)
        growth = f"; growth {per_day / 2**20:+.1f} MiB/day since the last inspection"
    checks.append(
        Check(
            "Database",
            "db_size",
            "database size",
            Status.OK,
            float(size),
            "bytes",
            detail=f"{_gib(size)}{growth}; largest: "
            + ", ".join(f"{t} {b / 2**20:.1f} MiB" for t, b in top),
        )
    )
    conns = await q.connections(pool)
    pct = 100.0 * conns.used / conns.max if conns.max else 0.0
    checks.append(
        at_most(
            "Database",
            "connections",
            "connections in use",
            round(pct, 1),
            CONNECTIONS_MAX_PCT,
            unit="%",
            detail=f"{conns.used} of max_connections {conns.max}; here: "
            + ", ".join(f"{a} {n}" for a, n in sorted(conns.by_application.items())),
            advice="raise max_connections or lower EBILL_DB_POOL_SIZE / "
            "EBILL_STAGE_REPLICAS (docs/deploy.md, connection budget)",
        )
    )

    volumes: list[tuple[str, str]] = []
    if conns.data_directory:
        volumes.append(("database", conns.data_directory))
    for ts in await q.tablespaces(pool):
        if ts.location:
            volumes.append((f"tablespace {ts.name}", ts.location))
    if settings.log_file is not None:
        volumes.append(("logs", str(settings.log_file.parent)))
    checks += _disks(settings, volumes)

    backup = latest_backup(settings.backup_dir)
    if backup is None:
        checks.append(
            Check(
                "Backups",
                "backup_age",
                "newest backup",
                Status.BREACH,
                detail=f"none under {settings.backup_dir}",
                advice="run `ebill backup` (and its timer) or check pgBackRest",
            )
        )
    else:
        age_h = (now - backup.at).total_seconds() / 3600
        checks.append(
            at_most(
                "Backups",
                "backup_age",
                "age of the newest backup",
                round(age_h, 2),
                settings.backup_max_age_h,
                unit="h",
                detail=f"{backup.path.name}, {_gib(backup.size_bytes)}",
                advice="backups stopped: check the backup timer's journal",
            )
        )
    arch = await q.archiver(pool)
    if arch.mode == "off":
        checks.append(
            Check(
                "Backups",
                "wal_archiving",
                "WAL archiving",
                Status.WARN,
                detail="archive_mode off: the recovery point is the newest backup",
                advice="production: pgBackRest with archive_mode on (docs/deploy.md)",
            )
        )
    else:
        failing = arch.last_failed_s is not None and (
            arch.last_archived_s is None or arch.last_failed_s < arch.last_archived_s
        )
        checks.append(
            Check(
                "Backups",
                "wal_archiving",
                "WAL archiving",
                Status.BREACH if failing else Status.OK,
                float(arch.failed),
                "failed",
                detail=f"{arch.archived} archived, {arch.failed} failed",
                advice="the last WAL file failed to archive: check archive_command"
                if failing
                else "",
            )
        )

    since = previous.get("at", now.timestamp() - 86400)
    checks.append(log_errors(settings, since))

    b = await archive_store.backlog(pool)
    checks.append(
        at_most(
            "Engine, backlog and Ray cluster",
            "backlog_age",
            "oldest unfinished bill (outbox)",
            round(b["oldest_s"], 1),
            BACKLOG_MAX_AGE_S,
            unit="s",
            detail=f"{b['reserved']} reserved, {b['pending_countersign']} pending "
            f"countersign, most attempts {b['max_attempts']}",
            advice="recovery is not finishing bills: check the platform and "
            "GetBacklog's quarantine",
        )
    )
    checks += _engine(await engine_metrics(), settings.metrics_addr)

    checks += certificates(settings, now)
    signer, platform = await asyncio.gather(signer_probe(settings), platform_probe(settings))
    checks += [signer, platform]

    for r in await q.stock_rates(pool, RATE_WINDOW_DAYS):
        days = runway_days(r.available, r.issued, RATE_WINDOW_DAYS)
        checks.append(
            at_least(
                "Stock runway",
                f"runway:{r.unit_code}:{r.bill_code}",
                f"stock of {r.unit_code} bill code {r.bill_code} lasts",
                days if math.isinf(days) else round(days, 1),
                settings.stock_runway_min_days,
                unit="days",
                detail=f"{r.available:,} numbers left, {r.issued:,} issued in "
                f"{RATE_WINDOW_DAYS:g} days",
                advice="apply to the fiscal platform for more numbers now "
                "(StockService.ApplyForGrant)",
            )
        )

    return Report(
        now, socket.gethostname(), tuple(checks), {"at": now.timestamp(), "db_size": float(size)}
    )
