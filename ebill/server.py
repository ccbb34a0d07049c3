"""The engine process, assembled (the composition root), in the order a newcomer
reads it:

1. the database and the data key ring;
2. the clients, one per external system (ebill/wiring.py);
3. the Ray pipeline and the use cases (ebill/compose.py);
4. the edges: gRPC and HTTP servers over the same use cases (ebill/edges.py);
5. the background loops (ebill/loops.py);

then serving until SIGTERM or SIGINT, and shutting down in the reverse order,
each client closed once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

import asyncpg
from prometheus_client import REGISTRY, start_http_server

from actors.pipeline import Pipeline, init_ray
from config import keys
from config.settings import Settings, split_addr
from ebill.compose import build_pipeline, build_use_cases
from ebill.edges import grpc_server, http_server, set_health
from ebill.healthz import serve_health
from ebill.http.serve import HttpServer
from ebill.loops import Serving, start_loops
from ebill.wiring import open_clients
from engine.sealing import KeyRing
from ops import metrics
from storage.db import (
    EmbeddedPostgres,
    connect_pool,
    open_embedded,
    pending_migrations,
    with_application_name,
)
from storage.syspg import SystemPostgres
from usecases.personal import seal_plaintext

__all__ = ["run", "serve"]

log = logging.getLogger(__name__)


async def _open_database(
    settings: Settings,
) -> tuple[EmbeddedPostgres | SystemPostgres | None, str, KeyRing, asyncpg.Pool]:
    """The database (embedded unless EBILL_DATABASE_URL), its URL, the data key
    ring and the pool, with every migration applied and old plaintext sealed."""
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
    return embedded, url, ring, pool


async def serve(settings: Settings, *, ready: Callable[[], None] | None = None) -> None:
    """Run the engine until SIGTERM or SIGINT."""
    embedded, url, ring, pool = await _open_database(settings)
    init_ray(settings.ray_address, settings.ray_num_cpus)
    clients = open_clients(settings)
    pipeline = build_pipeline(settings, url)
    uc = build_use_cases(settings, pool, ring, pipeline, clients)
    uc.start()

    server, health_servicer = await grpc_server(settings, pool, uc, clients)
    if settings.metrics_port:
        # The last `ebill inspect`'s figures (disk, backups, runway...) on the same scrape.
        REGISTRY.register(
            metrics.InspectionFile(settings.data_dir / "inspections" / metrics.INSPECTION_FILE)
        )
        host, port = split_addr(settings.metrics_addr)
        start_http_server(port, addr=host)
    serving = Serving()
    health_http = (
        await serve_health(settings.health_addr, lambda: serving.ok)
        if settings.health_addr
        else None
    )
    await server.start()
    await _warm(pipeline)
    # The HTTP server: same loop, same use cases, same batcher. Started before
    # health says SERVING, so a ready engine serves both.
    http: HttpServer | None = None
    if settings.http_addr:
        http = http_server(settings, pool, ring, uc, clients)
        await http.start()
        log.info("HTTP serving on %s", settings.http_addr)
    await set_health(health_servicer, True)
    serving.ok = True
    background = start_loops(settings, pool, ring, pipeline, uc, clients, health_servicer, serving)
    tls = settings.server_tls()
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
    background.health_watch.cancel()  # health stays NOT_SERVING from here on
    serving.ok = False
    await set_health(health_servicer, False)
    if http is not None:
        await http.stop()
    await server.stop(grace=5)
    await background.stop()
    await uc.stop()
    await clients.close()
    await pool.close()
    if health_http is not None:
        health_http.close()
    if embedded is not None:
        embedded.cleanup()


async def _warm(pipeline: Pipeline) -> None:
    """The first batch pays for actor start-up and connections: pay it now."""
    await pipeline.warm()
    for stage, nodes in (await pipeline.placement()).items():
        for node in nodes:
            metrics.STAGE_REPLICAS.labels(stage, node).inc()
        log.info("stage %s replicas on nodes %s", stage, nodes)


def run(settings: Settings) -> None:
    """Run the engine in this process: on uvloop unless EBILL_UVLOOP=0 (gRPC,
    HTTP and the use cases share the one loop)."""
    if settings.uvloop:
        import uvloop

        uvloop.run(serve(settings))
    else:
        asyncio.run(serve(settings))
