"""The engine's edges over the shared use cases: the gRPC server (servicers,
interceptors, health, reflection, TLS) and the HTTP server (ebill/http/).

Both receive the same use cases (ebill/compose.py) and the same clients
(ebill/wiring.py): an HTTP call and a gRPC call reach the same batcher and the
same pipeline.
"""

from __future__ import annotations

import functools
import logging

import asyncpg
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from clients._grpc import server_credentials
from config.settings import Settings
from config.tuning import (
    ENGINE_MAX_MESSAGE_BYTES,
    GRPC_KEEPALIVE_PERMIT_WITHOUT_CALLS,
    SERVER_KEEPALIVE_TIME_MS,
    SERVER_KEEPALIVE_TIMEOUT_MS,
    SERVER_MAX_CONNECTION_IDLE_MS,
    SERVER_MIN_PING_INTERVAL_MS,
)
from ebill.compose import UseCases
from ebill.grpc.audit import AuditServicer
from ebill.grpc.auth import AuthInterceptor
from ebill.grpc.catalog import CatalogServicer
from ebill.grpc.delivery import DeliveryServicer
from ebill.grpc.identity import IdentityServicer
from ebill.grpc.issuance import SERVICE_NAME, IssuanceServicer
from ebill.grpc.lifecycle import LifecycleServicer
from ebill.grpc.stock import StockServicer
from ebill.http.app import build_app
from ebill.http.serve import HttpServer
from ebill.http.services import Services
from ebill.interceptors import interceptors
from ebill.wiring import Clients
from engine.delivery import bill_url
from engine.sealing import KeyRing
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

__all__ = ["HEALTH_NAMES", "grpc_server", "http_server", "server_options", "set_health"]

log = logging.getLogger(__name__)

# The names health answers for: the server as a whole and the issuance service.
HEALTH_NAMES = ("", SERVICE_NAME)


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


async def set_health(servicer: health.aio.HealthServicer, serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in HEALTH_NAMES:
        await servicer.set(name, status)


async def grpc_server(
    settings: Settings, pool: asyncpg.Pool, uc: UseCases, clients: Clients
) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    """The gRPC server with every servicer, bound to EBILL_GRPC_ADDR (TLS unless
    configured off) but not started; health NOT_SERVING until the caller says so."""
    if not settings.auth:
        log.warning("EBILL_AUTH=0: calls are not authenticated (benchmarks only)")
    auth = AuthInterceptor(uc.identity if settings.auth else None)
    server = grpc.aio.server(interceptors=interceptors(auth), options=server_options())
    issuance_pb2_grpc.add_IssuanceServiceServicer_to_server(IssuanceServicer(uc.issuance), server)
    lifecycle_pb2_grpc.add_LifecycleServiceServicer_to_server(
        LifecycleServicer(uc.lifecycle, uc.paper), server
    )
    stock_pb2_grpc.add_StockServiceServicer_to_server(
        StockServicer(pool, settings, clients.fiscal), server
    )
    audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(pool), server)
    delivery_pb2_grpc.add_DeliveryServiceServicer_to_server(DeliveryServicer(uc.delivery), server)
    identity_pb2_grpc.add_IdentityServiceServicer_to_server(IdentityServicer(uc.identity), server)
    catalog_pb2_grpc.add_CatalogServiceServicer_to_server(
        CatalogServicer(uc.catalogue, uc.certificates), server
    )
    health_servicer = health.aio.HealthServicer()
    # The servicer calls the server SERVING from the start; not until the
    # pipeline is warm, or load balancers send bills to an engine not ready.
    await set_health(health_servicer, False)
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
    return server, health_servicer


def http_server(
    settings: Settings, pool: asyncpg.Pool, ring: KeyRing, uc: UseCases, clients: Clients
) -> HttpServer:
    """The HTTP server (gateway, REST, public pages, self-service, console) over
    the same use cases; not started."""
    services = Services(
        settings=settings,
        pool=pool,
        issuance=uc.issuance,
        lifecycle=uc.lifecycle,
        paper=uc.paper,
        gateway=uc.gateway,
        fiscal=clients.fiscal,
        identity=uc.identity,
        rendering=uc.public.rendering,
        verification=uc.public.verification,
        signer=clients.signer,
        ring=ring,
        # The H5 page of a bill (the gateway's getEBillPicUrl answers it).
        h5_url=functools.partial(bill_url, settings.public_url),
        # Patients' self-service; delivery answers the gateway's sendBillNotice.
        extra={"selfservice": uc.selfservice, "delivery": uc.delivery},
    )
    return HttpServer(build_app(services), settings)
