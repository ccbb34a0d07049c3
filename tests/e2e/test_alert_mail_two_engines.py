"""Two engines on one database mail each low-stock warning once (issue #11, item 10).

Two engine processes share one PostgreSQL and one SMTP server (aiosmtpd, slow to
answer DATA as a busy relay is). Under issuance load at three issuing points,
warning rules are re-armed every second so that thresholds are crossed again and
again; one engine is killed with SIGKILL mid-run. Then: every warning that fired
was mailed (nothing lost), and each exactly once, except that a warning whose
mail was in flight at the kill may be mailed twice (at most one such warning: an
engine holds one claim at a time) - SMTP gives at-least-once, no better, and the
second send is the surviving engine taking over the lapsed claim.

Before claims, both engines read the same due warnings and both mailed them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from aiosmtpd.controller import Controller

from clients.credentials import open_engine_channel
from ops.stack import Stack, StackConfig, free_port, wait_for_health
from protos.ebill.v1 import bill_pb2
from storage.alerts import usable_at
from storage.db import connect_pool
from storage.stock.alerts import set_alert_rule
from tests.e2e.test_ops import scrape, value
from tests.resilience import FAST_RECOVERY, His
from usecases import demo
from wire.bills import input_to_pb

pytestmark = pytest.mark.slow

POINTS = ("001", "002", "003")
BILL_CODE = "44060119"  # bus_type 02
LOAD_S = 20
KILL_AFTER_S = 8
# smtplib timeout per step in the engines: a claim lasts 6 of them + 5 s (17 s).
SMTP_TIMEOUT_S = 2


class SlowMailbox:
    """A real SMTP server that keeps each message and answers DATA after a delay:
    long enough that two engines reading the same due warnings would both send."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.messages: list[EmailMessage] = []
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)  # delivered: a kill from now on cannot take it back
        await asyncio.sleep(self.delay_s)
        return "250 OK"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def bodies(self) -> collections.Counter[str]:
        """Mails by text: a warning's text (point, stock, threshold) tells it apart
        from the others here, the threshold moving every round."""
        return collections.Counter(
            str(m.get_content()).strip() for m in self.messages if "low stock" in str(m["Subject"])
        )


