"""The embedded default without pgserver (no wheel for CPython 3.13 or Linux
ARM64): PostgreSQL from the system's packages, forced by EBILL_EMBEDDED_PG=system
or by pgserver failing to import."""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import load
from storage.db import connect_pool, open_embedded
from storage.syspg import SystemPostgres, find_bin_dirs

pytestmark = pytest.mark.skipif(
    not find_bin_dirs(), reason="no /usr/lib/postgresql/*/bin: `make system` installs postgresql"
)


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """Not under pytest's own directory: every pytest session on the machine sets
    /tmp/pytest-of-root back to 0700, which shuts the postgres user out mid-test."""
    path = Path(tempfile.mkdtemp(prefix="ebill-syspg-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_system_postgres_runs_the_migrated_schema(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EBILL_EMBEDDED_PG", "system")
    pg = open_embedded(load(), tmp_path)
    assert isinstance(pg, SystemPostgres)
    try:
        pool = await connect_pool(pg.url, size=2)
        try:
            version = await pool.fetchval("SHOW server_version_num")
            assert int(version) // 10000 == pg.version
            tables = await pool.fetchval(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'bills'"
            )
            assert tables == 1
            assert Path(pg.socket_path).exists()
        finally:
            await pool.close()
        # Opened again while running: the same server, not a second one.
        again = SystemPostgres(tmp_path, None)
        assert again.url == pg.url
        again.cleanup()  # did not start it: leaves it running
        pool = await connect_pool(pg.url, size=1, migrate=False)
        await pool.close()
    finally:
        pg.cleanup()
    # Stopped, and its data starts again.
    restarted = SystemPostgres(tmp_path, None)
    try:
        pool = await connect_pool(restarted.url, size=1, migrate=False)
        assert await pool.fetchval("SELECT count(*) FROM schema_migrations") > 0
        await pool.close()
    finally:
        restarted.cleanup()


def test_auto_falls_back_when_pgserver_does_not_import(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # As on a platform without its wheel: the import fails.
    monkeypatch.setitem(sys.modules, "pgserver", None)
    with caplog.at_level(logging.WARNING):
        pg = open_embedded(load(), tmp_path)
    try:
        assert isinstance(pg, SystemPostgres)
        assert "pgserver is not installed" in caplog.text
    finally:
        pg.cleanup()


def test_a_cluster_of_another_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pg").mkdir()
    (tmp_path / "pg" / "PG_VERSION").write_text("16\n")
    if find_bin_dirs()[0].parent.name == "16":
        pytest.skip("the system's PostgreSQL is 16 too")
    with pytest.raises(SystemExit, match="holds a PostgreSQL 16 cluster"):
        SystemPostgres(tmp_path, None)
