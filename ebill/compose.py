"""The engine's use cases, built once from the database pool, the data key ring,
the pipeline and the external clients (ebill/wiring.py), and shared by every
edge: the gRPC servicers, the HTTP routes and the background loops.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import asyncpg

from actors.pipeline import Pipeline, PipelineConfig
from config.settings import Settings, read_public_key
from ebill.http.public import Public
from ebill.wiring import Clients
from engine.sealing import KeyRing
from usecases.batcher import Lanes, MicroBatcher
from usecases.catalog import Catalogue
from usecases.certificates import Certificates
from usecases.delivery import Delivery
from usecases.gateway import Gateway
from usecases.identity import Identity, IdentityPolicy
from usecases.issuance import Issuance
from usecases.lifecycle import Lifecycle
from usecases.paper import Paper
from usecases.selfservice import SelfService

__all__ = ["UseCases", "build_pipeline", "build_use_cases"]

log = logging.getLogger(__name__)


def build_pipeline(settings: Settings, database_url: str) -> Pipeline:
    """The Ray pipeline's stages (actors/pipeline.py); Ray is already initialised.
    Its actors open their own clients: they run in other processes."""
    s = settings
    return Pipeline(
        PipelineConfig(
            database_url=database_url,
            signer_addr=s.signer_addr,
            signer_key_id=s.signer_key_id,
            fiscal_addr=s.fiscal_addr,
            data_key_file=s.data_key_file,
            signer_tls=s.hop_tls(s.signer_tls_dir),
            fiscal_tls=s.hop_tls(s.fiscal_tls_dir),
            verify_fiscal=s.verify_fiscal,
            fiscal_timeout_s=s.fiscal_timeout_s,
            outbox_grace_s=s.outbox_grace_s,
            replicas=s.stage_replicas,
            fiscal_public_key=(
                read_public_key(s.fiscal_public_key_file) if s.fiscal_public_key_file else b""
            ),
        )
    )


def _lanes(settings: Settings, pipeline: Pipeline) -> Lanes[bytes]:
    # Each lane has its own queue bound: bulk work filling its queue never makes
    # a window's bill refused, and the other way round.
    s = settings
    return Lanes(
        interactive=MicroBatcher(
            functools.partial(pipeline.issue, interactive=True),
            max_batch=s.batch_max,
            linger_s=s.batch_linger_ms / 1000,
            # As many as bulk: single bills alone get the pipeline they had before.
            max_inflight=s.max_inflight_batches,
            max_queue=s.queue_max,
            metered=False,
        ),
        bulk=MicroBatcher(
            pipeline.issue,
            max_batch=s.batch_max,
            linger_s=s.batch_linger_ms / 1000,
            max_inflight=s.max_inflight_batches,
            max_queue=s.queue_max,
        ),
    )


@dataclass(frozen=True, slots=True)
class UseCases:
    """Every use case of the engine process, one instance each."""

    batcher: Lanes[bytes]
    issuance: Issuance
    lifecycle: Lifecycle
    paper: Paper
    delivery: Delivery
    identity: Identity
    catalogue: Catalogue
    certificates: Certificates
    gateway: Gateway
    # Rendering and verification behind the public pages and the console.
    public: Public
    selfservice: SelfService

    def start(self) -> None:
        """Start the batching tasks (on the running loop)."""
        self.batcher.start()
        self.lifecycle.start()

    async def stop(self) -> None:
        """Stop, most dependent first: gateway batches issue through the batcher."""
        await self.gateway.stop()
        await self.batcher.stop()
        await self.lifecycle.stop()
        await self.identity.close()


def build_use_cases(
    settings: Settings,
    pool: asyncpg.Pool,
    ring: KeyRing,
    pipeline: Pipeline,
    clients: Clients,
) -> UseCases:
    """The use cases over the pool, the pipeline and the engine's one client of
    each external system. Nothing runs until :meth:`UseCases.start`."""
    s = settings
    batcher = _lanes(s, pipeline)
    issuance = Issuance(batcher, pool, pipeline, s.rpc_timeout_s, ring=ring)
    lifecycle = Lifecycle(
        pool,
        pipeline,
        s.rpc_timeout_s,
        linger_s=s.batch_linger_ms / 1000,
        max_queue=s.queue_max,
        ring=ring,
    )
    delivery = Delivery(
        pool,
        clients.channels(),
        ring,
        public_url=s.public_url,
        max_attempts=s.delivery_max_attempts,
        batch=s.delivery_batch,
        concurrency=s.delivery_concurrency,
        idle_for=batcher.idle_for,
        quiet_s=s.delivery_quiet_s,
        max_defer_s=s.delivery_max_defer_s,
    )
    # Every call authenticated and authorized (ebill.grpc.auth); secrets of apps
    # and TOTP seeds are sealed with the data key ring.
    identity = Identity(
        pool,
        ring,
        IdentityPolicy(
            window_s=s.auth_window_s,
            session_ttl_s=s.session_ttl_s,
            max_failures=s.login_max_failures,
            lock_s=s.login_lock_s,
            cache_s=s.auth_cache_s,
        ),
    )
    return UseCases(
        batcher=batcher,
        issuance=issuance,
        lifecycle=lifecycle,
        paper=Paper(pool, ring),
        delivery=delivery,
        identity=identity,
        catalogue=Catalogue(pool, clients.fiscal),
        certificates=Certificates(
            pool, clients.signer, clients.fiscal, clients.ca, warn_days=s.cert_warn_days
        ),
        gateway=Gateway(pool, issuance),
        # Rendering: the platform's key and the unit key through the engine's clients.
        public=Public.create(pool, clients.fiscal, clients.signer, s, ring),
        # Patients' self-service retrieval (phone or ID card + SMS code).
        selfservice=SelfService(pool, ring, clients.sms, public_url=s.public_url),
    )
