"""A local certificate authority for the embedded default: made once, under
``<data-dir>/pki``, as the signer sandbox makes its key on first use.

Files (certificates PEM; keys PKCS#8 PEM, mode 0600):

* ``ca.pem`` / ``ca.key``: the CA every other certificate here chains to;
* ``engine.pem``: the engine's certificate, for its own port (server) and as its
  client certificate towards the signer and the platform (mutual TLS);
* ``signer.pem``, ``fiscal.pem``: the sandboxes' server certificates;
* ``client.pem``: the demo application's client certificate (CLI, tests, bench)
  until applications get certificates of their own (issue #12, item 2).

ECDSA P-256 with SHA-256: grpc's TLS (BoringSSL) has no SM2 cipher suites
(GB/T 38636 TLCP), so the transport uses NIST curves while bills stay SM2-signed.
Every certificate names 127.0.0.1 and localhost: clients dial those (FaultProxy
listens on 127.0.0.1 too). A deployment points EBILL_TLS_* at its own files.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from config.settings import Settings
from config.tls import TlsFiles

__all__ = ["LEAVES", "client_files", "ensure", "ensure_for", "make_ca", "make_leaf"]

# name -> (serves TLS, presents client certificates)
LEAVES: dict[str, tuple[bool, bool]] = {
    "engine": (True, True),
    "signer": (True, False),
    "fiscal": (True, False),
    "client": (False, True),
    # The SMS, WeChat and Alipay sandboxes' HTTPS certificate (delivery, issue #15).
    "providers": (True, False),
}
VALID_DAYS = 825  # the longest a browser-trusted leaf may live; renewal is re-running


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write whole or not at all: temp file, fsync, rename."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ebill local"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def make_ca(directory: Path, cn: str = "ebill local CA") -> None:
    """A self-signed CA at ``directory/ca.pem`` and ``ca.key`` (overwritten)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=10 * 365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(directory / "ca.key", _key_pem(key), 0o600)
    _write(directory / "ca.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)


def make_leaf(directory: Path, name: str, *, server: bool, client: bool) -> TlsFiles:
    """``directory/<name>.pem`` and ``.key``, signed by ``directory/ca.*``."""
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [ExtendedKeyUsageOID.CLIENT_AUTH] * client
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"ebill {name}"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(directory / f"{name}.key", _key_pem(key), 0o600)
    _write(directory / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return TlsFiles.in_dir(directory, name)


def ensure(directory: Path) -> Path:
    """The local CA and every certificate of LEAVES under ``directory``, made on
    the first call and kept after (idempotent; a missing file is made anew)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    fresh_ca = not (directory / "ca.pem").exists() or not (directory / "ca.key").exists()
    if fresh_ca:
        make_ca(directory)
    for name, (server, client) in LEAVES.items():
        files = TlsFiles.in_dir(directory, name)
        if fresh_ca or not files.cert.exists() or not files.key.exists():
            make_leaf(directory, name, server=server, client=client)
    return directory


def ensure_for(settings: Settings) -> None:
    """Make the local PKI when TLS is on and the settings point into it (the
    embedded default); a deployment's own files are never touched."""
    pki = settings.data_dir / "pki"
    mine = (settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file)
    if settings.tls and any(p.parent == pki for p in mine):
        ensure(pki)


def client_files(settings: Settings) -> TlsFiles | None:
    """The CLI's side of TLS to an engine: trust EBILL_TLS_CA_FILE and present the
    local demo client's certificate (applications get certificates of their own
    with issue #12, item 2); None with TLS off."""
    if not settings.tls:
        return None
    local = TlsFiles.in_dir(settings.data_dir / "pki", "client")
    return TlsFiles(settings.tls_ca_file, local.cert, local.key)
