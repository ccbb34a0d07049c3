"""Issue #11 item 11: the fiscal platform's key is pinned by configuration. An
archive stage pinned to another key than the one the platform offers refuses
it; pinned to the platform's own key it verifies with that key. A real fiscal
sandbox servicer answers (in this process: nothing else is needed)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from actors.stages import ArchiveStage
from engine.errors import FailedPrecondition
from engine.sm2 import SigningKey
from ops.sandboxes.fiscal import FiscalService
from ops.sandboxes.signer import KeyStore
from protos.fiscal.v1 import fiscal_pb2_grpc


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """A fiscal sandbox on a free port, and its public key."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    fiscal_pb2_grpc.add_FiscalPlatformServicer_to_server(FiscalService(tmp_path), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", KeyStore(tmp_path).get("fiscal").public.point
    finally:
        server.stop(grace=None)


async def test_a_platform_offering_another_key_than_the_pinned_one_is_refused(
    platform: tuple[str, bytes],
) -> None:
    addr, key = platform
    stranger = SigningKey.generate().public.point
    pinned_elsewhere = ArchiveStage("postgresql://unused", addr, True, stranger)
    with pytest.raises(FailedPrecondition, match="pinned"):
        await pinned_elsewhere.fiscal_key()
    pinned_right = ArchiveStage("postgresql://unused", addr, True, key)
    assert (await pinned_right.fiscal_key()).point == key
    # Unpinned: whatever the platform offers is taken (trust on first use).
    assert (await ArchiveStage("postgresql://unused", addr).fiscal_key()).point == key
