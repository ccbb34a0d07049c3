"""Credentials for calling the engine's own services (docs/identity.md).

An app signs every call (HMAC-SM3 over the method, a timestamp, a fresh nonce
and the SM3 digest of the request bytes, engine.identity.request_signature);
a staff member sends their session token. Both are channel interceptors, so
every stub and every call on the channel carries them, asyncio or blocking.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from clients._grpc import channel_credentials, channel_options, open_channel
from config.tls import TlsFiles
from engine.identity import (
    HEADER_APP,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    request_signature,
)

__all__ = [
    "AppCredentials",
    "Credentials",
    "SessionCredentials",
    "open_engine_channel",
    "read_credentials",
    "sync_engine_channel",
]

Metadata = Sequence[tuple[str, str | bytes]]


@dataclass(frozen=True, slots=True)
class AppCredentials:
    app_id: str
    secret: bytes

    def metadata(self, method: str, body: bytes) -> list[tuple[str, str]]:
        stamp = str(int(time.time() * 1000))
        nonce = secrets.token_hex(12)
        sig = request_signature(self.secret, method, self.app_id, stamp, nonce, body)
        return [
            (HEADER_APP, self.app_id),
            (HEADER_TIMESTAMP, stamp),
            (HEADER_NONCE, nonce),
            (HEADER_SIGNATURE, sig),
        ]


@dataclass(frozen=True, slots=True)
class SessionCredentials:
    token: str

    def metadata(self, method: str, body: bytes) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.token}")]


Credentials = AppCredentials | SessionCredentials


def read_credentials(path: Path) -> AppCredentials:
    """An app's credentials from a JSON file ``{"app_id": ..., "secret_hex": ...}``."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return AppCredentials(data["app_id"], bytes.fromhex(data["secret_hex"]))


def _method(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _body(request: Any) -> bytes:
    serialize: Callable[[], bytes] = request.SerializeToString
    return serialize()


class _AsyncSigner(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]  # untyped
    def __init__(self, creds: Credentials) -> None:
        self.creds = creds

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        md = list(client_call_details.metadata or ())
        md += self.creds.metadata(_method(client_call_details.method), _body(request))
        return await continuation(
            grpc.aio.ClientCallDetails(
                client_call_details.method,
                client_call_details.timeout,
                grpc.aio.Metadata(*md),
                client_call_details.credentials,
                client_call_details.wait_for_ready,
            ),
            request,
        )


class _Details(grpc.ClientCallDetails):  # type: ignore[misc]  # untyped
    def __init__(self, base: Any, metadata: Metadata) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


class _SyncSigner(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]  # untyped
    def __init__(self, creds: Credentials) -> None:
        self.creds = creds

    def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        md = list(client_call_details.metadata or ())
        md += self.creds.metadata(_method(client_call_details.method), _body(request))
        return continuation(_Details(client_call_details, md), request)


def open_engine_channel(
    addr: str, tls: TlsFiles | None, creds: Credentials | None
) -> grpc.aio.Channel:
    """An asyncio channel to the engine whose every call carries ``creds``."""
    if creds is None:
        return open_channel(addr, tls)
    interceptors = [_AsyncSigner(creds)]
    if tls is None:
        return grpc.aio.insecure_channel(addr, options=channel_options(), interceptors=interceptors)
    return grpc.aio.secure_channel(
        addr, channel_credentials(tls), options=channel_options(), interceptors=interceptors
    )


def sync_engine_channel(addr: str, tls: TlsFiles | None, creds: Credentials | None) -> grpc.Channel:
    """A blocking channel to the engine whose every call carries ``creds``."""
    base = (
        grpc.insecure_channel(addr)
        if tls is None
        else grpc.secure_channel(addr, channel_credentials(tls))
    )
    return base if creds is None else grpc.intercept_channel(base, _SyncSigner(creds))
