"""The tree stays ruff- and mypy-clean (the style guide's bar)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff() -> None:
    for args in (("check", "."), ("format", "--check", ".")):
        res = run(str(BIN / "ruff"), *args)
        assert res.returncode == 0, res.stdout + res.stderr


def test_mypy_strict() -> None:
    res = run(str(BIN / "mypy"), "engine", "storage", "actors", "ebill", "ops", "bench", "tests")
    assert res.returncode == 0, res.stdout + res.stderr
