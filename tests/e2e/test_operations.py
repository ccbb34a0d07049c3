"""Operations on a stack whose engine runs as a role without DDL rights, after
`ebill migrate` (issue #17)."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import pytest

from ebill.cli.core import issue_demo
from ops.stack import Stack, free_port
from tests.e2e.ops_support import APP_ROLE, ebill, ops_stack

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
        bills = await issue_demo(ops.config.grpc_addr, 40, tls=ops.tls(), progress=False)
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
