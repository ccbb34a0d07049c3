"""The engine's one HTTP application (ASGI): the vendor-compatible gateway, the
REST mapping of the gRPC API with its OpenAPI document, and the routes other
areas mount. ebill/edges.py builds the server (ebill/http/serve.py) for the engine
process, beside gRPC and on the same event loop, so both reach the same use
cases and the same micro-batcher.

Mount points: an area adds a module exporting ``routes(services)`` returning
Starlette routes or a FastAPI APIRouter, and lists it in MOUNTS. A module not
present yet (its branch not merged) is skipped. Its ``routes`` gets
``services.extra[<short name>]`` when ebill/edges.py put the area's own use
cases there (``extra["public"]``: the render work's ``Public``), else the
shared ``Services``.
"""

from __future__ import annotations

import importlib
import logging
import time
from types import ModuleType
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ebill.http import gateway, rest
from ebill.http.errors import ebill_error_handler, unexpected_response
from ebill.http.services import Services
from engine.errors import EbillError
from ops import metrics

__all__ = ["MOUNTS", "build_app"]

log = logging.getLogger(__name__)

# Areas' route modules, mounted in this order after the gateway and REST routes:
#   ebill.http.public       H5 bill page, verification, notice picture (render)
#   ebill.http.selfservice  self-service and delivery (delivery)
#   ebill.http.console      the operators' console (console)
MOUNTS = ("ebill.http.public", "ebill.http.selfservice", "ebill.http.console")


def _optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:  # the module exists and one of its imports is missing
            raise
        return None


def _mount(app: FastAPI, found: Any) -> None:
    if isinstance(found, APIRouter):
        app.include_router(found)
    else:
        routes: list[BaseRoute] = list(found)
        app.router.routes.extend(routes)


class _Metrics:
    """Pure ASGI (no BaseHTTPMiddleware: it costs a task per request): requests
    by route template and status, and their latency."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", "unmatched")
            metrics.HTTP_REQUESTS.labels(name, str(status)).inc()
            metrics.HTTP_LATENCY.labels(name).observe(time.perf_counter() - started)


async def _healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def build_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="ebill engine",
        version="1",
        summary="Fiscal e-bill issuance: REST mapping of the ebill.v1 gRPC API",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.add_exception_handler(EbillError, ebill_error_handler)
    app.add_exception_handler(Exception, unexpected_response)
    app.add_route("/healthz", _healthz, methods=["GET"], include_in_schema=False)

    modules = {name: _optional(name) for name in MOUNTS}
    app.include_router(rest.router(services))
    _mount(app, gateway.routes(services))
    for name, module in modules.items():
        if module is not None:
            own = services.extra.get(name.rsplit(".", 1)[-1], services)
            _mount(app, module.routes(own))
            log.info("HTTP routes of %s mounted", name)
    app.add_middleware(_Metrics)
    _with_components(app)
    return app


def _with_components(app: FastAPI) -> None:
    """The OpenAPI document with the schemas of the ebill.v1 messages the REST
    routes refer to (rest.components), generated once."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = plain()
            doc.setdefault("components", {}).setdefault("schemas", {}).update(rest.components())
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
