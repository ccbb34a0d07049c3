"""Where a process's TLS material lives: paths only, no grpc.

A value of plain paths (not grpc credentials) because it crosses into Ray actors,
which receive their constructor arguments pickled, and grpc credentials do not
pickle; each side reads the files where it runs (on a cluster, every node needs
them at the same paths). clients/_grpc.py turns one into channel or server
credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["TlsFiles"]


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """One side of a TLS connection.

    ``ca``: the certificate(s), PEM, the peer's certificate must chain to (a
    server: the CA of the clients it accepts; a client: the CA of the server).
    ``cert`` / ``key``: our own certificate chain and private key, PEM: the
    server's certificate, or the client certificate of mutual TLS.
    """

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def in_dir(cls, directory: Path, name: str) -> TlsFiles:
        """``<dir>/ca.pem``, ``<dir>/<name>.pem`` and ``<dir>/<name>.key``: the
        layout of ops/pki.py, and of a per-hop directory (EBILL_SIGNER_TLS_DIR)."""
        return cls(directory / "ca.pem", directory / f"{name}.pem", directory / f"{name}.key")
