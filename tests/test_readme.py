"""README's set-up commands are real Makefile targets, documented by `make help`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_starts_with_make_run_and_make_test() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = readme.split("```", 2)[1]
    assert re.search(r"^make run\b", first_block, re.M)
    assert re.search(r"^make test\b", first_block, re.M)


def test_make_help_lists_every_documented_target() -> None:
    out = subprocess.run(
        ["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    out = re.sub(r"\x1b\[[0-9;]*m", "", out)  # colours
    for target in ("run", "test", "protos", "lint", "bench", "clean"):
        assert re.search(rf"^\s*{target}\s+\S", out, re.M), target


def test_every_ebill_setting_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    settings = (ROOT / "config" / "settings.py").read_text(encoding="utf-8")
    names = set(re.findall(r'"(EBILL_[A-Z_]+)"', settings))
    assert names
    missing = sorted(n for n in names if f"`{n}`" not in readme)
    assert not missing, missing