@contextlib.contextmanager
def two_engine_stack(mailbox: SlowMailbox) -> Iterator[tuple[Stack, str, str]]:
    data_dir = Path(tempfile.mkdtemp(prefix="ebill-mail2-"))
    env = {
        **FAST_RECOVERY,
        "EBILL_SMTP_HOST": "127.0.0.1",
        "EBILL_SMTP_PORT": str(mailbox.port),
        "EBILL_SMTP_TIMEOUT_S": str(SMTP_TIMEOUT_S),
        "EBILL_STOCK_INTERVAL_S": "0.2",
        "EBILL_RAY_NUM_CPUS": "1",
    }
    config = StackConfig(data_dir=data_dir, log_dir=data_dir / "logs", extra_env=env)
    second: subprocess.Popen[bytes] | None = None
    with Stack(config) as stack:
        stack.seed_demo(stock=20_000)
        stack.start_engine()
        addr2 = f"127.0.0.1:{free_port()}"
        assert config.log_dir is not None
        with open(config.log_dir / "engine2.log", "ab") as log:
            second = subprocess.Popen(
                [sys.executable, "-m", "ebill.cli", "serve"],
                env={
                    **stack.env(),
                    "EBILL_GRPC_ADDR": addr2,
                    "EBILL_METRICS_PORT": str(free_port()),
                },
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for_health(addr2, second, 120, stack.tls())
            stack.procs["engine2"] = second
            yield stack, config.grpc_addr, addr2
        finally:
            stack.procs.pop("engine2", None)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(second.pid, signal.SIGKILL)
            second.wait()
    if os.environ.get("EBILL_KEEP_TEST_DATA") != "1":
        shutil.rmtree(data_dir, ignore_errors=True)


def bills(n: int, tag: str, seq: list[int]) -> list[bill_pb2.BillRequest]:
    seq[0] += 1
    return [
        input_to_pb(
            demo.demo_bill(i, prefix=f"{tag}{seq[0]:05d}X", place_code=POINTS[i % len(POINTS)])
        )
        for i in range(n)
    ]


async def rearm(pool: asyncpg.Pool, stop: float) -> int:
    """Every second, set each point's threshold a little under its stock: the
    issuance load then crosses it and a warning fires. Returns the rounds."""
    rounds = 0
    while time.monotonic() < stop:
        for place in POINTS:
            available = int(
                await pool.fetchval(
                    "SELECT " + usable_at("k") + " FROM (VALUES ($1::text, $2::text,"
                    " $3::char(8))) AS k(unit_code, place_code, bill_code)",
                    demo.UNIT_CODE,
                    place,
                    BILL_CODE,
                )
            )
            await set_alert_rule(
                pool, unit_code=demo.UNIT_CODE, place_code=place, bill_code=BILL_CODE,
                threshold=max(1, available - 5), email=f"stock-{place}@hospital.test",
            )  # fmt: skip
        rounds += 1
        await asyncio.sleep(1.0)
    return rounds


def test_two_engines_one_killed_mail_every_warning_once() -> None:
    mailbox = SlowMailbox(delay_s=0.2)
    mailbox.start()
    try:
        with two_engine_stack(mailbox) as (stack, addr1, addr2):

            async def scenario() -> None:
                pool = await connect_pool(stack.database_url, migrate=False)
                seq = [0]

                def to(addr: str) -> Callable[[], grpc.aio.Channel]:
                    return lambda: open_engine_channel(addr, stack.tls(), stack.app_credentials())

                his = [His(to(addr1)), His(to(addr2)), His(to(addr2))]

                async def load(h: His, tag: str, stop: float) -> None:
                    while time.monotonic() < stop:
                        await h.issue(bills(30, tag, seq), deadline=time.monotonic() + 120)

                stop = time.monotonic() + LOAD_S
                tasks = [asyncio.create_task(load(h, f"M{i}", stop)) for i, h in enumerate(his)]
                arming = asyncio.create_task(rearm(pool, stop))
                await asyncio.sleep(KILL_AFTER_S)
                mailed_before_kill = len(mailbox.messages)
                await asyncio.to_thread(stack.kill_process, "engine2")
                for h in his:
                    h.connect = to(addr1)  # the HIS fails over to the surviving engine
                await asyncio.gather(*tasks)
                rounds = await arming

                unsent = (
                    "SELECT count(*) FROM stock_alerts WHERE email <> '' AND emailed_at IS NULL"
                )
                deadline = time.monotonic() + 90
                while await pool.fetchval(unsent) > 0:
                    assert time.monotonic() < deadline, "warnings never mailed"
                    await asyncio.sleep(0.5)
                fired_texts = collections.Counter(
                    str(r["message"]).strip()
                    for r in await pool.fetch("SELECT message FROM stock_alerts WHERE email <> ''")
                )
                got = mailbox.bodies()
                twice = {t: got[t] - n for t, n in fired_texts.items() if got[t] > n}
                assert rounds >= LOAD_S // 2 and fired_texts.total() >= 10, (rounds, fired_texts)
                assert mailed_before_kill > 0, "no mail before the kill: nothing was tested"
                # Nothing lost: every warning that fired went out; no mail of anything else.
                assert not fired_texts - got, list(fired_texts - got)[:3]
                assert set(got) == set(fired_texts)
                # Nothing sent twice, but the one the killed engine had in flight,
                # and then only because the survivor took over its lapsed claim.
                assert len(twice) <= 1 and all(n == 1 for n in twice.values()), twice
                reclaimed = value(
                    scrape(stack), "ebill_stock_alerts_mailed_total", outcome="reclaimed"
                )
                assert len(twice) <= reclaimed <= 1, (twice, reclaimed)
                print(
                    f"warnings {fired_texts.total()}, mails {got.total()},"
                    f" mailed twice {len(twice)}, reclaimed {reclaimed}"
                )
                await pool.close()

            asyncio.run(scenario())
    finally:
        mailbox.stop()
