"""The fault schedule of a chaos run is a pure function of its seed, so that a
failing run is replayed with the same --seed."""

from __future__ import annotations

from bench.chaos import KINDS, schedule


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    assert schedule(7, 300) == schedule(7, 300)
    assert schedule(7, 300) != schedule(8, 300)


def test_every_kind_of_fault_comes_early_and_the_schedule_fits_the_run() -> None:
    for seed in range(50):
        faults = schedule(seed, 70)
        assert {f.kind for f in faults[: len(KINDS)]} == set(KINDS), seed
        assert all(f.at + f.hold <= 70 for f in faults)
        assert [f.at for f in faults] == sorted(f.at for f in faults)
        assert all(f.target in ("database", "signer", "fiscal") for f in faults if f.kind == "cut")
