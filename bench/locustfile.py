"""Locust gRPC users for the issuance service.

    locust -f bench/locustfile.py --headless -u 100 -r 50 -t 30s --host 127.0.0.1:50051

SingleBillUser sends IssueBill back to back; BatchUser sends IssueBatch of
EBILL_LOCUST_BATCH bills (default 100). Each request is reported to Locust with
its latency; every bill carries a fresh bus_no, so each one is a new issuance.
"""

from __future__ import annotations

# gRPC must be patched for gevent before any channel exists.
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import itertools  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from typing import Any  # noqa: E402

import grpc  # noqa: E402
from locust import User, between, events, task  # noqa: E402

from clients.credentials import read_credentials, sync_engine_channel  # noqa: E402
from config.settings import load  # noqa: E402
from ops import pki  # noqa: E402
from protos.ebill.v1 import bill_pb2, issuance_pb2, issuance_pb2_grpc  # noqa: E402
from usecases import demo  # noqa: E402
from wire.bills import input_to_pb  # noqa: E402

BATCH = int(os.environ.get("EBILL_LOCUST_BATCH", "100"))
_RUN = uuid.uuid4().hex[:6].upper()
_seq = itertools.count()


def next_bill() -> bill_pb2.BillRequest:
    n = next(_seq)
    return input_to_pb(demo.demo_bill(n, prefix=f"L{_RUN}", rng=random.Random(n)))


class _GrpcUser(User):
    abstract = True
    wait_time = between(0, 0)

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        settings = load()
        addr = self.host or settings.grpc_addr
        # Signed as the demo HIS app (its credentials written at seeding).
        creds_file = settings.data_dir / "demo-credentials.json"
        creds = read_credentials(creds_file) if creds_file.exists() else None
        self._channel = sync_engine_channel(addr, pki.client_files(settings), creds)
        self.stub = issuance_pb2_grpc.IssuanceServiceStub(self._channel)

    def on_stop(self) -> None:
        self._channel.close()

    def call(self, name: str, fn: Any, request: Any, count_items: int) -> None:
        started = time.perf_counter()
        exc: Exception | None = None
        length = 0
        try:
            resp = fn(request, timeout=60)
            length = resp.ByteSize()
            if isinstance(resp, issuance_pb2.IssueBatchResponse):
                failed = [r.error for r in resp.results if r.HasField("error")]
                if failed:
                    exc = RuntimeError(f"{len(failed)} of {count_items} failed: {failed[0].code}")
        except grpc.RpcError as e:
            exc = e
        events.request.fire(  # type: ignore[no-untyped-call]
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=exc,
            context={"bills": count_items},
        )


class SingleBillUser(_GrpcUser):
    weight = 4

    @task
    def issue_bill(self) -> None:
        self.call(
            "IssueBill", self.stub.IssueBill, issuance_pb2.IssueBillRequest(bill=next_bill()), 1
        )


class BatchUser(_GrpcUser):
    weight = 1

    @task
    def issue_batch(self) -> None:
        bills = [next_bill() for _ in range(BATCH)]
        self.call(
            f"IssueBatch x{BATCH}",
            self.stub.IssueBatch,
            issuance_pb2.IssueBatchRequest(bills=bills),
            BATCH,
        )
