"""Locust HTTP users of the vendor gateway: the locustfile bench/locust_gateway.py
runs in a process of its own (gevent), apart from the gRPC load (asyncio, in
the runner): gevent and grpc never share a process.

Each user is a HIS window with one kept-alive TLS connection (FastHttpUser,
geventhttpclient: a fraction of the client CPU per request of requests/httpx),
sending invoiceEBillOutpatient at a constant rate (constant_throughput), every
bill a new busNo, signed with the app's key.
"""

from __future__ import annotations

import itertools
import os
import ssl
import uuid
from typing import Any

from locust import FastHttpUser, constant_throughput, task

from bench.locust_gateway import ENV_APP, ENV_CA, ENV_CERT, ENV_KEY, ENV_KEY_TEXT, ENV_RATE
from bench.vendor import envelope, result_of, vendor_bill

__all__ = ["GatewayUser"]

_RUN = uuid.uuid4().hex[:6].upper()
_seq = itertools.count()


def _context(cafile: str | None = None, **_: Any) -> ssl.SSLContext:
    """Trust the local CA and present the engine's client certificate (the HTTP
    port may ask for one). geventhttpclient calls it with ``cafile``."""
    ctx = ssl.create_default_context(cafile=os.environ.get(ENV_CA) or cafile)
    if os.environ.get(ENV_CERT):
        ctx.load_cert_chain(os.environ[ENV_CERT], os.environ[ENV_KEY])
    return ctx


class GatewayUser(FastHttpUser):
    wait_time = constant_throughput(float(os.environ.get(ENV_RATE, "10")))
    insecure = False
    # A plain function, not a method: geventhttpclient calls it without a user.
    ssl_context_factory = staticmethod(_context)
    network_timeout = 60.0
    connection_timeout = 60.0

    def on_start(self) -> None:
        self.appid = os.environ[ENV_APP]
        self.key = os.environ[ENV_KEY_TEXT]

    @task
    def issue(self) -> None:
        body = envelope(self.appid, self.key, vendor_bill(next(_seq), f"LG{_RUN}"))
        with self.client.post(
            "/api/medical/invoiceEBillOutpatient",
            data=body.decode("ascii"),  # the envelope is ASCII (base64 and hex)
            headers={"Content-Type": "application/json"},
            name="invoiceEBillOutpatient",
            catch_response=True,
        ) as r:
            if r.status_code != 200 or r.content is None:
                r.failure(f"HTTP {r.status_code}")
                return
            code = result_of(r.content)
            if code != "S0000":
                r.failure(code)
