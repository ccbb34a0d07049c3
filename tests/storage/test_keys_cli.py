"""`ebill keys rotate | reseal | status` on a database of its own: rows sealed
under key 1 still open after the rotation, the re-seal moves them to key 2, and
the status shows no row left under key 1."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from config import keys
from ebill.cli import app
from engine.errors import DataLoss
from engine.lifecycle import BillKey
from engine.sealing import KeyRing
from storage.bills import get_bill, reserve
from storage.db import connect_pool
from storage.personal import key_counts
from tests.storage.test_personal_data import own_database, with_payer  # noqa: F401
from tests.storage.test_reserve import UNIT, setup, work


async def _cli(data_dir: Path, *args: str) -> str:
    env = {"EBILL_DATA_DIR": str(data_dir), "EBILL_DATA_KEY_FILE": ""}
    result = await asyncio.to_thread(CliRunner().invoke, app, ["keys", *args], env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


async def test_rotate_then_reseal_moves_every_row_to_the_new_key(
    own_database: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    key_file = keys.default_path(tmp_path)
    one = keys.ensure(key_file)
    pool = await connect_pool(own_database, size=2, migrate=True)
    try:
        await setup(pool, numbers=10)
        out = await reserve(pool, [(i, with_payer(i + 1)) for i in range(3)], ring=one)
        assert all(work(out[i]) for i in range(3))

        said = await _cli(tmp_path, "rotate")
        assert "key 2 added and active" in said
        two = keys.read(key_file)
        assert (two.active, sorted(two.keys), two.index_key) == (2, [1, 2], one.index_key)
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        # Old rows open with the new ring; nothing moved yet.
        assert (await key_counts(pool))["bills"] == {1: 3}
        assert await get_bill(pool, BillKey.serial(UNIT, "PII-P-1"), two) is not None

        said = await _cli(tmp_path, "reseal", "--database-url", own_database)
        assert "0 sealed from plaintext, 3 re-sealed" in said
        assert (await key_counts(pool))["bills"] == {2: 3}
        assert "bills: key 2: 3" in await _cli(tmp_path, "status", "--database-url", own_database)
        # Key 1 may now leave the file: every row opens without it.
        without_one = KeyRing({2: two.keys[2]}, 2, two.index_key)
        for n in (1, 2, 3):
            got = await get_bill(pool, BillKey.serial(UNIT, f"PII-P-{n}"), without_one)
            assert got is not None and got.source is not None
        with pytest.raises(DataLoss):
            await get_bill(pool, BillKey.serial(UNIT, "PII-P-1"), one)
    finally:
        await pool.close()
