"""Replaying tests/fixtures/gateway/*.json (their README says the format)
through tests/his_client.py. Nothing of the engine is imported: a fixture is
checked the way the vendor's specification states it."""

from __future__ import annotations

import base64
import itertools
import json
import re
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.his_client import HisClient, Reply

__all__ = ["FIXTURES", "Scenario", "match"]

FIXTURES = Path(__file__).parent / "fixtures" / "gateway"
_CST = timezone(timedelta(hours=8))
_PNG = b"\x89PNG\r\n\x1a\n"
_runs = itertools.count(1)
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)(?:\.(\d+))?\}")


def match(expected: Any, got: Any, seen: dict[str, Any], path: str = "message") -> None:
    """Raise AssertionError naming the first difference; captures into ``seen``."""
    if isinstance(expected, dict):
        assert isinstance(got, dict), f"{path}: expected an object, got {got!r}"
        for key, value in expected.items():
            assert key in got, f"{path}.{key}: missing (got {sorted(got)})"
            match(value, got[key], seen, f"{path}.{key}")
        return
    if isinstance(expected, list):
        assert isinstance(got, list), f"{path}: expected a list, got {got!r}"
        assert len(got) == len(expected), f"{path}: {len(got)} items, expected {len(expected)}"
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            match(e, g, seen, f"{path}[{i}]")
        return
    if not isinstance(expected, str):
        assert got == expected, f"{path}: {got!r} != {expected!r}"
        return
    pattern, _, capture = (
        expected.partition("@") if expected.startswith("<") else (expected, "", "")
    )
    ok = True
    if pattern == "<str>":
        ok = isinstance(got, str) and got != ""
    elif pattern == "<any>":
        ok = True
    elif pattern.startswith("<digits:"):
        n = int(pattern[8:-1])
        ok = isinstance(got, str) and len(got) == n and got.isdigit()
    elif pattern == "<stamp17>":
        ok = isinstance(got, str) and len(got) == 17 and got.isdigit()
    elif pattern == "<png>":
        ok = isinstance(got, str) and base64.b64decode(got).startswith(_PNG)
    elif pattern == "<int>":
        ok = isinstance(got, int) and not isinstance(got, bool)
    elif pattern == "<number>":
        ok = isinstance(got, int | Decimal) and not isinstance(got, bool)
    elif pattern.startswith("~"):
        ok = isinstance(got, str) and pattern[1:] in got
    elif pattern.startswith("="):
        ok = got == seen[pattern[1:]]
    elif pattern.startswith("!"):
        ok = got != seen[pattern[1:]]
    else:
        ok = got == pattern
    assert ok, f"{path}: {got!r} does not match {expected!r}"
    if capture:
        seen[capture] = got


class Scenario:
    """One fixture file, run step by step with its captured values."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.steps: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
        self.seen: dict[str, Any] = {}
        self.run = f"GW{next(_runs):02d}{int(time.time() * 1000) % 10**9:09d}"
        self.requests: list[Any] = []
        self.step_vars: list[dict[str, str]] = []

    def _fill(self, value: Any, i: int) -> Any:
        if isinstance(value, dict):
            return {k: self._fill(v, i) for k, v in value.items()}
        if isinstance(value, list):
            return [self._fill(v, i) for v in value]
        if not isinstance(value, str):
            return value

        def sub(m: re.Match[str]) -> str:
            name, step = m.group(1), m.group(2)
            if step is not None:
                return str(self.step_vars[int(step)][name])
            if name in self.step_vars[i]:
                return self.step_vars[i][name]
            return str(self.seen[name])

        return _PLACEHOLDER.sub(sub, value)

    def play(self, client: HisClient, poll_s: float = 60.0) -> list[Reply]:
        replies = []
        for i, step in enumerate(self.steps):
            now = datetime.now(_CST)
            self.step_vars.append(
                {
                    "serial": f"{self.run}S{i}",
                    "now17": now.strftime("%Y%m%d%H%M%S") + f"{now.microsecond // 1000:03d}",
                    "today": now.strftime("%Y-%m-%d"),
                    "today8": now.strftime("%Y%m%d"),
                }
            )
            raw = step["request"]
            if raw == "=previous":
                request = self.requests[-1]
            elif isinstance(raw, str) and raw.startswith("=step"):
                request = self.requests[int(raw[5:])]
            else:
                request = self._fill(raw, i)
            self.requests.append(request)
            expected = self._fill(step["response"], i)
            deadline = time.monotonic() + (poll_s if step.get("poll") else 0)
            while True:
                reply = client.call(step["interface"], request)
                where = f"{self.path.name} step {i} ({step['interface']})"
                assert reply.signed_ok, f"{where}: the answer's sign does not verify"
                try:
                    match(expected.get("result"), reply.result, self.seen, "result")
                    if "message" in expected:
                        match(expected["message"], reply.message, self.seen)
                    break
                except AssertionError as exc:
                    if time.monotonic() >= deadline:
                        raise AssertionError(f"{where}: {exc} (got {reply.message!r})") from None
                    time.sleep(0.3)
            replies.append(reply)
        return replies
