"""The console is an edge: its pages translate a request and call a use case,
never storage directly (issue #16's convention fix; usecases/console.py holds
the reads its pickers and listings need)."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_architecture import ROOT, imports, sources


def test_the_console_reads_through_use_cases_only() -> None:
    pages = [p for p in sources(ROOT, ["ebill"]) if "ebill/http/console" in p.as_posix()]
    assert pages, "no console modules found"
    for path in pages:
        assert "storage" not in imports(path), f"{Path(path).relative_to(ROOT)} imports storage"
