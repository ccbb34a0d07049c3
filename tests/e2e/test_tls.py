"""Transport security of the running stack: the engine's port (client
certificates required in this suite), the signer and the platform (mutual TLS,
always) take only callers with a certificate of the stack's CA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients._grpc import channel_options, open_channel
from config.tls import TlsFiles
from ops import pki
from ops.stack import Stack
from protos.hsm.v1 import signer_pb2, signer_pb2_grpc

pytestmark = pytest.mark.slow

HOPS = ("engine", "signer", "fiscal")


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> Iterator[TlsFiles]:
    """Trusts the stack's servers, but shows a client certificate of another CA."""
    d = tmp_path_factory.mktemp("other-ca")
    pki.make_ca(d, "some other CA")
    other = pki.make_leaf(d, "client", server=False, client=True)
    own = stack.tls()
    assert own is not None
    yield TlsFiles(own.ca, other.cert, other.key)


def addr(stack: Stack, to: str) -> str:
    return {
        "engine": stack.config.grpc_addr,
        "signer": stack.config.signer_addr,
        "fiscal": stack.config.fiscal_addr,
    }[to]


async def reach(channel: grpc.aio.Channel) -> None:
    """Any RPC: a health check (the sandboxes do not serve it: UNIMPLEMENTED
    means the call got through)."""
    async with channel as ch:
        try:
            await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.UNIMPLEMENTED:
                raise


@pytest.mark.parametrize("to", HOPS)
async def test_the_demo_client_gets_through(stack: Stack, to: str) -> None:
    await reach(stack.channel(to))


@pytest.mark.parametrize("to", HOPS)
async def test_plaintext_is_refused(stack: Stack, to: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await reach(grpc.aio.insecure_channel(addr(stack, to)))
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("to", HOPS)
async def test_tls_without_a_client_certificate_is_refused(stack: Stack, to: str) -> None:
    own = stack.tls()
    assert own is not None
    creds = grpc.ssl_channel_credentials(root_certificates=own.ca.read_bytes())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await reach(grpc.aio.secure_channel(addr(stack, to), creds, options=channel_options()))
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("to", HOPS)
async def test_a_certificate_of_another_ca_is_refused(
    stack: Stack, stranger: TlsFiles, to: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await reach(open_channel(addr(stack, to), stranger))
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_the_signer_key_never_travels_in_clear(stack: Stack) -> None:
    """The engine signs through the mutual-TLS hop: the sandboxes serve nothing else,
    and their logs say so."""
    async with stack.channel("signer") as ch:
        pub = await signer_pb2_grpc.SignerStub(ch).ExportPublicKey(
            signer_pb2.ExportPublicKeyRequest(key_id="unit-sign"), timeout=5
        )
    assert len(pub.public_key) == 65
    logs = stack.config.log_dir
    assert isinstance(logs, Path)
    for name in ("signer", "fiscal"):
        assert "(mutual TLS)" in (logs / f"{name}.log").read_text(), name
