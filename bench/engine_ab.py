"""The whole engine, two source trees alternating in one run: bench.issuance run in
tree B (before) and in this tree (A, after), each on a fresh stack, ``--pairs``
times, and the ratios A/B of what it prints (batch alone, batch beside single
bills, the single bills' p99 beside batch, the open-loop p99).

    git archive main | tar -x -C /tmp/main-tree
    .venv/bin/python -m bench.engine_ab --before /tmp/main-tree [--pairs 2] \\
        -- --batch 6000 --single 0 --rate 300 --seconds 8 --locust-seconds 0 --baseline 0
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

__all__ = ["main"]

_ROW = re.compile(
    r"^(?P<name>\S.*?)\s+(?P<issued>\d+) issued.*?(?P<rate>\d+) bills/s.*?p99\s+(?P<p99>[\d.]+) ms"
)
_FIGURES = {
    "batch alone bills/s": ("batch x200", "rate"),
    "batch beside single bills/s": ("batch beside single", "rate"),
    "single beside batch p99 ms": ("beside batch", "p99"),
    "open loop p99 ms": ("single, open loop", "p99"),
}


def _run(tree: Path, bench_args: list[str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.issuance", *bench_args],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    figures: dict[str, float] = {}
    for line in out.stdout.splitlines():
        if line.startswith(" "):  # the summary repeats every row
            continue
        m = _ROW.match(line)
        if not m:
            continue
        for label, (prefix, what) in _FIGURES.items():
            if m["name"].startswith(prefix) or (prefix == "beside batch" and prefix in m["name"]):
                figures.setdefault(label, float(m[what]))
    if not figures:
        print(out.stdout[-2000:], out.stderr[-2000:], sep="\n")
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", required=True, help="source tree B (before)")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("bench_args", nargs="*", help="passed to bench.issuance (after --)")
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parent.parent
    before = Path(args.before).resolve()
    ratios: dict[str, list[float]] = {k: [] for k in _FIGURES}
    for pair in range(args.pairs):
        b = _run(before, args.bench_args)
        a = _run(here, args.bench_args)
        for label in _FIGURES:
            if label in a and label in b and b[label]:
                ratios[label].append(a[label] / b[label])
                print(
                    f"pair {pair + 1}: {label:<30} B {b[label]:8.1f}  A {a[label]:8.1f}  "
                    f"A/B {a[label] / b[label]:.2f}",
                    flush=True,
                )
    for label, xs in ratios.items():
        if xs:
            print(f"{label:<30} A/B median {statistics.median(xs):.2f} over {len(xs)} pairs")


if __name__ == "__main__":
    main()
