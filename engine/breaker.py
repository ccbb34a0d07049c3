"""A circuit breaker: stop calling a dependency that keeps failing, probe it now
and then, resume when a probe succeeds. Pure logic; the clock is injected."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        cooldown_s: float = 2.0,
        max_cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failure_threshold
        self._base = cooldown_s
        self._max = max_cooldown_s
        self._clock = clock
        self._failures = 0
        self._cooldown = cooldown_s
        self._open_until = 0.0
        self.state = BreakerState.CLOSED

    def allow(self) -> bool:
        """May a call go through now? Open lets exactly one probe through per cooldown."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN and self._clock() >= self._open_until:
            self.state = BreakerState.HALF_OPEN
            return True
        return False

    def success(self) -> None:
        self._failures = 0
        self._cooldown = self._base
        self.state = BreakerState.CLOSED

    def failure(self) -> None:
        self._failures += 1
        if self.state is BreakerState.HALF_OPEN:
            # The probe failed: wait longer before the next one.
            self._cooldown = min(self._max, self._cooldown * 2)
            self._trip()
        elif self._failures >= self._threshold:
            self._trip()

    def _trip(self) -> None:
        self.state = BreakerState.OPEN
        self._open_until = self._clock() + self._cooldown
