"""Shared plumbing of the sandbox servers: TLS, and serve until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import os
import signal
import threading
from concurrent import futures
from pathlib import Path

import grpc

from clients._grpc import server_credentials
from config.settings import load
from config.tls import TlsFiles
from ops import pki

__all__ = ["new_server", "sandbox_tls", "serve_forever"]


def new_server(workers: int = 8) -> grpc.Server:
    # Signing releases the GIL inside Tongsuo, so threads use both cores.
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ],
    )


def sandbox_tls(name: str, data_dir: Path) -> TlsFiles | None:
    """What the sandbox ``name`` serves with: EBILL_TLS_* when given, else its own
    certificate of the local PKI (``<data_dir>/pki/<name>.pem``); None with TLS off."""
    settings = load()
    if not settings.tls:
        return None
    if os.environ.get("EBILL_TLS_CERT_FILE"):
        return settings.server_tls()
    return TlsFiles.in_dir(pki.ensure(data_dir.resolve() / "pki"), name)


def serve_forever(server: grpc.Server, addr: str, name: str, tls: TlsFiles | None) -> None:
    """Serve on ``addr``; with ``tls``, mutual TLS only: a network HSM and the
    platform's front-end accept no caller without a client certificate."""
    if tls is None:
        port = server.add_insecure_port(addr)
    else:
        port = server.add_secure_port(addr, server_credentials(tls, client_auth=True))
    if port == 0:
        raise SystemExit(f"{name}: cannot listen on {addr}")
    server.start()
    mode = "plaintext" if tls is None else "mutual TLS"
    logging.getLogger(name).info("%s listening on %s (%s)", name, addr, mode)
    print(f"{name} ready on {addr}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=2).wait()
