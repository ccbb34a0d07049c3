"""A burst of sign-ins (a shift change) against a small pool: the password
checks run one at a time, and while they wait for the hasher they hold no
connection, so a page's query still gets one (issue #16: at 1,000 console
users every page waited behind the sign-ins)."""

from __future__ import annotations

import asyncio
import os
import re
import threading
import uuid

import asyncpg
import pytest

import usecases.identity as identity_mod
from engine.identity import Scope
from storage.db import connect_pool
from tests.sealing_support import fixed_sealer
from usecases.identity import Identity
from usecases.identity.manage import SYSTEM, IdentityAdmin

pytestmark = pytest.mark.asyncio

PASSWORD = "Correct-horse-9"
SIGN_INS = 6


async def test_sign_ins_queue_for_the_hasher_without_holding_connections(
    session_pool: asyncpg.Pool, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A database of its own: these sign-ins commit (they need a real pool), and
    # their log leaves must not reach the other tests' log.
    dbname = f"signin_burst_{os.getpid()}"
    await session_pool.execute(f"CREATE DATABASE {dbname}")
    url = re.sub(r"/([A-Za-z0-9_]+)(\?|$)", rf"/{dbname}\2", database_url, count=1)
    pool = await connect_pool(url, size=2, migrate=True)
    try:
        ident = Identity(pool, fixed_sealer())
        admin = IdentityAdmin(ident)
        name = f"burst{uuid.uuid4().hex[:8]}"
        await admin.create_role(SYSTEM, f"{name}-role", ["bill.read"])
        await admin.create_user(SYSTEM, username=name, password=PASSWORD, unit_code="U1")
        await admin.assign_role(SYSTEM, name, f"{name}-role", Scope("U1", office=True))

        real = identity_mod._verify
        lock = threading.Lock()
        active, peak = 0, 0
        page_served = threading.Event()

        def counting(hashed: str, password: str) -> bool:
            nonlocal active, peak
            with lock:
                active += 1
                peak = max(peak, active)
            try:
                # The hasher is held until a page's query has run: with the pool's
                # two connections held by waiting sign-ins, that query never would.
                page_served.wait(10)
                return real(hashed, password)
            finally:
                with lock:
                    active -= 1

        monkeypatch.setattr(identity_mod, "_verify", counting)
        logins = [asyncio.create_task(ident.login(name, PASSWORD)) for _ in range(SIGN_INS)]
        await asyncio.sleep(0.2)  # every sign-in has started and is waiting
        assert await asyncio.wait_for(pool.fetchval("SELECT 1"), 5) == 1
        page_served.set()
        tokens = await asyncio.gather(*logins)
        assert len(set(tokens)) == SIGN_INS  # every one signed in
        assert peak == identity_mod.HASH_CONCURRENCY == 1
    finally:
        await pool.close()
        await session_pool.execute(f"DROP DATABASE {dbname}")
