"""The engine's gRPC server, assembled: database pool, pipeline, use cases,
servicers, interceptors, health, reflection, metrics and the background loops."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import Callable

import asyncpg
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import REGISTRY, start_http_server

from actors.pipeline import Pipeline, PipelineConfig, init_ray
from clients._grpc import server_credentials
from clients.fiscal import FiscalClient
from clients.fiscal_catalog import CaClient, FiscalCatalogClient
from clients.signer import SignerClient
from config import keys
from config.settings import Settings, read_public_key, split_addr
from config.tuning import (
    ENGINE_MAX_MESSAGE_BYTES,
    GRPC_KEEPALIVE_PERMIT_WITHOUT_CALLS,
    SERVER_KEEPALIVE_TIME_MS,
    SERVER_KEEPALIVE_TIMEOUT_MS,
    SERVER_MAX_CONNECTION_IDLE_MS,
    SERVER_MIN_PING_INTERVAL_MS,
    STATS_INTERVAL_S,
)
from ebill.grpc.audit import AuditServicer
from ebill.grpc.auth import AuthInterceptor
from ebill.grpc.catalog import CatalogServicer
from ebill.grpc.delivery import DeliveryServicer
from ebill.grpc.identity import IdentityServicer
from ebill.grpc.issuance import SERVICE_NAME, IssuanceServicer
from ebill.grpc.lifecycle import LifecycleServicer
from ebill.grpc.stock import StockServicer
from ebill.healthz import serve_health
from ebill.http.app import build_app
from ebill.http.public import Public
from ebill.http.serve import HttpServer
from ebill.http.services import Services
from ebill.interceptors import interceptors
from engine.delivery import bill_url
from ops import metrics
from protos.ebill.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    catalog_pb2,
    catalog_pb2_grpc,
    delivery_pb2,
    delivery_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
    issuance_pb2,
    issuance_pb2_grpc,
    lifecycle_pb2,
    lifecycle_pb2_grpc,
    stock_pb2,
    stock_pb2_grpc,
)
from storage.db import connect_pool, open_embedded, pending_migrations, with_application_name
from usecases.batcher import Lanes, MicroBatcher
from usecases.catalog import Catalogue, sync_loop
from usecases.certificates import Certificates, expiry_loop
from usecases.delivery import Delivery, channels_from, delivery_loop
from usecases.gateway import Gateway
from usecases.identity import Identity, IdentityPolicy
from usecases.issuance import Issuance
from usecases.lifecycle import Lifecycle
from usecases.paper import Paper
from usecases.personal import seal_plaintext
from usecases.recovery import recover_forever
from usecases.selfservice import SelfService
from usecases.stats import poll_stats
from usecases.stock.loop import stock_loop
from usecases.translog import translog_loop

__all__ = ["run", "serve", "server_options"]

log = logging.getLogger(__name__)


HEALTH_INTERVAL_S = 1.0
HEALTH_TIMEOUT_S = 2.0


class _Serving:
    """The engine's health as last set, for the plain HTTP probe."""

    ok = False


async def watch_health(
    servicer: health.aio.HealthServicer,
    pipeline: Pipeline,
    pool: asyncpg.Pool,
    state: _Serving | None = None,
) -> None:
    """Health follows what issuing a bill needs: NOT_SERVING while the database
    does not answer or a pipeline stage is down (restarting), SERVING again when
    both are back. Signer and fiscal platform outages do not count: bills then
    still issue (pending) or wait in the outbox."""
    serving = True
    while True:
        await asyncio.sleep(HEALTH_INTERVAL_S)
        try:
            await asyncio.wait_for(pool.fetchval("SELECT 1"), HEALTH_TIMEOUT_S)
            ok = await pipeline.healthy(HEALTH_TIMEOUT_S)
        except Exception as exc:  # the database away, in whatever way it shows
            log.warning("health: database not answering (%s)", type(exc).__name__)
            ok = False
        if state is not None:
            state.ok = ok
        if ok != serving:
            serving = ok
            log.warning("health: %s", "SERVING" if ok else "NOT_SERVING")
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if ok
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in ("", SERVICE_NAME):
                await servicer.set(name, status)


