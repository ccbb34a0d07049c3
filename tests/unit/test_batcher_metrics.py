"""Both issuance lanes report to the same queue-depth and refusal series: the
interactive lane (single bills at a window) was left out, so a flood of IssueBill
calls showed an empty queue and no refusals on the dashboard while being refused.

The batchers are the real ones, built as ebill/compose.py builds them; the
pipeline holds every batch until released, so the queues fill."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from prometheus_client import REGISTRY

from engine.errors import ResourceExhausted, Unavailable
from usecases.batcher import Lanes, MicroBatcher, Outcome

BOUND = 4


def sample(name: str) -> float:
    value = REGISTRY.get_sample_value(name)
    return 0.0 if value is None else value


class HeldPipeline:
    def __init__(self) -> None:
        self.open = asyncio.Event()

    async def run(self, items: Sequence[str]) -> list[Outcome]:
        await self.open.wait()
        return [Unavailable("outcomes are not looked at here")] * len(items)


def lanes(pipeline: HeldPipeline) -> Lanes[str]:
    def lane(metered: bool) -> MicroBatcher[str]:
        return MicroBatcher(
            pipeline.run, max_batch=2, linger_s=0.0, max_inflight=1, max_queue=BOUND,
            metered=metered,
        )  # fmt: skip

    return Lanes(interactive=lane(metered=False), bulk=lane(metered=True))


async def test_both_lanes_count_into_queue_depth_and_refusals() -> None:
    pipeline = HeldPipeline()
    both = lanes(pipeline)
    depth0 = sample("ebill_queue_depth")
    refused0 = sample("ebill_overload_refused_total")
    both.start()
    tasks: list[asyncio.Task[list[Outcome]]] = []
    try:
        for interactive in (True, False):
            # The lane's one slot takes a batch of two and is held ...
            tasks.append(asyncio.create_task(both.submit(["a", "b"], interactive=interactive)))
            await asyncio.sleep(0.02)
        # ... then three single bills queue at the window and two at the bulk lane.
        tasks += [asyncio.create_task(both.submit([f"w{i}"], interactive=True)) for i in range(3)]
        tasks += [asyncio.create_task(both.submit([f"j{i}"], interactive=False)) for i in range(2)]
        await asyncio.sleep(0.02)
        assert sample("ebill_queue_depth") - depth0 == 3 + 2  # the sum over both lanes

        # A window's call past the interactive bound is refused, and counted.
        with pytest.raises(ResourceExhausted):
            await both.submit(["x1", "x2"], interactive=True)
        assert both.interactive.refused == 1
        assert sample("ebill_overload_refused_total") - refused0 == 1
        # So is a bulk call past its own bound.
        with pytest.raises(ResourceExhausted):
            await both.submit(["y1", "y2", "y3"], interactive=False)
        assert sample("ebill_overload_refused_total") - refused0 == 2

        pipeline.open.set()
        await asyncio.gather(*tasks)
        await asyncio.sleep(0.02)
        assert sample("ebill_queue_depth") == depth0  # drained: both lanes' share is gone
    finally:
        pipeline.open.set()
        await both.stop()
    assert sample("ebill_queue_depth") == depth0


async def test_a_stopped_batcher_takes_its_queue_off_the_gauge() -> None:
    pipeline = HeldPipeline()
    both = lanes(pipeline)
    depth0 = sample("ebill_queue_depth")
    both.start()
    first = asyncio.create_task(both.submit(["a"], interactive=True))
    await asyncio.sleep(0.02)
    waiting = asyncio.create_task(both.submit(["b", "c"], interactive=True))
    await asyncio.sleep(0.02)
    assert sample("ebill_queue_depth") - depth0 == 2
    # Stopped while two bills still queue: the loop is gone before the slot frees.
    stopping = asyncio.create_task(both.stop())
    await asyncio.sleep(0.02)
    pipeline.open.set()
    await stopping
    await first
    assert not waiting.done()
    waiting.cancel()
    assert sample("ebill_queue_depth") == depth0
