"""The issuance pipeline on Ray. Every Ray API call of the project lives in this
module (the way Ray Serve keeps them in one wrapper).

    validate -> reserve number -> unit-sign -> fiscal countersign -> archive

One actor per stage (more with ``replicas``), each called once per batch. The
driver submits the whole chain of calls for a batch at once, passing each
stage's ObjectRef to the next, so batches overlap: while one batch is being
signed the next is being reserved.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from actors.stages import (
    ArchiveStage,
    CountersignStage,
    ReserveStage,
    UnitSignStage,
    ValidateStage,
)
from config.tls import TlsFiles
from config.tuning import BULK_COUNTERSIGN_INFLIGHT
from engine.errors import EbillError
from engine.pipeline import Item, Work, resolve_duplicates
from engine.prepare import Prepared

__all__ = ["Pipeline", "PipelineConfig", "init_ray", "shutdown_ray"]

log = logging.getLogger(__name__)

STAGES = ("validate", "reserve", "unit_sign", "countersign", "archive")


@dataclass(frozen=True)
class PipelineConfig:
    database_url: str
    signer_addr: str
    signer_key_id: str
    fiscal_addr: str
    # The data key file (config/keys.py) the reserve stage seals payer data with:
    # a path, read where the actor runs, so no key travels through Ray.
    data_key_file: Path
    verify_fiscal: bool = True
    replicas: int = 1
    fiscal_timeout_s: float = 3.0
    outbox_grace_s: float = 30.0
    # The fiscal platform's public key, pinned (config.settings.read_public_key);
    # empty: trusted on first use.
    fiscal_public_key: bytes = b""
    # Mutual TLS towards the signer and the platform; None: plaintext.
    signer_tls: TlsFiles | None = None
    fiscal_tls: TlsFiles | None = None


def init_ray(address: str = "", num_cpus: int = 2) -> None:
    """Join the cluster at ``address``, or start a private local one."""
    if ray.is_initialized():
        return
    if address:
        # Joining a cluster: the nodes must run this same code (one image on
        # every node under KubeRay, or the same installed package).
        ray.init(address=address, namespace="ebill", logging_level=logging.WARNING)
    else:
        ray.init(
            num_cpus=num_cpus,
            namespace="ebill",
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=True,
        )


def shutdown_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()


# A stage actor that dies (its process killed, its node lost) is started again
# by Ray, without limit: a stage is only a coordinator, holding nothing a restart
# loses (its connections open lazily again). The calls it was running are sent
# again, a few times: every stage may run a batch twice. Validate is pure; reserve
# answers a bus_no it already stored with that bill (replayed); signing again makes
# another valid signature of a bill not yet archived; the fiscal platform answers
# a repeated countersign with the first; archive writes only rows still unfinished.
MAX_TASK_RETRIES = 3


class _Placed:
    """Mixed into every stage actor: where it runs (the placement metric), its
    process (a test kills it), and a cheap call that answers while it lives."""

    def node_id(self) -> str:
        return str(ray.get_runtime_context().get_node_id())

    def pid(self) -> int:
        return os.getpid()

    def ping(self) -> bool:
        return True


def _actor(cls: type, *args: Any, **kwargs: Any) -> Any:
    placed = type(cls.__name__, (cls, _Placed), {})
    # num_cpus=0: the stages are I/O-bound coordinators, and five of them must fit
    # beside the signer and the database on a 2-core machine. SPREAD puts the
    # replicas of a stage on different nodes of a cluster.
    return (
        ray.remote(placed)
        .options(
            num_cpus=0,
            max_concurrency=64,
            scheduling_strategy="SPREAD",
            max_restarts=-1,
            max_task_retries=MAX_TASK_RETRIES,
        )
        .remote(*args, **kwargs)
    )


# ray.wait blocks; bulk batches wait for their stages in threads of their own, so
# that they never take the default executor's few threads from other work.
_WAITERS = ThreadPoolExecutor(max_workers=32, thread_name_prefix="ray-wait")


async def _ready(ref: Any) -> None:
    """Wait until the stage behind ``ref`` has finished, without fetching its result
    into this process (the next stage reads it from the object store)."""
    await asyncio.get_running_loop().run_in_executor(
        _WAITERS, functools.partial(ray.wait, [ref], num_returns=1, fetch_local=False)
    )


class Pipeline:
    """Handles to the stage actors and the call chain through them."""

    _gate: asyncio.Semaphore | None = None

    def __init__(self, config: PipelineConfig) -> None:
        n = max(1, config.replicas)
        self._stages: dict[str, list[Any]] = {
            "validate": [_actor(ValidateStage, config.database_url) for _ in range(n)],
            "reserve": [
                _actor(
                    ReserveStage, config.database_url, config.data_key_file, config.outbox_grace_s
                )
                for _ in range(n)
            ],
            "unit_sign": [
                _actor(
                    UnitSignStage, config.signer_addr, config.signer_key_id, tls=config.signer_tls
                )
                for _ in range(n)
            ],
            "countersign": [
                _actor(
                    CountersignStage,
                    config.fiscal_addr,
                    config.fiscal_timeout_s,
                    config.signer_addr,
                    config.signer_key_id,
                    tls=config.fiscal_tls,
                    signer_tls=config.signer_tls,
                )
                for _ in range(n)
            ],
            "archive": [
                _actor(
                    ArchiveStage,
                    config.database_url,
                    config.fiscal_addr,
                    config.verify_fiscal,
                    config.fiscal_public_key,
                    tls=config.fiscal_tls,
                )
                for _ in range(n)
            ],
        }
        self._next = {name: itertools.cycle(actors) for name, actors in self._stages.items()}

    async def issue(
        self, bills: Sequence[bytes], *, interactive: bool = False
    ) -> list[Work | EbillError]:
        """Run one batch of serialised BillRequests through every stage; one
        outcome per bill, in order. ``interactive``: someone waits at a window;
        bulk batches take turns at the fiscal platform (see ``_bulk``)."""
        validated = next(self._next["validate"]).run.remote(list(bills))
        if interactive:
            return await self._from_reserve(validated, atomic=False)
        return await self._bulk(validated)

    async def _bulk(self, ref: Any) -> list[Work | EbillError]:
        """A bulk batch reaches the platform only when fewer than
        BULK_COUNTERSIGN_INFLIGHT bulk batches are there. The platform works
        through its calls in turn (the sandbox under one lock), so a batch sent
        early only waits there, and a window's bill sent after it waits behind
        it; held back here, the window's bill overtakes it. The platform stays
        busy: the next bulk batch is signed and ready when one returns."""
        ref = next(self._next["reserve"]).run.remote(ref, False)
        ref = next(self._next["unit_sign"]).run.remote(ref)
        await _ready(ref)
        async with self._bulk_gate():
            ref = next(self._next["countersign"]).run.remote(ref)
            await _ready(ref)
        ref = next(self._next["archive"]).run.remote(ref)
        items = await ref
        return resolve_duplicates(items)

    def _bulk_gate(self) -> asyncio.Semaphore:
        # Made on first use, inside the event loop that issues.
        if self._gate is None:
            self._gate = asyncio.Semaphore(BULK_COUNTERSIGN_INFLIGHT)
        return self._gate

    async def issue_prepared(
        self, prepared: Sequence[Prepared], *, atomic: bool = False
    ) -> list[Work | EbillError]:
        """Issue bills the edge prepared itself (red bills, a refund's remainder):
        every stage from reserve on. ``atomic``: all are reserved or none."""
        return await self._from_reserve(list(prepared), atomic=atomic)

    async def _from_reserve(self, ref: Any, *, atomic: bool) -> list[Work | EbillError]:
        ref = next(self._next["reserve"]).run.remote(ref, atomic)
        for name in STAGES[2:]:
            ref = next(self._next[name]).run.remote(ref)
        items = await ref
        return resolve_duplicates(items)

    async def validate(self, bills: Sequence[bytes]) -> list[Any]:
        """Only the validate stage: Prepared or an error per serialised request."""
        out: list[Any] = await next(self._next["validate"]).run.remote(list(bills))
        return out

    async def recover(self, works: Sequence[Work], fiscal_timeout_s: float = 30.0) -> list[Item]:
        """Finish bills taken from the outbox: the same stages from unit-sign on,
        with a patient deadline for the fiscal platform."""
        ref: Any = list(works)
        ref = next(self._next["unit_sign"]).run.remote(ref)
        ref = next(self._next["countersign"]).run.remote(ref, fiscal_timeout_s)
        ref = next(self._next["archive"]).run.remote(ref)
        items: list[Item] = await ref
        return items

    async def placement(self) -> dict[str, list[str]]:
        """Per stage, the Ray node each replica runs on."""
        return {
            name: [await a.node_id.remote() for a in actors]
            for name, actors in self._stages.items()
        }

    async def healthy(self, timeout_s: float = 2.0) -> bool:
        """Whether every stage actor answers within ``timeout_s`` (one restarting
        after a crash does not, until it is back)."""
        calls = [a.ping.remote() for actors in self._stages.values() for a in actors]
        try:
            await asyncio.wait_for(asyncio.gather(*calls), timeout_s)
        except Exception as exc:  # any failure (actor dead, timeout) means not healthy
            log.warning("pipeline not healthy: %s", type(exc).__name__)
            return False
        return True

    async def stage_pids(self) -> dict[str, list[int]]:
        """Per stage, the process id of each replica (tests kill one)."""
        return {
            name: [await a.pid.remote() for a in actors] for name, actors in self._stages.items()
        }

    async def fiscal_circuit_open(self) -> bool:
        stats = [await a.stats.remote() for a in self._stages["countersign"]]
        return any(s.get("circuit_open") for s in stats)

    async def warm(self) -> None:
        """Open every stage's connections before the first real batch."""
        for actor in self._stages["validate"]:
            await actor.catalog.remote()

    async def stats(self) -> dict[str, list[dict[str, float]]]:
        out: dict[str, list[dict[str, float]]] = {}
        for name, actors in self._stages.items():
            out[name] = [await a.stats.remote() for a in actors]
        return out

    async def drain_durations(self) -> dict[str, list[float]]:
        """Per stage, the batch durations recorded since the last call."""
        out: dict[str, list[float]] = {}
        for name, actors in self._stages.items():
            out[name] = [d for a in actors for d in await a.drain_durations.remote()]
        return out

    def kill(self) -> None:
        for actors in self._stages.values():
            for a in actors:
                ray.kill(a)
