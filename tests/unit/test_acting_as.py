"""ebill.grpc.auth.acting_as: the one public way to serve a block as a caller
(the REST mapping uses it), and the caller does not outlive the block."""

from __future__ import annotations

import asyncio

import pytest

from ebill.grpc.auth import ANONYMOUS, ENGINE, acting_as, principal
from engine.errors import Unauthenticated


def test_the_caller_is_set_inside_and_restored_after() -> None:
    with pytest.raises(Unauthenticated):
        principal()
    with acting_as(ENGINE) as who:
        assert who is ENGINE and principal() is ENGINE
        with acting_as(ANONYMOUS):
            assert principal() is ANONYMOUS
        assert principal() is ENGINE
    with pytest.raises(Unauthenticated):
        principal()


def test_concurrent_calls_each_see_their_own_caller() -> None:
    async def serve(who: object, out: list[object]) -> None:
        with acting_as(who):  # type: ignore[arg-type]
            await asyncio.sleep(0.01)
            out.append(principal())

    async def main() -> tuple[list[object], list[object]]:
        a: list[object] = []
        b: list[object] = []
        await asyncio.gather(serve(ENGINE, a), serve(ANONYMOUS, b))
        return a, b

    a, b = asyncio.run(main())
    assert a == [ENGINE] and b == [ANONYMOUS]
