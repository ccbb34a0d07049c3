from __future__ import annotations

from engine.breaker import BreakerState, CircuitBreaker


def state(b: CircuitBreaker) -> BreakerState:
    return b.state


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_probes_after_cooldown_and_backs_off() -> None:
    clock = Clock()
    b = CircuitBreaker(failure_threshold=3, cooldown_s=2, max_cooldown_s=5, clock=clock)
    for _ in range(2):
        assert b.allow()
        b.failure()
    assert state(b) is BreakerState.CLOSED
    b.failure()
    assert state(b) is BreakerState.OPEN and not b.allow()
    clock.now = 2.0
    assert b.allow() and state(b) is BreakerState.HALF_OPEN
    assert not b.allow()  # one probe at a time
    b.failure()  # probe failed: cooldown doubles to 4
    clock.now = 5.9
    assert not b.allow()
    clock.now = 6.0
    assert b.allow()
    b.failure()  # doubles again, capped at 5
    clock.now = 10.9
    assert not b.allow()
    clock.now = 11.0
    assert b.allow()
    b.success()
    assert state(b) is BreakerState.CLOSED and b.allow()


def test_success_resets_the_failure_count() -> None:
    b = CircuitBreaker(failure_threshold=2, clock=Clock())
    b.failure()
    b.success()
    b.failure()
    assert state(b) is BreakerState.CLOSED
