"""The issuance pipeline on Ray. Every Ray API call of the project lives in this
module (the way Ray Serve keeps them in one wrapper).

    validate -> reserve number -> unit-sign -> fiscal countersign -> archive

One actor per stage (more with ``replicas``), each called once per batch. The
driver submits the whole chain of calls for a batch at once, passing each
stage's ObjectRef to the next, so batches overlap: while one batch is being
signed the next is being reserved.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
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
    verify_fiscal: bool = True
    replicas: int = 1
    fiscal_timeout_s: float = 3.0
    outbox_grace_s: float = 30.0
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


class _Placed:
    """Mixed into every stage actor: where it runs, for the placement metric."""

    def node_id(self) -> str:
        return str(ray.get_runtime_context().get_node_id())


def _actor(cls: type, *args: Any, **kwargs: Any) -> Any:
    placed = type(cls.__name__, (cls, _Placed), {})
    # num_cpus=0: the stages are I/O-bound coordinators, and five of them must fit
    # beside the signer and the database on a 2-core machine. SPREAD puts the
    # replicas of a stage on different nodes of a cluster.
    return (
        ray.remote(placed)
        .options(num_cpus=0, max_concurrency=64, scheduling_strategy="SPREAD")
        .remote(*args, **kwargs)
    )


class Pipeline:
    """Handles to the stage actors and the call chain through them."""

    def __init__(self, config: PipelineConfig) -> None:
        n = max(1, config.replicas)
        self._stages: dict[str, list[Any]] = {
            "validate": [_actor(ValidateStage, config.database_url) for _ in range(n)],
            "reserve": [
                _actor(ReserveStage, config.database_url, config.outbox_grace_s) for _ in range(n)
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
                    tls=config.fiscal_tls,
                )
                for _ in range(n)
            ],
            "archive": [
                _actor(
                    ArchiveStage,
                    config.database_url,
                    config.fiscal_addr,
                    config.verify_fiscal,
                    tls=config.fiscal_tls,
                )
                for _ in range(n)
            ],
        }
        self._next = {name: itertools.cycle(actors) for name, actors in self._stages.items()}

    async def issue(self, bills: Sequence[bytes]) -> list[Work | EbillError]:
        """Run one batch of serialised BillRequests through every stage; one
        outcome per bill, in order."""
        validated = next(self._next["validate"]).run.remote(list(bills))
        return await self._from_reserve(validated, atomic=False)

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
