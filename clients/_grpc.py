"""gRPC plumbing shared by the clients: channels, deadlines, retries, error mapping.

Every call to the signer or the fiscal platform goes through :func:`call`:

* one deadline for the whole call, retries included, so a caller's wait is bounded
  by the ``timeout_s`` it asked for (inline issuance depends on it);
* ``wait_for_ready``: a call made while the channel reconnects waits for it within
  the deadline instead of failing at once;
* on UNAVAILABLE, and only for an RPC the client declares idempotent, new attempts
  after an exponential backoff with full jitter (AWS architecture blog, "Exponential
  Backoff And Jitter"): stages recovering from the same outage do not come back in
  step. A non-idempotent RPC (one that creates something at each call) is never
  sent twice: a lost answer may hide a success;
* a failed call raises an engine.errors error: UNAVAILABLE -> Unavailable,
  DEADLINE_EXCEEDED -> DeadlineExceeded, INVALID_ARGUMENT -> InvalidArgument, ...

A plain loop rather than a retry library (stamina/tenacity): the deadline shared
across attempts and the idempotency rule are most of the logic, and they are a few
lines here.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import grpc

from config import tuning
from config.tls import TlsFiles
from engine.errors import (
    AlreadyExists,
    DeadlineExceeded,
    EbillError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)

__all__ = [
    "DEFAULT_RETRY",
    "NO_RETRY",
    "GrpcClient",
    "RetryPolicy",
    "call",
    "channel_credentials",
    "channel_options",
    "open_channel",
    "server_credentials",
    "to_error",
]

log = logging.getLogger(__name__)
Resp = TypeVar("Resp")
Stub = TypeVar("Stub")


def channel_options() -> list[tuple[str, int]]:
    """Options of every channel to the signer and the platform (see config.tuning)."""
    return [
        ("grpc.initial_reconnect_backoff_ms", tuning.GRPC_MIN_RECONNECT_BACKOFF_MS),
        ("grpc.min_reconnect_backoff_ms", tuning.GRPC_MIN_RECONNECT_BACKOFF_MS),
        ("grpc.max_reconnect_backoff_ms", tuning.GRPC_MAX_RECONNECT_BACKOFF_MS),
        ("grpc.max_send_message_length", tuning.GRPC_MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", tuning.GRPC_MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", tuning.GRPC_KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", tuning.GRPC_KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", int(tuning.GRPC_KEEPALIVE_PERMIT_WITHOUT_CALLS)),
    ]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SystemExit(f"TLS {what} {path}: {exc.strerror} (README, Transport security)") from exc


def channel_credentials(tls: TlsFiles) -> grpc.ChannelCredentials:
    """Mutual TLS as a client: trust ``tls.ca``, present ``tls.cert``.

    The server's certificate must name the host dialled (a SAN of 127.0.0.1 for
    the embedded default; a FaultProxy in between listens there too, and TLS
    passes through it untouched)."""
    return grpc.ssl_channel_credentials(
        root_certificates=_read(tls.ca, "CA file"),
        private_key=_read(tls.key, "key file"),
        certificate_chain=_read(tls.cert, "certificate file"),
    )


def server_credentials(tls: TlsFiles, *, client_auth: bool) -> grpc.ServerCredentials:
    """TLS as a server with ``tls.cert``; with ``client_auth`` a client must show
    a certificate that chains to ``tls.ca``, or the handshake fails.

    Hook for application certificates (issue #12, item 2): ``tls.ca`` may hold
    several CAs; the caller's verified certificate reaches the servicers as
    ``context.auth_context()["x509_common_name"]`` / ``["x509_pem_cert"]``."""
    return grpc.ssl_server_credentials(
        [(_read(tls.key, "key file"), _read(tls.cert, "certificate file"))],
        root_certificates=_read(tls.ca, "CA file"),
        require_client_auth=client_auth,
    )


def open_channel(addr: str, tls: TlsFiles | None = None) -> grpc.aio.Channel:
    """A channel to ``addr``: mutual TLS with ``tls``, plaintext without."""
    if tls is None:
        return grpc.aio.insecure_channel(addr, options=channel_options())
    return grpc.aio.secure_channel(addr, channel_credentials(tls), options=channel_options())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently an idempotent call is tried on UNAVAILABLE."""

    attempts: int = tuning.RETRY_ATTEMPTS
    initial_backoff_s: float = tuning.RETRY_INITIAL_BACKOFF_S
    multiplier: float = tuning.RETRY_MULTIPLIER
    max_backoff_s: float = tuning.RETRY_MAX_BACKOFF_S

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Sleep before retry number ``retry`` (0 = the first): full jitter, uniform
        in ``[0, min(max, initial * multiplier**retry)]``."""
        cap = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier**retry)
        return (rng or random).uniform(0.0, cap)


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(attempts=1)

_ERRORS: dict[grpc.StatusCode, type[EbillError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    # Aborted (a conflict at the server) and cancelled (the connection went away
    # under the call) are both "try again later" to our callers.
    grpc.StatusCode.ABORTED: Unavailable,
    grpc.StatusCode.CANCELLED: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def to_error(exc: grpc.aio.AioRpcError, what: str) -> EbillError:
    """The engine error for a failed call; ``what`` names the call ("fiscal platform
    CountersignBatch"). Codes without a counterpart (UNKNOWN, INTERNAL,
    UNIMPLEMENTED, DATA_LOSS) are Internal."""
    code = exc.code()
    cls = _ERRORS.get(code, Internal)
    return cls(f"{what}: {exc.details() or code.name} ({code.name})")


async def call(
    rpc: Callable[..., Awaitable[Resp]],
    request: Any,
    *,
    what: str,
    timeout_s: float,
    idempotent: bool,
    retry: RetryPolicy = DEFAULT_RETRY,
    wait_for_ready: bool = True,
    rng: random.Random | None = None,
) -> Resp:
    """Call a unary RPC (a stub's method) within ``timeout_s`` in all.

    Retried on UNAVAILABLE only when ``idempotent``; raises an EbillError
    (see :func:`to_error`) when it fails for good.
    """
    deadline = time.monotonic() + timeout_s
    retries = 0
    while True:
        remaining = max(deadline - time.monotonic(), 0.001)
        try:
            return await rpc(request, timeout=remaining, wait_for_ready=wait_for_ready)
        except grpc.aio.AioRpcError as exc:
            if idempotent and exc.code() is grpc.StatusCode.UNAVAILABLE:
                if retries + 1 < retry.attempts:
                    delay = retry.backoff(retries, rng)
                    if time.monotonic() + delay < deadline:
                        retries += 1
                        log.info(
                            "%s unavailable (%s); retry %d in %.3fs",
                            what,
                            exc.details(),
                            retries,
                            delay,
                        )
                        await asyncio.sleep(delay)
                        continue
            raise to_error(exc, what) from exc


class GrpcClient(Generic[Stub]):
    """Base of the gRPC clients: one channel and its stub, opened on first use.

    Opened lazily because a channel belongs to the event loop it was opened in,
    and a client may be built in one place (a Ray actor's constructor) and used in
    another (the actor's loop). Close it, or use it as an async context manager.

    A client names its generated stub class and the deadline of its calls when
    neither the caller nor the constructor gives one; ``timeout_s`` overrides it.
    """

    stub_class: Callable[[grpc.aio.Channel], Stub]
    default_timeout_s: float

    def __init__(
        self,
        addr: str,
        timeout_s: float | None = None,
        *,
        tls: TlsFiles | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self.addr = addr
        self.timeout_s = self.default_timeout_s if timeout_s is None else timeout_s
        self._tls = tls
        self._retry = retry
        self._channel: grpc.aio.Channel | None = None
        self._stub: Stub | None = None

    def stub(self) -> Stub:
        if self._stub is None:
            self._channel = open_channel(self.addr, self._tls)
            self._stub = self.stub_class(self._channel)
        return self._stub

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel, self._stub = self._channel, None, None
            await channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
