"""Shared plumbing of the sandbox servers: serve until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures

import grpc

__all__ = ["new_server", "serve_forever"]


def new_server(workers: int = 8) -> grpc.Server:
    # Signing releases the GIL inside Tongsuo, so threads use both cores.
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ],
    )


def serve_forever(server: grpc.Server, addr: str, name: str) -> None:
    port = server.add_insecure_port(addr)
    if port == 0:
        raise SystemExit(f"{name}: cannot listen on {addr}")
    server.start()
    logging.getLogger(name).info("%s listening on %s", name, addr)
    print(f"{name} ready on {addr}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=2).wait()
