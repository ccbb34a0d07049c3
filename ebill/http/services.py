"""What the HTTP server's routes call: the engine's use cases, shared with gRPC.

One value built by the composition root (ebill/edges.py) and handed to every route module's
``routes(services)``, so an HTTP call and a gRPC call reach the same use case,
the same micro-batcher and the same pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from clients.fiscal import FiscalClient
from clients.signer import SignerClient
from config.settings import Settings
from usecases.gateway import Gateway
from usecases.identity import Identity
from usecases.issuance import Issuance
from usecases.lifecycle import Lifecycle
from usecases.paper import Paper

__all__ = ["AppRegistry", "RegisteredApp", "Services"]


class RegisteredApp(Protocol):
    """A registered application (engine.identity.App): its unit, the issuing
    points it may act for (empty: the whole unit), the methods it may call,
    its permissions and its shared secret."""

    @property
    def app_id(self) -> str: ...
    @property
    def unit_code(self) -> str: ...
    @property
    def places(self) -> frozenset[str]: ...
    @property
    def methods(self) -> frozenset[str]: ...
    @property
    def permissions(self) -> frozenset[Any]: ...
    @property
    def secret(self) -> bytes: ...
    @property
    def enabled(self) -> bool: ...


class AppRegistry(Protocol):
    """The part of the identity use case (usecases/identity.py) the gateway uses."""

    async def app(self, app_id: str) -> RegisteredApp | None: ...

    async def claim_nonce(self, app_id: str, nonce: str, at: datetime) -> bool: ...


@dataclass(frozen=True)
class Services:
    settings: Settings
    pool: asyncpg.Pool
    issuance: Issuance
    lifecycle: Lifecycle
    paper: Paper
    gateway: Gateway
    # The engine's one fiscal platform client (ebill/wiring.py; the stock calls).
    fiscal: FiscalClient
    # The identity use case: apps and their nonces (the vendor gateway, AppRegistry
    # is the part it uses), bearer sessions (REST, console); None: no one can call.
    identity: Identity | None = None
    # H5 page of a bill: (code, no, check) -> URL (engine.delivery.bill_url); None: none.
    h5_url: Callable[[str, str, str], str] | None = None
    # Rendering and verification (usecases/rendering, usecases/verification):
    # the public pages' and the console's bill pages, PDFs and archive.
    rendering: Any = None
    verification: Any = None
    # The engine's signing-server client (the console signs archive manifests).
    signer: SignerClient | None = None
    ring: Any = None
    # Anything another area's routes need and this container does not name yet.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def public_url(self) -> str:
        base = self.settings.public_url or f"https://{self.settings.http_addr}"
        return base.rstrip("/")