def server_options(
    *, max_connection_idle_ms: int = SERVER_MAX_CONNECTION_IDLE_MS
) -> list[tuple[str, int]]:
    """Channel options of the engine's gRPC server: message sizes and keepalive
    (config.tuning says why each value)."""
    return [
        ("grpc.max_receive_message_length", ENGINE_MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", ENGINE_MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", SERVER_KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", SERVER_KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", int(GRPC_KEEPALIVE_PERMIT_WITHOUT_CALLS)),
        # Keep pinging through a long call that sends no data (the default stops at 2).
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", SERVER_MIN_PING_INTERVAL_MS),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", SERVER_MIN_PING_INTERVAL_MS),
        ("grpc.max_connection_idle_ms", max_connection_idle_ms),
    ]


async def serve(settings: Settings, *, ready: Callable[[], None] | None = None) -> None:
    """Run the engine until SIGTERM or SIGINT."""
    embedded = None
    url = settings.database_url
    if not url:
        embedded = open_embedded(settings)
        url = embedded.url
        log.info("embedded PostgreSQL at %s", url)
    # The pipeline's stages connect with the same name plus their own.
    url = with_application_name(url, settings.db_application_name)
    # The data key ring: made on first run for the embedded default.
    ring = keys.load(settings)
    pool = await connect_pool(url, size=settings.db_pool_size, migrate=settings.migrate_on_start)
    if not settings.migrate_on_start:
        async with pool.acquire() as conn:
            pending = await pending_migrations(conn)
        if pending:
            await pool.close()
            raise SystemExit(
                f"the database lacks migrations {', '.join(pending)}: run `ebill migrate` "
                "(with a role that owns the schema), then start the engine "
                "(EBILL_MIGRATE_ON_START=false)"
            )
    # Rows stored in plaintext before migration 0010 are sealed before serving.
    await seal_plaintext(pool, ring)
    init_ray(settings.ray_address, settings.ray_num_cpus)
    pipeline = Pipeline(
        PipelineConfig(
            database_url=url,
            signer_addr=settings.signer_addr,
            signer_key_id=settings.signer_key_id,
            fiscal_addr=settings.fiscal_addr,
            data_key_file=settings.data_key_file,
            signer_tls=settings.hop_tls(settings.signer_tls_dir),
            fiscal_tls=settings.hop_tls(settings.fiscal_tls_dir),
            verify_fiscal=settings.verify_fiscal,
            fiscal_timeout_s=settings.fiscal_timeout_s,
            outbox_grace_s=settings.outbox_grace_s,
            replicas=settings.stage_replicas,
            fiscal_public_key=(
                read_public_key(settings.fiscal_public_key_file)
                if settings.fiscal_public_key_file
                else b""
            ),
        )
    )
    # Each lane has its own queue bound: bulk work filling its queue never makes
    # a window's bill refused, and the other way round.
    batcher = Lanes(
        interactive=MicroBatcher(
            functools.partial(pipeline.issue, interactive=True),
            max_batch=settings.batch_max,
            linger_s=settings.batch_linger_ms / 1000,
            # As many as bulk: single bills alone get the pipeline they had before.
            max_inflight=settings.max_inflight_batches,
            max_queue=settings.queue_max,
            metered=False,
        ),
        bulk=MicroBatcher(
            pipeline.issue,
            max_batch=settings.batch_max,
            linger_s=settings.batch_linger_ms / 1000,
            max_inflight=settings.max_inflight_batches,
            max_queue=settings.queue_max,
        ),
    )
    batcher.start()

    issuance = Issuance(batcher, pool, pipeline, settings.rpc_timeout_s, ring=ring)
    lifecycle = Lifecycle(
        pool,
        pipeline,
        settings.rpc_timeout_s,
        linger_s=settings.batch_linger_ms / 1000,
        max_queue=settings.queue_max,
        ring=ring,
    )
    lifecycle.start()
    delivery = Delivery(
        pool,
        channels_from(settings),
        ring,
        public_url=settings.public_url,
        max_attempts=settings.delivery_max_attempts,
        batch=settings.delivery_batch,
        concurrency=settings.delivery_concurrency,
        idle_for=batcher.idle_for,
        quiet_s=settings.delivery_quiet_s,
        max_defer_s=settings.delivery_max_defer_s,
    )

    # Every call authenticated and authorized (ebill.grpc.auth); secrets of apps
    # and TOTP seeds are sealed with the data key ring.
    identity = Identity(
        pool,
        ring,
        IdentityPolicy(
            window_s=settings.auth_window_s,
            session_ttl_s=settings.session_ttl_s,
            max_failures=settings.login_max_failures,
            lock_s=settings.login_lock_s,
            cache_s=settings.auth_cache_s,
        ),
    )
    if not settings.auth:
        log.warning("EBILL_AUTH=0: calls are not authenticated (benchmarks only)")
    auth = AuthInterceptor(identity if settings.auth else None)
    server = grpc.aio.server(interceptors=interceptors(auth), options=server_options())
    issuance_pb2_grpc.add_IssuanceServiceServicer_to_server(IssuanceServicer(issuance), server)
    lifecycle_pb2_grpc.add_LifecycleServiceServicer_to_server(
        LifecycleServicer(lifecycle, Paper(pool, ring)), server
    )
    stock_pb2_grpc.add_StockServiceServicer_to_server(StockServicer(pool, settings), server)
    audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(pool), server)
    delivery_pb2_grpc.add_DeliveryServiceServicer_to_server(DeliveryServicer(delivery), server)
    identity_pb2_grpc.add_IdentityServiceServicer_to_server(IdentityServicer(identity), server)
    catalogue = Catalogue(
        pool,
        FiscalCatalogClient(settings.fiscal_addr, tls=settings.hop_tls(settings.fiscal_tls_dir)),
    )
    fiscal_tls = settings.hop_tls(settings.fiscal_tls_dir)
    certificates = Certificates(
        pool,
        lambda key_id: SignerClient(
            settings.signer_addr, key_id, tls=settings.hop_tls(settings.signer_tls_dir)
        ),
        FiscalCatalogClient(settings.fiscal_addr, tls=fiscal_tls),
        CaClient(settings.fiscal_addr, tls=fiscal_tls),
        warn_days=settings.cert_warn_days,
    )
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(
        CatalogServicer(catalogue, certificates), server
    )
    health_servicer = health.aio.HealthServicer()
    # The servicer calls the server SERVING from the start; not until the
    # pipeline is warm, or load balancers send bills to an engine not ready.
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            issuance_pb2.DESCRIPTOR.services_by_name["IssuanceService"].full_name,
            lifecycle_pb2.DESCRIPTOR.services_by_name["LifecycleService"].full_name,
            stock_pb2.DESCRIPTOR.services_by_name["StockService"].full_name,
            audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
            delivery_pb2.DESCRIPTOR.services_by_name["DeliveryService"].full_name,
            identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name,
            catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    tls = settings.server_tls()
    if tls is None:
        port = server.add_insecure_port(settings.grpc_addr)
    else:
        creds = server_credentials(tls, client_auth=settings.tls_client_auth)
        port = server.add_secure_port(settings.grpc_addr, creds)
    if port == 0:
        raise SystemExit(f"cannot listen on {settings.grpc_addr}")
    if settings.metrics_port:
        # The last `ebill inspect`'s figures (disk, backups, runway...) on the same scrape.
        REGISTRY.register(
            metrics.InspectionFile(settings.data_dir / "inspections" / metrics.INSPECTION_FILE)
        )
        host, port = split_addr(settings.metrics_addr)
        start_http_server(port, addr=host)
    serving_state = _Serving()
    health_http = (
        await serve_health(settings.health_addr, lambda: serving_state.ok)
        if settings.health_addr
        else None
    )
    await server.start()
    # Warm the pipeline: the first batch pays for actor start-up and connections.
    await pipeline.warm()
    for stage, nodes in (await pipeline.placement()).items():
        for node in nodes:
            metrics.STAGE_REPLICAS.labels(stage, node).inc()
        log.info("stage %s replicas on nodes %s", stage, nodes)
    # The HTTP server (ebill/http/): same loop, same use cases, same batcher.
    # Started before health says SERVING, so a ready engine serves both.
    gateway = Gateway(pool, issuance)
    http: HttpServer | None = None
    if settings.http_addr:
        # Rendering for the public pages and the console: the engine's own clients
        # of the platform (its key) and the signer (the unit key, archive manifests).
        hop_signer = SignerClient(
            settings.signer_addr,
            settings.signer_key_id,
            tls=settings.hop_tls(settings.signer_tls_dir),
        )
        public = Public.create(
            pool,
            FiscalClient(settings.fiscal_addr, tls=settings.hop_tls(settings.fiscal_tls_dir)),
            hop_signer,
            settings,
            ring,
        )
        http = HttpServer(
            build_app(
                Services(
                    settings=settings,
                    pool=pool,
                    issuance=issuance,
                    lifecycle=lifecycle,
                    paper=Paper(pool, ring),
                    gateway=gateway,
                    apps=identity,
                    identity=identity,
                    rendering=public.rendering,
                    verification=public.verification,
                    signer=hop_signer,
                    ring=ring,
                    # The H5 page of a bill (the gateway's getEBillPicUrl answers it).
                    h5_url=lambda code, no, check: bill_url(settings.public_url, code, no, check),
                    # Patients' self-service retrieval (phone or ID card + SMS code).
                    extra={
                        "selfservice": SelfService(
                            pool, ring, delivery.channels.sms, public_url=settings.public_url
                        ),
                        "delivery": delivery,  # the gateway's sendBillNotice
                    },
                )
            ),
            settings,
        )
        await http.start()
        log.info("HTTP serving on %s", settings.http_addr)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    serving_state.ok = True
    background = [
        asyncio.create_task(watch_health(health_servicer, pipeline, pool, serving_state)),
        asyncio.create_task(poll_stats(pipeline, pool, STATS_INTERVAL_S)),
        asyncio.create_task(
            recover_forever(
                pipeline,
                pool,
                batch=settings.recovery_batch,
                interval_s=settings.recovery_interval_s,
                ring=ring,
            )
        ),
        asyncio.create_task(stock_loop(pool, settings)),
        # Sequences the transparency log and signs its heads with the unit key.
        asyncio.create_task(
            translog_loop(
                pool,
                SignerClient(
                    settings.signer_addr,
                    settings.signer_key_id,
                    tls=settings.hop_tls(settings.signer_tls_dir),
                ),
                settings.log_head_interval_s,
            )
        ),
    ]
    if settings.delivery:
        # Sends the bills archived to their payers (SMS, email, WeChat, Alipay).
        background.append(
            asyncio.create_task(delivery_loop(delivery, settings.delivery_interval_s))
        )
    # Expiry of the units' signing certificates: gauge and warnings, hourly.
    background.append(asyncio.create_task(expiry_loop(certificates)))
    if settings.catalog_sync_s > 0:
        background.append(asyncio.create_task(sync_loop(catalogue, settings.catalog_sync_s)))
    log.info(
        "engine serving on %s (%s; metrics %s; health %s)",
        settings.grpc_addr,
        "plaintext" if tls is None else "TLS" + " + client certificates" * settings.tls_client_auth,
        settings.metrics_addr if settings.metrics_port else "off",
        settings.health_addr or "gRPC only",
    )
    print(f"engine ready on {settings.grpc_addr}", flush=True)
    if http is not None:
        print(f"HTTP ready on {settings.http_addr}", flush=True)
    if ready:
        ready()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    background[0].cancel()  # health stays NOT_SERVING from here on
    serving_state.ok = False
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    if http is not None:
        await http.stop()
    await server.stop(grace=5)
    await gateway.stop()
    for task in background:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await batcher.stop()
    await lifecycle.stop()
    await identity.close()
    await pool.close()
    if health_http is not None:
        health_http.close()
    if embedded is not None:
        embedded.cleanup()


def run(settings: Settings) -> None:
    """Run the engine in this process: on uvloop unless EBILL_UVLOOP=0 (gRPC,
    HTTP and the use cases share the one loop)."""
    if settings.uvloop:
        import uvloop

        uvloop.run(serve(settings))
    else:
        asyncio.run(serve(settings))
