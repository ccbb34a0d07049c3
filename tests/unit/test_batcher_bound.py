"""The micro-batcher's queue is bounded (issue #11 item 8): past the bound a call is
refused at once with RESOURCE_EXHAUSTED and a retry delay; admitted calls all finish."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from engine.errors import ResourceExhausted
from usecases.batcher import MicroBatcher, Outcome


class _Gate:
    """A pipeline stand-in that holds every batch until released."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.seen: list[int] = []

    async def run(self, items: Sequence[int]) -> list[Outcome]:
        await self.open.wait()
        self.seen.extend(items)
        return [ResourceExhausted("stand-in outcome", field=str(i)) for i in items]


async def _offer() -> None:
    gate = _Gate()
    batcher: MicroBatcher[int] = MicroBatcher(
        gate.run, max_batch=2, linger_s=0.0, max_inflight=1, max_queue=5
    )
    batcher.start()
    try:
        # The one slot takes the first batch (2 items) and blocks on the gate.
        first = asyncio.create_task(batcher.submit([0, 1]))
        await asyncio.sleep(0.05)
        admitted = [asyncio.create_task(batcher.submit([i])) for i in range(2, 7)]
        await asyncio.sleep(0.01)  # five queued: the bound
        with pytest.raises(ResourceExhausted) as refused:
            await asyncio.wait_for(batcher.submit([7]), 1.0)  # at once, not after the gate
        assert refused.value.retry_after_s is not None and 0 < refused.value.retry_after_s < 2
        assert "overloaded" in refused.value.message
        with pytest.raises(ResourceExhausted):
            await batcher.submit([8, 9])
        assert batcher.refused == 2
        gate.open.set()
        await first
        for task in admitted:
            await task
        assert sorted(gate.seen) == list(range(7))  # every admitted item ran, once
        # Drained: a call larger than the bound is still admitted into an empty queue.
        assert len(await batcher.submit(list(range(10, 20)))) == 10
    finally:
        await batcher.stop()


def test_queue_is_bounded_and_refusal_is_immediate() -> None:
    asyncio.run(_offer())


async def _unbounded() -> None:
    gate = _Gate()
    batcher: MicroBatcher[int] = MicroBatcher(gate.run, max_batch=2, linger_s=0.0, max_inflight=1)
    batcher.start()
    tasks = [asyncio.create_task(batcher.submit([i])) for i in range(50)]
    await asyncio.sleep(0.05)
    gate.open.set()
    await asyncio.gather(*tasks)
    await batcher.stop()
    assert batcher.refused == 0


def test_no_bound_given_means_none() -> None:
    asyncio.run(_unbounded())
