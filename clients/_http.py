"""Shared plumbing of the HTTP providers (SMS, WeChat, Alipay): the client with
TLS verified against a given CA, and the one error every channel raises.

Whether a refusal is worth retrying is decided here, per provider code, so the
delivery worker only reads ``retryable``: connection problems, timeouts, 5xx,
throttling and "system busy" are; a bad number, an unknown template or a bad
signature are not (sending the same request again cannot succeed).
"""

from __future__ import annotations

import ssl
from types import TracebackType
from typing import Self

import httpx

__all__ = ["ChannelError", "ProviderClient", "http_client", "transport_error"]


class ChannelError(Exception):
    """A provider refused or could not be reached. ``code`` is the provider's own
    (``isv.MOBILE_NUMBER_ILLEGAL``, ``40003``, ``http 503``...)."""

    def __init__(self, code: str, message: str, *, retryable: bool) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.retryable = retryable


def http_client(base_url: str, ca_file: str = "", timeout_s: float = 10.0) -> httpx.AsyncClient:
    """An async client of ``base_url``: TLS verified against ``ca_file`` (the
    local CA of the sandboxes) or the system's CAs; one pool per provider."""
    verify: ssl.SSLContext | bool = True
    if ca_file:
        verify = ssl.create_default_context(cafile=ca_file)
    return httpx.AsyncClient(
        base_url=base_url,
        verify=verify,
        timeout=timeout_s,
        limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
    )


def transport_error(exc: httpx.HTTPError) -> ChannelError:
    """A request that got no answer: always worth another try later."""
    return ChannelError(type(exc).__name__, str(exc)[:200], retryable=True)


class ProviderClient:
    """What every provider client is: one HTTP connection pool, closed with the
    client (``async with``), so the three adapters say it once."""

    def __init__(self, base_url: str, ca_file: str = "", timeout_s: float = 10.0) -> None:
        self._http = http_client(base_url, ca_file, timeout_s)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()
