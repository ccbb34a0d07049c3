"""Operations on a stack whose engine runs as a role without DDL rights, after
`ebill migrate` (issue #17)."""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import asyncpg
import psutil  # type: ignore[import-untyped]
import pytest

from ebill.cli.core import issue_demo
from ops.stack import Stack, free_port
from tests.e2e.ops_support import APP_ROLE, HEALTH_PORT, ebill, ops_stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ops(request: pytest.FixtureRequest) -> Iterator[Stack]:
    yield from ops_stack("ebill-ops-")


async def test_engine_issues_as_a_role_without_ddl_after_migrate(ops: Stack) -> None:
    conn = await asyncpg.connect(ops.database_url)
    try:
        assert not await conn.fetchval(
            "SELECT has_schema_privilege($1, 'public', 'CREATE')", APP_ROLE
        )
        assert not await conn.fetchval(
            "SELECT has_database_privilege($1, current_database(), 'CREATE')", APP_ROLE
        )
        bills = await issue_demo(
            ops.config.grpc_addr, 40, tls=ops.tls(), creds=ops.app_credentials(), progress=False
        )
        assert len(bills) == 40
        # Every connection of the engine and of each stage says who it is.
        names = {
            r["application_name"]
            for r in await conn.fetch(
                "SELECT application_name FROM pg_stat_activity WHERE usename = $1", APP_ROLE
            )
        }
        assert "ebill-engine" in names, names
        assert {"ebill-engine/ReserveStage", "ebill-engine/ArchiveStage"} <= names, names
        # The role really cannot change tables.
        app = await asyncpg.connect(ops.database_url.replace("postgres:@", f"{APP_ROLE}:@"))
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute("CREATE TABLE intruder (id int)")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute("ALTER TABLE bills ADD COLUMN x int")
        finally:
            await app.close()
    finally:
        await conn.close()


async def test_migrate_status_and_an_engine_refusing_a_schema_behind(ops: Stack) -> None:
    done = ebill(ops, "migrate", "--status")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 migration(s) pending" in done.stdout

    conn = await asyncpg.connect(ops.database_url)
    try:
        await conn.execute("CREATE DATABASE unmigrated")
    finally:
        await conn.close()
    empty = ops.database_url.replace("/ebill?", "/unmigrated?")
    behind = ebill(ops, "migrate", "--status", "--database-url", empty)
    assert behind.returncode == 1 and "0001_core.sql" in behind.stdout
    refused = ebill(
        ops,
        "serve",
        EBILL_DATABASE_URL=empty,
        EBILL_MIGRATE_ON_START="false",
        EBILL_GRPC_ADDR=f"127.0.0.1:{free_port()}",
        EBILL_METRICS_PORT="0",
    )
    assert refused.returncode != 0
    assert "run `ebill migrate`" in refused.stderr, refused.stderr[-2000:]


def scrape(stack: Stack) -> str:
    url = f"http://127.0.0.1:{stack.config.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def test_inspection_report_with_a_disk_breach(ops: Stack) -> None:
    """The disk line lowered under what is used: the breach shows in the report
    files, the exit code and the gauge the engine serves."""
    out = ebill(ops, "inspect", EBILL_DISK_ALERT_PCT="0.01")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "BREACH disk use of data" in out.stdout
    reports = ops.config.data_dir / "inspections"
    md = sorted(reports.glob("inspection-*.md"))[-1].read_text(encoding="utf-8")
    html = sorted(reports.glob("inspection-*.html"))[-1].read_text(encoding="utf-8")
    assert "## Needs action" in md and "disk use of data" in md
    assert re.search(r"\| disk use of data \(.*\) \| BREACH \|", md), md
    assert "data-key='disk:data' data-status='breach'" in html
    # The checks that must hold on a healthy stack hold.
    for key in ("signer", "platform", "engine", "circuit", "ray", "backlog_age", "connections"):
        assert f"data-key='{key}' data-status='ok'" in html, key
    assert re.search(r"data-key='runway:[0-9A-Z]+:\d{8}' data-status='ok'", html), html
    assert "data-key='wal_archiving' data-status='warn'" in html
    text = scrape(ops)
    assert 'ebill_inspection_breach{area="Disk and tablespaces",check="disk:data"} 1.0' in text
    assert re.search(r'ebill_disk_used_percent\{volume="data"\} [1-9]', text), text
    assert 'ebill_dependency_up{system="signer"} 1.0' in text
    assert re.search(r"ebill_stock_runway_days\{bill_code=\"\d{8}\",unit_code=\"\w+\"\}", text)

    again = ebill(ops, "inspect")
    html = sorted(reports.glob("inspection-*.html"))[-1].read_text(encoding="utf-8")
    assert "data-key='disk:data' data-status='ok'" in html, again.stdout
    assert "growth" in sorted(reports.glob("inspection-*.md"))[-1].read_text(encoding="utf-8")


def test_metrics_on_every_interface_plain_health_and_json_logs(ops: Stack) -> None:
    outward = [
        a.address
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family == socket.AF_INET and not a.address.startswith("127.")
    ]
    if outward:
        url = f"http://{outward[0]}:{ops.config.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert b"ebill_rpc_total" in resp.read()
    base = f"http://127.0.0.1:{HEALTH_PORT}"
    with urllib.request.urlopen(f"{base}/healthz", timeout=5) as resp:
        assert resp.status == 200 and resp.read() == b"SERVING\n"
    with urllib.request.urlopen(f"{base}/livez", timeout=5) as resp:
        assert resp.status == 200
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{base}/metrics", timeout=5)
    assert err.value.code == 404
    # The engine's own log: JSON lines in a file it rotates (EBILL_LOG_FILE set by the launcher).
    assert ops.config.log_dir is not None
    lines = (ops.config.log_dir / "engine.log").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert any("engine serving on" in r["msg"] for r in records), lines[-5:]
