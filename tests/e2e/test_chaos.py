"""A short seeded fault run (bench/chaos.py): a mixed workload while the engine
and PostgreSQL are killed -9, the signer and the platform stopped, connections
cut and the platform slowed; then every acknowledged operation is found exactly
once and every invariant holds (bench/chaos_check.py). `make chaos` runs longer."""

from __future__ import annotations

import pytest

from bench.chaos import KINDS, run

pytestmark = pytest.mark.slow

SEED = 20261123
SECONDS = 70


def test_a_seeded_fault_run_loses_duplicates_and_strands_nothing() -> None:
    result = run(SEED, SECONDS, gmssl_sample=60)
    print("\n".join(result.lines()))
    # The run did what it says: every kind of fault, every kind of operation.
    assert {f.kind for f in result.faults} == set(KINDS)
    figures = result.report.figures
    assert figures["issued"] > 200, figures
    for op in ("red_flushed", "refunded", "converted", "distributed"):
        assert figures[op] > 0, (op, figures)
    # The faults were felt by the clients.
    assert any(not k.endswith(" OK") for k in result.outcomes), result.outcomes
    assert result.report.ok, "\n".join(result.report.lines())
