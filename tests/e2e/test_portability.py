"""The whole stack on both fallbacks at once, as on a Linux ARM64 server or
CPython 3.13: the system's PostgreSQL instead of pgserver (EBILL_EMBEDDED_PG=
system) and SM2 in plain Python instead of Tongsuo (EBILL_SM2_BACKEND=python, in
the engine, its Ray workers and both sandboxes). Bills issue, and their
signatures verify with gmssl."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from bench.gm_reference import gm_verify
from clients.signer import SignerClient
from ebill.cli.core import issue_demo, verify_bills
from ops.stack import Stack, StackConfig
from storage.syspg import SystemPostgres, find_bin_dirs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not find_bin_dirs(), reason="no system PostgreSQL: `make system`"),
]


@pytest.fixture(scope="module")
def fallback_stack() -> Iterator[Stack]:
    data_dir = Path(tempfile.mkdtemp(prefix="ebill-fallback-"))
    config = StackConfig(
        data_dir=data_dir,
        log_dir=data_dir / "logs",
        extra_env={
            "EBILL_SM2_BACKEND": "python",
            "EBILL_EMBEDDED_PG": "system",
            "EBILL_BATCH_LINGER_MS": "2",
        },
    )
    with pytest.MonkeyPatch.context() as mp:
        # The launcher opens the embedded server in this process.
        mp.setenv("EBILL_EMBEDDED_PG", "system")
        with Stack(config) as stack:
            assert isinstance(stack.pg, SystemPostgres)
            stack.seed_demo(stock=2_000)
            stack.start_engine()
            yield stack
    if os.environ.get("EBILL_KEEP_TEST_DATA") != "1":
        shutil.rmtree(data_dir, ignore_errors=True)


async def test_bills_issue_and_verify_on_both_fallbacks(fallback_stack: Stack) -> None:
    stack = fallback_stack
    bills = await issue_demo(
        stack.config.grpc_addr, 30, tls=stack.tls(), creds=stack.app_credentials(), progress=False
    )
    assert len(bills) == 30
    ok = await verify_bills(
        bills, stack.config.signer_addr, "unit-sign", stack.config.fiscal_addr, stack.tls()
    )
    assert ok == 30
    async with SignerClient(stack.config.signer_addr, "unit-sign", tls=stack.tls()) as signer:
        unit_pub = (await signer.public_key()).point
    assert all(gm_verify(unit_pub, b.canonical, b.unit_signature) for b in bills)
    conn = await asyncpg.connect(stack.database_url)
    try:
        version = int(await conn.fetchval("SHOW server_version_num"))
        assert version // 10000 == stack.pg.version  # type: ignore[union-attr]
    finally:
        await conn.close()
    logs = stack.config.log_dir
    assert logs is not None
    for name in ("signer", "fiscal"):
        assert "plain Python" in (logs / f"{name}.log").read_text(), name
