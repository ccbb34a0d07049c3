"""Interactive priority in the batcher (issue #11 item 12): a single bill does not
wait behind bulk batches for a pipeline slot, nor inside one of their batches.

The pipeline here is a coroutine that takes a fixed time per batch, as the real
one does under load; the batchers are the real ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from engine.errors import Unavailable
from usecases.batcher import Lanes, MicroBatcher, Outcome

BULK_BATCH_S = 0.2


class SlowPipeline:
    """Every batch takes BULK_BATCH_S, whatever its size; records the batches."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def run(self, items: Sequence[str]) -> list[Outcome]:
        self.batches.append(list(items))
        await asyncio.sleep(BULK_BATCH_S)
        return [Unavailable("outcomes are not looked at here")] * len(items)


def lanes(pipeline: SlowPipeline) -> Lanes[str]:
    def batcher(inflight: int) -> MicroBatcher[str]:
        return MicroBatcher(
            pipeline.run, max_batch=200, linger_s=0.003, max_inflight=inflight, metered=False
        )

    return Lanes(interactive=batcher(2), bulk=batcher(2))


async def test_single_bill_does_not_wait_behind_bulk_batches() -> None:
    pipeline = SlowPipeline()
    both = lanes(pipeline)
    both.start()
    try:
        # Bulk work for five pipeline batches: every bulk slot is taken, the rest queues.
        bulk = [
            asyncio.create_task(both.submit([f"b{i}-{j}" for j in range(200)], interactive=False))
            for i in range(5)
        ]
        await asyncio.sleep(0.02)
        started = time.monotonic()
        await both.submit(["patient"], interactive=True)
        waited = time.monotonic() - started
        # One batch's time, not the bulk backlog's (three batch times behind one lane).
        assert waited < 1.5 * BULK_BATCH_S, waited
        (own,) = [b for b in pipeline.batches if "patient" in b]
        assert own == ["patient"]  # not inside a bulk batch of 200
        await asyncio.gather(*bulk)
    finally:
        await both.stop()


async def test_bulk_keeps_its_slots_under_interactive_load() -> None:
    pipeline = SlowPipeline()
    both = lanes(pipeline)
    both.start()
    try:
        singles = [asyncio.create_task(both.submit([f"s{i}"], interactive=True)) for i in range(50)]
        await asyncio.sleep(0.02)
        started = time.monotonic()
        await both.submit([f"b{j}" for j in range(200)], interactive=False)
        assert time.monotonic() - started < 1.5 * BULK_BATCH_S
        await asyncio.gather(*singles)
    finally:
        await both.stop()
