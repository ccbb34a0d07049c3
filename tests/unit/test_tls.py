"""Transport security on a real local gRPC server: the local PKI (ops/pki.py) and
the credentials every channel and port is built with (clients/_grpc.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients._grpc import open_channel, server_credentials
from config.settings import load
from config.tls import TlsFiles
from ops import pki


class Health(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """Answers SERVING and keeps what TLS told it about the caller."""

    def __init__(self) -> None:
        self.peers: list[dict[str, list[bytes]]] = []

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        self.peers.append(dict(context.auth_context()))
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pki.ensure(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A client certificate from another CA, for the same names."""
    d = tmp_path_factory.mktemp("other-ca")
    pki.make_ca(d, "some other CA")
    return pki.make_leaf(d, "client", server=False, client=True)


async def _serve(local: Path, *, client_auth: bool) -> tuple[grpc.aio.Server, str, Health]:
    server = grpc.aio.server()
    health = Health()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    creds = server_credentials(TlsFiles.in_dir(local, "engine"), client_auth=client_auth)
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    return server, f"127.0.0.1:{port}", health


@pytest.fixture
async def mtls(local: Path) -> AsyncIterator[tuple[str, Health]]:
    server, addr, health = await _serve(local, client_auth=True)
    yield addr, health
    await server.stop(0)


async def _check(channel: grpc.aio.Channel) -> None:
    async with channel as ch:
        await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=3)


def test_the_local_pki_is_made_once_with_private_keys_and_local_names(local: Path) -> None:
    before = {p.name: p.read_bytes() for p in local.iterdir()}
    assert set(before) == {f"{n}.{ext}" for n in ("ca", *pki.LEAVES) for ext in ("pem", "key")}
    pki.ensure(local)
    assert {p.name: p.read_bytes() for p in local.iterdir()} == before
    assert local.stat().st_mode & 0o077 == 0
    for key in local.glob("*.key"):
        assert key.stat().st_mode & 0o077 == 0, key
    cert = x509.load_pem_x509_certificate((local / "engine.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "localhost" in san.get_values_for_type(x509.DNSName)


def test_a_lost_leaf_is_made_again_under_the_same_ca(local: Path, tmp_path: Path) -> None:
    d = pki.ensure(tmp_path / "pki")
    ca = (d / "ca.pem").read_bytes()
    (d / "signer.key").unlink()
    pki.ensure(d)
    assert (d / "signer.key").exists() and (d / "ca.pem").read_bytes() == ca


async def test_a_client_of_the_same_ca_gets_in_and_is_named(
    mtls: tuple[str, Health], local: Path
) -> None:
    addr, health = mtls
    await _check(open_channel(addr, TlsFiles.in_dir(local, "client")))
    peer = health.peers[-1]
    assert peer["transport_security_type"] == [b"ssl"]
    # The hook of application certificates: the verified caller's name.
    assert peer["x509_common_name"] == [b"ebill client"]


async def test_a_plaintext_client_gets_nothing(mtls: tuple[str, Health]) -> None:
    addr, health = mtls
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _check(open_channel(addr, None))
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    assert not health.peers


async def test_a_certificate_of_another_ca_is_refused(
    mtls: tuple[str, Health], local: Path, foreign: TlsFiles
) -> None:
    addr, health = mtls
    # Trusts the server, but shows a client certificate the server's CA did not sign.
    stranger = TlsFiles(local / "ca.pem", foreign.cert, foreign.key)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _check(open_channel(addr, stranger))
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    assert not health.peers


async def test_a_client_that_does_not_trust_the_server_does_not_talk(
    mtls: tuple[str, Health], local: Path, foreign: TlsFiles
) -> None:
    addr, health = mtls
    with pytest.raises(grpc.aio.AioRpcError):
        await _check(
            open_channel(addr, TlsFiles(foreign.ca, local / "client.pem", local / "client.key"))
        )
    assert not health.peers


async def test_without_client_auth_any_tls_client_is_served(local: Path, foreign: TlsFiles) -> None:
    server, addr, health = await _serve(local, client_auth=False)
    try:
        stranger = TlsFiles(local / "ca.pem", foreign.cert, foreign.key)
        await _check(open_channel(addr, stranger))
        assert "x509_common_name" not in health.peers[-1]
    finally:
        await server.stop(0)


def test_a_missing_file_names_itself(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=f"key file {tmp_path / 'nope.key'}"):
        server_credentials(TlsFiles.in_dir(tmp_path, "nope"), client_auth=True)


def test_settings_default_to_the_local_pki_and_a_hop_may_have_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EBILL_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("EBILL_TLS", raising=False)
    monkeypatch.delenv("EBILL_TLS_CERT_FILE", raising=False)
    monkeypatch.delenv("EBILL_TLS_CA_FILE", raising=False)
    monkeypatch.delenv("EBILL_TLS_KEY_FILE", raising=False)
    monkeypatch.setenv("EBILL_SIGNER_TLS_DIR", str(tmp_path / "hsm"))
    monkeypatch.delenv("EBILL_FISCAL_TLS_DIR", raising=False)
    s = load()
    engine = TlsFiles.in_dir(tmp_path / "pki", "engine")
    assert s.server_tls() == engine
    assert s.hop_tls(s.fiscal_tls_dir) == engine
    assert s.hop_tls(s.signer_tls_dir) == TlsFiles.in_dir(tmp_path / "hsm", "client")
    monkeypatch.setenv("EBILL_TLS", "0")
    off = load()
    assert off.server_tls() is None and off.hop_tls(off.signer_tls_dir) is None
