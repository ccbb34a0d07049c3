"""Shared fixtures: one real stack per test session.

PostgreSQL (embedded, or EBILL_TEST_DATABASE_URL), the signing-server and
fiscal-platform sandboxes and the engine run as separate processes, started once:
Ray alone takes seconds to start, so per-test stacks would dominate the run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiosmtpd.controller import Controller

from clients.fiscal import FiscalClient
from ops.stack import Stack, StackConfig, free_port
from protos.ebill.v1 import issuance_pb2_grpc, lifecycle_pb2_grpc, stock_pb2_grpc
from storage.catalog import ensure_unit
from storage.db import connect_pool
from usecases import demo
from usecases.bootstrap import grant_stock

SCARCE_POINT = "004"
SCARCE_STOCK = 3
# Issuing points that start with no stock: the stock tests fill them from the bill office.
STOCK_POINTS = ["005", "006", "007", "008"]
# Points of one test module each, so that no other module's paper or stock
# changes what it counts: the console's requisitions, the paper write-off.
CONSOLE_POINT = "009"
PAPER_POINT = "010"
PAPER_POINT_STOCK = 100


class Mailbox:
    """A real SMTP server (aiosmtpd) the engine mails its warnings to."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        return "250 OK"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


@pytest.fixture(scope="session")
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    box.start()
    yield box
    box.stop()


@pytest.fixture(scope="session")
def stack(mailbox: Mailbox) -> Iterator[Stack]:
    data_dir = Path(tempfile.mkdtemp(prefix="ebill-test-"))
    url = os.environ.get("EBILL_TEST_DATABASE_URL", "")
    config = StackConfig(
        data_dir=data_dir,
        database_url=url,
        log_dir=data_dir / "logs",
        # Small batches linger briefly: tests send few bills at a time.
        extra_env={
            "EBILL_BATCH_LINGER_MS": "2",
            "EBILL_RAY_NUM_CPUS": "2",
            "EBILL_SMTP_HOST": "127.0.0.1",
            "EBILL_SMTP_PORT": str(mailbox.port),
            "EBILL_STOCK_INTERVAL_S": "0.5",
            # Tree heads every second, so proofs of new bills come quickly.
            "EBILL_LOG_HEAD_INTERVAL_S": "1",
            # TLS is on by default; the suite also requires client certificates.
            "EBILL_TLS_CLIENT_AUTH": "1",
        },
    )
    with Stack(config) as s:
        s.seed_demo(stock=10_000)

        async def scarce_point() -> None:
            # An issuing point with almost no stock, to run it dry.
            pool = await connect_pool(s.database_url, migrate=False)
            try:
                await ensure_unit(
                    pool,
                    unit_code=demo.UNIT_CODE,
                    unit_name=demo.UNIT_NAME,
                    issuing_points=[(SCARCE_POINT, "stock-test window")]
                    + [(p, f"stock window {p}") for p in STOCK_POINTS]
                    + [(CONSOLE_POINT, "console window"), (PAPER_POINT, "paper window")],
                    charge_codes=[],
                    bill_codes=[],
                )
                async with FiscalClient(config.fiscal_addr, tls=s.tls("engine")) as fiscal:
                    await grant_stock(
                        pool,
                        fiscal,
                        unit_code=demo.UNIT_CODE,
                        place_code=SCARCE_POINT,
                        bill_code="44060119",
                        count=SCARCE_STOCK,
                    )
                    await grant_stock(
                        pool,
                        fiscal,
                        unit_code=demo.UNIT_CODE,
                        place_code=PAPER_POINT,
                        bill_code="44060119",
                        count=PAPER_POINT_STOCK,
                    )
            finally:
                await pool.close()

        asyncio.run(scarce_point())
        s.start_engine()
        yield s
    if os.environ.get("EBILL_KEEP_TEST_DATA") != "1":
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest_asyncio.fixture(scope="session")
async def pool(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    p = await connect_pool(stack.database_url, migrate=False)
    yield p
    await p.close()


@pytest_asyncio.fixture(scope="session")
async def issuance(stack: Stack) -> AsyncIterator[issuance_pb2_grpc.IssuanceServiceStub]:
    async with stack.channel() as ch:
        yield issuance_pb2_grpc.IssuanceServiceStub(ch)


@pytest_asyncio.fixture(scope="session")
async def lifecycle(stack: Stack) -> AsyncIterator[lifecycle_pb2_grpc.LifecycleServiceStub]:
    async with stack.channel() as ch:
        yield lifecycle_pb2_grpc.LifecycleServiceStub(ch)


@pytest_asyncio.fixture(scope="session")
async def stock(stack: Stack) -> AsyncIterator[stock_pb2_grpc.StockServiceStub]:
    async with stack.channel() as ch:
        yield stock_pb2_grpc.StockServiceStub(ch)


# Two signed-in stock managers of the bill office (usecases/identity/demo.py):
# the decisions of the two-person rules need a person, not the demo HIS app.
@pytest_asyncio.fixture(scope="session")
async def manager_a(stack: Stack) -> AsyncIterator[stock_pb2_grpc.StockServiceStub]:
    async with stack.channel(creds=await stack.login("manager-a")) as ch:
        yield stock_pb2_grpc.StockServiceStub(ch)


@pytest_asyncio.fixture(scope="session")
async def manager_b(stack: Stack) -> AsyncIterator[stock_pb2_grpc.StockServiceStub]:
    async with stack.channel(creds=await stack.login("manager-b")) as ch:
        yield stock_pb2_grpc.StockServiceStub(ch)
