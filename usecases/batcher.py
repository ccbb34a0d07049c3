"""Micro-batching: single-bill RPCs and batch RPCs share pipeline batches.

At most ``max_inflight`` batches are in the pipeline. A batch is formed only
once a pipeline slot is free, from everything that queued meanwhile: under load
batches grow by themselves (fewer, larger hops), and at low load a lone request
waits at most ``linger`` for company. Forming batches before a slot is free
would instead queue many tiny batches behind the busy pipeline.

The queue is bounded (``max_queue`` bills): past it a call is refused at once
with RESOURCE_EXHAUSTED and a retry delay, instead of waiting out its deadline
behind work the pipeline cannot reach in time while memory grows. A call is
admitted whole or not at all, and always when the queue is empty (a batch
larger than the bound still gets through an idle engine).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from config.tuning import OVERLOAD_RETRY_S
from engine.errors import EbillError, ResourceExhausted, Unavailable
from engine.pipeline import Work
from ops import metrics

__all__ = ["Lanes", "MicroBatcher"]

log = logging.getLogger(__name__)

Outcome = Work | EbillError
T = TypeVar("T")


class MicroBatcher(Generic[T]):
    """Batches items of type T (serialised requests, prepared red bills) for ``run``.

    Every batcher adds its queue to ``ebill_queue_depth`` and its refusals to
    ``ebill_overload_refused_total``: the one series is the sum over both issuance
    lanes and the red-flush batcher, so an overloaded interactive lane shows there
    too. ``metered``: also report batch sizes, latencies and batches in flight (the
    bulk issuance lane); the others leave those series to it.
    """

    def __init__(
        self,
        run: Callable[[Sequence[T]], Awaitable[list[Outcome]]],
        *,
        max_batch: int,
        linger_s: float,
        max_inflight: int,
        max_queue: int | None = None,
        metered: bool = True,
    ) -> None:
        self._run = run
        self._max = max_batch
        self._linger = linger_s
        self._metered = metered
        self._max_queue = max_queue
        # Calls refused because the queue was full (tests and the metric read it).
        self.refused = 0
        # This batcher's share of the shared queue-depth gauge, as last reported.
        self._reported_depth = 0
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[Outcome]]] = asyncio.Queue()
        self._slots = asyncio.Semaphore(max_inflight)
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        # When bills last came in or a batch last came out (time.monotonic()):
        # background work (delivery) waits for issuance to be quiet.
        self.last_active = 0.0

    def idle_for(self) -> float:
        """Seconds since the last bill came in or the last batch came out; 0
        while bills wait or a batch is in the pipeline."""
        if self._inflight or not self._queue.empty():
            return 0.0
        return time.monotonic() - self.last_active

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        # Stopped: whatever is still queued is nobody's work any more.
        self._report_depth(0)

    def _report_depth(self, depth: int | None = None) -> None:
        """Moves the shared gauge by this batcher's change only (inc/dec, not set):
        several batchers in one process add up instead of overwriting each other."""
        now = self._queue.qsize() if depth is None else depth
        metrics.QUEUE_DEPTH.inc(now - self._reported_depth)
        self._reported_depth = now

    async def submit(self, bills: Sequence[T]) -> list[Outcome]:
        queued = self._queue.qsize()
        if self._max_queue is not None and queued and queued + len(bills) > self._max_queue:
            self.refused += 1
            metrics.OVERLOAD_REFUSED.inc()
            raise ResourceExhausted(
                f"engine overloaded: {queued} bills already wait for the pipeline "
                f"(bound {self._max_queue}); nothing was issued, retry shortly",
                retry_after_s=OVERLOAD_RETRY_S,
            )
        self.last_active = time.monotonic()
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in bills]
        for bill, fut in zip(bills, futures, strict=True):
            self._queue.put_nowait((bill, fut))
        self._report_depth()
        return list(await asyncio.gather(*futures))

    async def _loop(self) -> None:
        while True:
            await self._slots.acquire()
            first = await self._queue.get()
            batch = [first]
            deadline = time.monotonic() + self._linger
            while len(batch) < self._max:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except TimeoutError:
                    break
            self._report_depth()
            task = asyncio.create_task(self._dispatch(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _dispatch(self, batch: list[tuple[T, asyncio.Future[Outcome]]]) -> None:
        if self._metered:
            metrics.INFLIGHT.inc()
            metrics.BATCH_SIZE.observe(len(batch))
        started = time.perf_counter()
        try:
            results = await self._run([b for b, _ in batch])
        except Exception as exc:  # the pipeline itself failed: every bill gets the error
            log.exception("pipeline batch failed")
            err = exc if isinstance(exc, EbillError) else Unavailable(f"pipeline failed: {exc}")
            results = [err] * len(batch)
        finally:
            self._slots.release()
            self.last_active = time.monotonic()
            if self._metered:
                metrics.INFLIGHT.dec()
        if self._metered:
            metrics.BATCH_LATENCY.observe(time.perf_counter() - started)
        for (_, fut), res in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(res)


class Lanes(Generic[T]):
    """Two batchers in front of one pipeline: interactive and bulk.

    A bill for a patient at a window must not wait behind bulk jobs. With one
    batcher it did twice: for a pipeline slot (every slot held by a batch of 200)
    and then inside a batch of 200 (every stage works through all of it before
    the bill comes out). The interactive lane has pipeline slots of its own that
    bulk work cannot take, and small batches, so a single bill enters the
    pipeline at once and comes out after a few bills' work. Bulk keeps its own
    budget whatever the interactive load, so neither starves the other.
    """

    def __init__(self, interactive: MicroBatcher[T], bulk: MicroBatcher[T]) -> None:
        self.interactive = interactive
        self.bulk = bulk

    def start(self) -> None:
        self.interactive.start()
        self.bulk.start()

    async def stop(self) -> None:
        await self.interactive.stop()
        await self.bulk.stop()

    def idle_for(self) -> float:
        """How long both lanes have been quiet (0 while either works)."""
        return min(self.interactive.idle_for(), self.bulk.idle_for())

    async def submit(self, items: Sequence[T], *, interactive: bool) -> list[Outcome]:
        lane = self.interactive if interactive else self.bulk
        return await lane.submit(items)
