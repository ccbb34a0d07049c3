"""The red-flush batcher's queue is bounded like issuance's (EBILL_QUEUE_MAX): past
the bound a red-flush is refused at once with RESOURCE_EXHAUSTED and a retry delay
(google.rpc.RetryInfo at the edge) instead of queueing without bound.

The pipeline here holds every batch until released, so the queue fills; the
Lifecycle and its batcher are the real ones."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import asyncpg
import pytest

from actors.pipeline import Pipeline
from config.tuning import RED_MAX_INFLIGHT
from engine.errors import ResourceExhausted, Unavailable
from engine.prepare import Prepared
from engine.sealing import KeyRing
from usecases.batcher import Outcome
from usecases.lifecycle import Lifecycle

BOUND = 3


class HeldPipeline:
    """Holds every batch of red bills until ``open`` is set; records what ran."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.seen: list[Any] = []

    async def issue_prepared(self, items: Sequence[Any], atomic: bool = False) -> list[Outcome]:
        await self.open.wait()
        self.seen.extend(items)
        return [Unavailable("outcomes are not looked at here")] * len(items)


async def test_red_flush_queue_is_bounded_and_refusal_is_immediate() -> None:
    pipeline = HeldPipeline()
    lifecycle = Lifecycle(
        cast(asyncpg.Pool, None),  # not reached: red bills go straight to the batcher
        cast(Pipeline, pipeline),
        timeout_s=5.0,
        linger_s=0.0,
        max_queue=BOUND,
        ring=KeyRing.generate(),
    )
    lifecycle.start()

    def red(i: int) -> asyncio.Task[Any]:
        item = cast(Prepared, f"red-{i}")
        return asyncio.create_task(lifecycle._issue([item], atomic=False, timeout_s=None))

    try:
        # Every pipeline slot of the red batcher takes one red bill and is held.
        held = []
        for i in range(RED_MAX_INFLIGHT):
            held.append(red(i))
            await asyncio.sleep(0.02)
        # Then the queue fills up to the bound ...
        queued = [red(100 + i) for i in range(BOUND)]
        await asyncio.sleep(0.02)
        # ... and the next red-flush is refused at once, not after the pipeline.
        with pytest.raises(ResourceExhausted) as refused:
            await asyncio.wait_for(red(999), 1.0)
        assert refused.value.retry_after_s is not None and 0 < refused.value.retry_after_s < 2
        assert "overloaded" in refused.value.message
        pipeline.open.set()
        # Every admitted red bill reached the pipeline (its outcome is the stand-in's).
        for task in held + queued:
            with pytest.raises(Unavailable):
                await task
        assert sorted(pipeline.seen) == sorted(
            [f"red-{i}" for i in range(RED_MAX_INFLIGHT)] + [f"red-{100 + i}" for i in range(BOUND)]
        )
    finally:
        await lifecycle.stop()
