"""The crypto ceiling: how many bills/s this machine allows if it did nothing but
each bill's SM2 operations, measured natively (Tongsuo) in the same run as the
benchmark, so every figure can be printed as a share of it."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from engine.sm2 import SigningKey
from usecases import demo

__all__ = [
    "PLATFORM_SIGNS_PER_BILL",
    "PLATFORM_VERIFIES_PER_BILL",
    "SM2_SIGNS_PER_BILL",
    "SM2_VERIFIES_PER_BILL",
    "CryptoCeiling",
    "measure_sm2",
]

# The SM2 operations one issued bill costs on this machine, read from the pipeline:
# signs: the unit signature (signer sandbox, UnitSignStage), the fiscal
# countersignature and the platform's QR signature (fiscal sandbox, CountersignBatch);
# verifies: the platform checks the unit signature (fiscal sandbox), the archive
# checks the countersignature and the QR signature (ArchiveStage,
# engine.pipeline.check_platform_signatures). Change these when the pipeline gains
# or loses an SM2 operation (the QR pair came with the QR codes; counted since).
SM2_SIGNS_PER_BILL = 3
SM2_VERIFIES_PER_BILL = 3
# Of those, what the fiscal sandbox does for each bill: 2 signs, 1 verify.
PLATFORM_SIGNS_PER_BILL = 2
PLATFORM_VERIFIES_PER_BILL = 1


@dataclass(frozen=True)
class CryptoCeiling:
    """Native SM2 rates measured here, and the bills/s they allow."""

    threads: int
    sign_per_s_one: float  # one thread
    verify_per_s_one: float
    sign_per_s: float  # ``threads`` threads together (Tongsuo releases the GIL)
    verify_per_s: float

    @property
    def bills_per_s(self) -> float:
        """Bills/s if every core did nothing but each bill's SM2 operations."""
        seconds = SM2_SIGNS_PER_BILL / self.sign_per_s + SM2_VERIFIES_PER_BILL / self.verify_per_s
        return 1 / seconds

    @property
    def platform_serial_per_s(self) -> float:
        """Bills/s the fiscal sandbox could countersign were its SM2 work on one core
        (it serves calls under one lock; its SM2 work now runs on every core
        inside that lock, ops/sandboxes/fiscal.py): the bound before that change."""
        return 1 / (
            PLATFORM_SIGNS_PER_BILL / self.sign_per_s_one
            + PLATFORM_VERIFIES_PER_BILL / self.verify_per_s_one
        )

    def line(self) -> str:
        return (
            f"SM2 (Tongsuo) one thread: {self.sign_per_s_one:,.0f} sign/s, "
            f"{self.verify_per_s_one:,.0f} verify/s; {self.threads} threads: "
            f"{self.sign_per_s:,.0f} sign/s, {self.verify_per_s:,.0f} verify/s\n"
            f"crypto ceiling: {SM2_SIGNS_PER_BILL} signs + {SM2_VERIFIES_PER_BILL} verifies "
            f"per bill -> {self.bills_per_s:,.0f} bills/s on this machine\n"
            f"fiscal sandbox: {PLATFORM_SIGNS_PER_BILL} signs + {PLATFORM_VERIFIES_PER_BILL} "
            f"verify per bill; on one core that would bound it at "
            f"{self.platform_serial_per_s:,.0f} bills/s"
        )


def _rate(op: Callable[[], object], seconds: float, threads: int) -> float:
    """Operations per second of ``op`` run back to back on ``threads`` threads."""
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def worker(i: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            for _ in range(20):
                op()
            n += 20
        counts[i] = n

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / (time.perf_counter() - started)


def measure_sm2(seconds: float = 1.0, threads: int | None = None) -> CryptoCeiling:
    """Native SM2 sign and verify rates over a bill-sized message."""
    threads = threads or len(os.sched_getaffinity(0))
    key = SigningKey.generate()
    message = json.dumps(asdict(demo.demo_bill(1)), ensure_ascii=False).encode()
    signature = key.sign(message)
    public = key.public
    assert public.verify(message, signature)

    def verify() -> None:
        public.verify(message, signature)

    def sign() -> None:
        key.sign(message)

    return CryptoCeiling(
        threads=threads,
        sign_per_s_one=_rate(sign, seconds, 1),
        verify_per_s_one=_rate(verify, seconds, 1),
        sign_per_s=_rate(sign, seconds, threads),
        verify_per_s=_rate(verify, seconds, threads),
    )
