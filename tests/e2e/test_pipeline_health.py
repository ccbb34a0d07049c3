"""Issue #11 item 9 on real processes: a stage actor killed under the engine is
started again and bills keep flowing; health goes NOT_SERVING while the database
is away and SERVING when it is back."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ops.faultproxy import FaultProxy
from ops.stack import Stack
from tests.resilience import His, new_bills, own_stack

pytestmark = pytest.mark.slow

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def stage_pids(stack: Stack, stage: str) -> list[int]:
    """Processes of one stage's actors under this stack's engine: Ray titles an
    actor's worker ``ray::<class>``, and workers inherit the engine's environment
    (its own data directory)."""
    mine = f"EBILL_DATA_DIR={stack.config.data_dir}".encode()
    out, seen = [], []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            if not cmd.startswith(b"ray::"):
                continue
            seen.append(cmd[:60])
            if cmd.startswith(f"ray::{stage}".encode()) and mine in (
                proc / "environ"
            ).read_bytes().split(b"\0"):
                out.append(int(proc.name))
        except OSError:
            continue
    assert out, f"no {stage} process among {seen}"
    return out


async def health(stack: Stack) -> int:
    async with stack.channel() as ch:
        try:
            resp = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=3
            )
        except grpc.aio.AioRpcError:
            return -1
        return int(resp.status)


async def wait_health(stack: Stack, want: int, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await health(stack) == want:
            return time.monotonic() - started
        await asyncio.sleep(0.25)
    raise AssertionError(f"health never became {want} in {timeout} s")


def test_a_killed_stage_restarts_and_health_follows_the_database() -> None:
    with own_stack("restart") as stack:
        assert stack.pg is not None
        pg = FaultProxy(upstream_unix=stack.pg.socket_path).start()
        try:
            stack.start_engine(
                EBILL_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{pg.port}/ebill"
            )

            async def scenario() -> None:
                his = His(stack.channel)
                await his.issue(new_bills(20, "R"), deadline=time.monotonic() + 60)
                for stage in ("ReserveStage", "ArchiveStage"):
                    [pid] = stage_pids(stack, stage)
                    os.kill(pid, signal.SIGKILL)
                # Bills keep flowing: the stages are back, and afterwards every batch
                # is issued at the first try (a dead actor failed every batch).
                await his.issue(new_bills(20, "R"), deadline=time.monotonic() + 60)
                for stage in ("ReserveStage", "ArchiveStage"):
                    stage_pids(stack, stage)  # running again
                errors = his.errors
                for _ in range(3):
                    await his.issue(new_bills(20, "R"), deadline=time.monotonic() + 30)
                assert his.errors == errors
                assert len(his.acked) == 100
                await wait_health(stack, SERVING, 10)
                # The database away: NOT_SERVING; back: SERVING.
                pg.refuse(True)
                pg.cut()
                await wait_health(stack, NOT_SERVING, 15)
                pg.refuse(False)
                await wait_health(stack, SERVING, 30)
                await his.issue(new_bills(20, "R"), deadline=time.monotonic() + 60)

            asyncio.run(scenario())
        finally:
            pg.stop()
