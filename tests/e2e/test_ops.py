"""What an SRE sees: Prometheus metrics, gRPC health and reflection."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ops.stack import Stack
from protos.ebill.v1 import issuance_pb2, issuance_pb2_grpc
from usecases import demo
from wire.bills import input_to_pb

pytestmark = pytest.mark.slow


def scrape(stack: Stack) -> str:
    url = f"http://127.0.0.1:{stack.config.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(\{{(.*)\}})? (\S+)$", line)
        if not m:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


async def test_metrics_show_stages_batches_errors_stock_and_backlog(
    issuance: issuance_pb2_grpc.IssuanceServiceStub, stack: Stack
) -> None:
    before = scrape(stack)
    bills = [input_to_pb(demo.demo_bill(i, prefix="MET")) for i in range(30)]
    await issuance.IssueBatch(issuance_pb2.IssueBatchRequest(bills=bills))
    bad = input_to_pb(demo.demo_bill(99, prefix="MET"))
    bad.total_amount = "x"
    with pytest.raises(grpc.aio.AioRpcError):
        await issuance.IssueBill(issuance_pb2.IssueBillRequest(bill=bad))

    deadline = time.monotonic() + 15
    while True:
        text = scrape(stack)
        signed = value(text, "ebill_stage_items_total", stage="unit_sign")
        if signed >= value(before, "ebill_stage_items_total", stage="unit_sign") + 30:
            break
        assert time.monotonic() < deadline, "stage counters did not move"
        await asyncio.sleep(0.5)
    for stage in ("validate", "reserve", "unit_sign", "countersign", "archive"):
        assert value(text, "ebill_stage_seconds_count", stage=stage) > 0, stage
        assert value(text, "ebill_stage_batches_total", stage=stage) > 0, stage
    assert value(text, "ebill_batch_size_count") > value(before, "ebill_batch_size_count")
    assert value(text, "ebill_rpc_total", method="IssueBill", code="INVALID_ARGUMENT") >= 1
    assert value(text, "ebill_bills_total", outcome="issued") >= 30
    assert value(text, "ebill_stock_available", unit_code=demo.UNIT_CODE, place_code="001") > 0
    assert "ebill_unfinished_bills" in text and "ebill_fiscal_circuit_open" in text
    assert "ebill_queue_depth" in text


async def test_health_and_reflection(stack: Stack) -> None:
    async with stack.channel() as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ("", "ebill.v1.IssuanceService"):
            resp = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        call = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = set()
        async for resp in call:
            names |= {s.name for s in resp.list_services_response.service}
        assert "ebill.v1.IssuanceService" in names
