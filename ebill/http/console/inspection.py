"""The inspection report on the console (巡检报告): the same checks as
`ebill inspect` (usecases/inspection.py), run now, read with audit.read.

The engine's live figures (the fiscal circuit, the Ray placement) are this
process's own Prometheus registry, read in place instead of scraped over HTTP.
Reading the report changes nothing, so it writes no log leaf.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from engine.errors import Unavailable
from engine.identity import Principal
from usecases.inspection import inspect

if TYPE_CHECKING:
    from ebill.http.console.pages import Console

__all__ = ["InspectionPage"]


async def _own_metrics() -> str | None:
    return (await asyncio.to_thread(generate_latest, REGISTRY)).decode()


class InspectionPage:
    def __init__(self, console: Console) -> None:
        self.c = console

    async def show(self, request: Request, who: Principal) -> Response:
        settings = getattr(self.c.s, "settings", None)
        if settings is None:
            raise Unavailable("the inspection needs the engine's settings")
        report = await inspect(self.c.s.pool, settings, engine_metrics=_own_metrics)
        return self.c.render(request, "inspection.html", who, report=report)
