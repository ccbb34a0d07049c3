"""A stack of its own for the operations tests (tests/e2e/test_operations*.py):
the engine runs as a role without DDL rights, after `ebill migrate`."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from ops.stack import Stack, StackConfig, free_port

__all__ = ["APP_ROLE", "HEALTH_PORT", "as_role", "ebill", "ops_stack"]

APP_ROLE = "ebill_app"
HEALTH_PORT = free_port()


def as_role(url: str, role: str) -> str:
    """``url`` logging in as ``role`` (the embedded server trusts local sockets)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{role}:@{host}"))


def ebill(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the `ebill` CLI as an operator would, with the stack's settings."""
    return subprocess.run(
        [sys.executable, "-m", "ebill.cli", *args],
        env={**stack.env(), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def ops_stack(prefix: str, *, stock: int = 20_000, **extra_env: str) -> Iterator[Stack]:
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    config = StackConfig(
        data_dir=data_dir,
        log_dir=data_dir / "logs",
        extra_env={"EBILL_BATCH_LINGER_MS": "2", "EBILL_RAY_NUM_CPUS": "2", **extra_env},
    )
    with Stack(config) as stack:
        owner = stack.database_url
        done = ebill(stack, "migrate")
        assert done.returncode == 0, done.stderr

        async def make_role() -> None:
            conn = await asyncpg.connect(owner)
            try:
                await conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN")
            finally:
                await conn.close()

        asyncio.run(make_role())
        granted = ebill(stack, "migrate", "--grant-to", APP_ROLE)
        assert granted.returncode == 0, granted.stderr
        stack.seed_demo(stock=stock)
        stack.start_engine(
            EBILL_DATABASE_URL=as_role(owner, APP_ROLE),
            EBILL_MIGRATE_ON_START="false",
            # Metrics on every interface (for a Prometheus elsewhere), plain health.
            EBILL_METRICS_ADDR=f"0.0.0.0:{config.metrics_port}",
            EBILL_HEALTH_ADDR=f"127.0.0.1:{HEALTH_PORT}",
            EBILL_LOG_FORMAT="json",
        )
        yield stack
    if os.environ.get("EBILL_KEEP_TEST_DATA") != "1":
        shutil.rmtree(data_dir, ignore_errors=True)
