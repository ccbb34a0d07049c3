"""The vendor-format fixtures (tests/fixtures/gateway/) replayed against the
running engine through a HIS-style client: every interface the gateway serves,
with the vendor's field names, result codes and signatures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.stack import Stack, http_ssl_context
from protos.ebill.v1 import lifecycle_pb2, lifecycle_pb2_grpc
from tests.gateway_fixtures import FIXTURES, Scenario
from tests.his_client import HisClient
from usecases import demo

PAPER_CODE = "44990319"


@pytest.fixture(scope="module")
def his(stack: Stack) -> Iterator[HisClient]:
    tls = stack.tls()
    client = HisClient(
        stack.http_url,
        stack.demo.app_id,
        stack.demo.app_secret.hex(),  # the vendor key text of a random secret
        verify=http_ssl_context(tls) if tls else True,
    )
    yield client
    client.close()


@pytest.fixture(scope="module")
async def paper(stack: Stack) -> None:
    """Blank paper of its own code at issuing point 002 for the paper scenario."""
    async with stack.channel() as ch:
        await lifecycle_pb2_grpc.LifecycleServiceStub(ch).ReceivePaper(
            lifecycle_pb2.ReceivePaperRequest(
                operator=lifecycle_pb2.Operator(
                    unit_code=demo.UNIT_CODE, place_code="002", operator="gateway-test"
                ),
                paper_code=PAPER_CODE,
                start_no="0000000001",
                end_no="0000000200",
            )
        )


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_fixture(path: Path, his: HisClient, paper: None) -> None:
    Scenario(path).play(his)
