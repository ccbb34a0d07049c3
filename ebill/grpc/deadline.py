"""The caller's deadline, for the use cases that wait on the pipeline."""

from __future__ import annotations

import grpc

__all__ = ["time_left"]


def time_left(context: grpc.aio.ServicerContext) -> float | None:
    """Seconds until the caller's deadline, or None when it set none. The use case
    waits the shorter of this and EBILL_RPC_TIMEOUT_S: past the caller's deadline
    nobody reads the answer, and holding the call only ties up the server."""
    left = context.time_remaining()
    return None if left is None else max(0.0, float(left))
