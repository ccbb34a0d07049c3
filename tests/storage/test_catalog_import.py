"""A hospital imported from its base-data file: all of it or none, a second run
changes nothing; and `ebill init` sets one up in an empty database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import asyncpg
import pytest

from engine.catalog import MappingEntry
from engine.errors import InvalidArgument
from usecases.catalog import BaseData, Catalogue
from usecases.catalog_file import read_base_data

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "hospital" / "hospital.yaml"
UNIT = "350203001"


async def test_an_import_is_idempotent(db: asyncpg.Pool) -> None:
    data = read_base_data(SAMPLE)
    first = await Catalogue(db).import_base_data(data, "tester")
    assert (first.created, first.changed) == (49, 49)
    again = await Catalogue(db).import_base_data(data, "tester")
    assert (again.changed, again.unchanged) == (0, 49)
    assert (
        await db.fetchval("SELECT count(*) FROM catalog_changes WHERE unit_code = $1", UNIT) == 49
    )


async def test_a_refused_entry_leaves_nothing_written(db: asyncpg.Pool) -> None:
    data = read_base_data(SAMPLE)
    # The last entry overlaps an earlier mapping of the same HIS code.
    bad = BaseData(data.unit, (*data.entries, MappingEntry("XY.0001", "0102", date(2025, 1, 1))))
    with pytest.raises(InvalidArgument, match="overlaps"):
        await Catalogue(db).import_base_data(bad, "tester")
    assert await db.fetchval("SELECT count(*) FROM units WHERE unit_code = $1", UNIT) == 0
    assert await db.fetchval("SELECT count(*) FROM catalog_changes WHERE unit_code = $1", UNIT) == 0


async def test_a_dry_run_writes_nothing(db: asyncpg.Pool) -> None:
    got = await Catalogue(db).import_base_data(read_base_data(SAMPLE), "t", dry_run=True)
    assert got.created == 49
    assert await db.fetchval("SELECT count(*) FROM units WHERE unit_code = $1", UNIT) == 0


def _init(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EBILL_DATABASE_URL": url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "ebill.cli", "init", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_ebill_init_sets_a_hospital_up_in_an_empty_database(
    session_pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    name = f"onboard_{os.getpid()}"
    await session_pool.execute(f"CREATE DATABASE {name}")
    url = re.sub(r"/([A-Za-z0-9_]+)(\?|$)", rf"/{name}\2", database_url, count=1)
    try:
        bad = tmp_path / "bad.yaml"
        bad.write_text(
            SAMPLE.read_text(encoding="utf-8").replace("cashiers.csv", "cashiers_bad.csv"),
            encoding="utf-8",
        )
        for f in SAMPLE.parent.iterdir():
            (tmp_path / f.name).write_bytes(f.read_bytes())
        (tmp_path / "cashiers_bad.csv").write_text(
            "cashier_code,name,place_code\nSF001,陈丽华,001\nSF002,,404\n", encoding="utf-8"
        )
        refused = _init(url, str(bad))
        assert refused.returncode == 1, refused.stderr
        assert "cashiers_bad.csv" in refused.stdout and "name (B)" in refused.stdout
        assert "place_code (C)" in refused.stdout

        done = _init(url, str(SAMPLE))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "49 created" in done.stdout
        again = _init(url, str(SAMPLE))
        assert again.returncode == 0 and "nothing changed" in again.stdout
        conn = await asyncpg.connect(url)
        try:
            assert (
                await conn.fetchval("SELECT unit_name FROM units") == "厦门市思明区人民医院（示例）"
            )
            assert await conn.fetchval("SELECT count(*) FROM his_mappings") == 12
            # The refused run left no trace: one run's worth of change records.
            assert await conn.fetchval("SELECT count(*) FROM catalog_changes") == 49
        finally:
            await conn.close()
    finally:
        await session_pool.execute(f"DROP DATABASE {name} WITH (FORCE)")
