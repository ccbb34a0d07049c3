"""A randomized fault run (`make chaos SECONDS=300 SEED=7`).

Starts the whole stack (embedded PostgreSQL, signer and fiscal sandboxes, the
engine) with the engine's connections to PostgreSQL, the signer and the platform
running through fault proxies, and runs a mixed workload (bench/chaos_load.py:
single and batch issuance, red-flush, refund, paper conversion, stock
distribution) while a seeded schedule of faults plays:

- kill_engine: kill -9 of the engine and its Ray helpers, restarted after a pause;
- kill_database: kill -9 of PostgreSQL (postmaster and backends), restarted;
- stop_signer / stop_fiscal: the signer or the platform away for a while;
- cut: every connection through one proxy aborted at once;
- slow_fiscal: the platform answering after a latency, for a while.

The schedule is a pure function of the seed (printed at the start), so a failing
run is replayed with the same --seed (the times are "not before": a restart that
takes longer shifts what follows). Then every process is brought back, the
clients finish what they began (bounded), the outbox drains, and the checker
(bench/chaos_check.py) compares what the clients were acknowledged with the
database. Exit code 0 when nothing is violated, 1 otherwise; the report lists
each violation.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench.chaos_check import Report, check
from bench.chaos_load import Load, prepare
from ops.faultproxy import FaultProxy
from ops.stack import Stack, StackConfig
from protos.fiscal.v1 import fiscal_pb2, fiscal_pb2_grpc
from protos.hsm.v1 import signer_pb2, signer_pb2_grpc
from storage.db import connect_pool
from usecases import demo

__all__ = ["KINDS", "ChaosResult", "Fault", "main", "run", "schedule"]

KINDS = ("kill_engine", "kill_database", "stop_signer", "stop_fiscal", "cut", "slow_fiscal")
CUT_TARGETS = ("database", "signer", "fiscal")

# The engine tuned to recover within a short run (as the resilience tests do).
FAST_RECOVERY = {
    "EBILL_OUTBOX_GRACE_S": "2",
    "EBILL_RECOVERY_INTERVAL_S": "0.5",
    "EBILL_FISCAL_TIMEOUT_S": "2",
    "EBILL_BATCH_LINGER_MS": "2",
}


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: not before ``at`` seconds into the run, held ``hold`` seconds."""

    at: float
    kind: str
    hold: float
    # cut: which proxy; slow_fiscal: the latency in ms.
    target: str = ""

    def line(self) -> str:
        what = f" {self.target}" if self.target else ""
        return f"t+{self.at:6.1f}s {self.kind}{what} hold {self.hold:.1f}s"


def schedule(seed: int, seconds: float) -> list[Fault]:
    """The faults of a run of ``seconds``: every kind once first (in a seeded order,
    so that even a short run has each), then kinds drawn at random."""
    rng = random.Random(seed)
    faults: list[Fault] = []
    first = rng.sample(KINDS, len(KINDS))
    t = rng.uniform(3.0, 6.0)
    while True:
        kind = first.pop(0) if first else rng.choice(KINDS)
        target = ""
        if kind == "kill_engine":
            hold = rng.uniform(0.2, 2.0)
        elif kind == "kill_database":
            hold = rng.uniform(0.5, 3.0)
        elif kind == "stop_signer":
            hold = rng.uniform(1.0, 6.0)
        elif kind == "stop_fiscal":
            hold = rng.uniform(2.0, 10.0)
        elif kind == "cut":
            hold = 0.0
            target = rng.choice(CUT_TARGETS)
        else:
            hold = rng.uniform(3.0, 10.0)
            target = str(rng.choice((500, 1500, 3000)))
        if t + hold > seconds:
            return faults
        faults.append(Fault(round(t, 1), kind, round(hold, 1), target))
        t += hold + rng.uniform(2.0, 6.0)


@dataclass
class ChaosResult:
    seed: int
    seconds: float
    faults: list[Fault]
    report: Report
    outcomes: dict[str, int] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    # Faults that could not be played (the harness, not the engine, failed).
    unplayed: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def lines(self) -> list[str]:
        out = [f"chaos run: seed {self.seed}, {self.seconds:.0f} s of load, {self.elapsed:.0f} s"]
        out.append(f"faults played: {len(self.faults) - len(self.unplayed)} of {len(self.faults)}")
        out += [f"  not played: {u}" for u in self.unplayed]
        out.append("outcomes (operation, gRPC code: count):")
        for k, v in sorted(self.outcomes.items()):
            detail = self.details.get(k, "")
            out.append(f"  {k}: {v}" + (f"  (first: {detail})" if detail else ""))
        out.append("check:")
        out += self.report.lines()
        out.append("PASS" if self.report.ok else "FAIL")
        return out


class Faults:
    """Plays faults on a stack whose engine talks through the proxies."""

    def __init__(self, stack: Stack, proxies: dict[str, FaultProxy], engine_env: dict[str, str]):
        self.stack = stack
        self.proxies = proxies
        self.engine_env = engine_env
        self.log: list[str] = []
        # Faults that could not be played as scheduled (the run then proves less).
        self.failed: list[str] = []

    def _say(self, started: float, text: str) -> None:
        line = f"  [{time.monotonic() - started:6.1f}s] {text}"
        self.log.append(line)
        print(line, flush=True)

    async def play(self, faults: list[Fault], started: float) -> None:
        """Play every fault in order; a fault that fails to play (a restart that
        did not come up) is reported and everything is brought back before the next."""
        for f in faults:
            await asyncio.sleep(max(0.0, started + f.at - time.monotonic()))
            self._say(started, f.line())
            try:
                await self._one(f, started)
            except Exception as exc:
                self.failed.append(f"{f.line()}: {type(exc).__name__}: {exc}"[:300])
                self._say(started, f"  FAILED to play: {type(exc).__name__}: {exc}"[:300])
                await asyncio.to_thread(self.restore)
            self._say(started, f"  {f.kind} over")

    def restore(self) -> None:
        """Every process up again, the platform at full speed."""
        s = self.stack
        s.restart_database()  # a no-op when it runs
        for name in ("signer", "fiscal", "engine"):
            proc = s.procs.get(name)
            if proc is not None and proc.poll() is None:
                continue
            s.kill_process(name)
            if name == "signer":
                s.start_signer()
            elif name == "fiscal":
                s.start_fiscal()
            else:
                s.start_engine(180, **self.engine_env)

    async def _one(self, f: Fault, started: float) -> None:
        s = self.stack
        if f.kind == "kill_engine":
            await asyncio.to_thread(s.kill_process, "engine")
            await asyncio.sleep(f.hold)
            await asyncio.to_thread(s.start_engine, 180, **self.engine_env)
        elif f.kind == "kill_database":
            await asyncio.to_thread(s.kill_database)
            await asyncio.sleep(f.hold)
            await asyncio.to_thread(s.restart_database)
        elif f.kind == "stop_signer":
            await asyncio.to_thread(s.stop_process, "signer")
            await asyncio.sleep(f.hold)
            await asyncio.to_thread(s.start_signer)
        elif f.kind == "stop_fiscal":
            await asyncio.to_thread(s.stop_process, "fiscal")
            await asyncio.sleep(f.hold)
            await asyncio.to_thread(s.start_fiscal)
        elif f.kind == "cut":
            n = await asyncio.to_thread(self.proxies[f.target].cut)
            self._say(started, f"  cut {n} connection(s) to the {f.target}")
        else:
            await asyncio.to_thread(s.stop_process, "fiscal")
            await asyncio.to_thread(s.start_fiscal, EBILL_FISCAL_LATENCY_MS=f.target)
            await asyncio.sleep(f.hold)
            await asyncio.to_thread(s.stop_process, "fiscal")
            await asyncio.to_thread(s.start_fiscal)


async def public_keys(stack: Stack) -> tuple[bytes, bytes]:
    async with stack.channel("signer") as ch:
        unit = await signer_pb2_grpc.SignerStub(ch).ExportPublicKey(
            signer_pb2.ExportPublicKeyRequest(key_id="unit-sign")
        )
    async with stack.channel("fiscal") as ch:
        fiscal = await fiscal_pb2_grpc.FiscalPlatformStub(ch).GetPublicKey(
            fiscal_pb2.GetPublicKeyRequest()
        )
    return bytes(unit.public_key), bytes(fiscal.public_key)


async def settle(pool: asyncpg.Pool, timeout: float) -> float:
    """Wait (bounded) until no bill is unfinished and the outbox is empty; the
    checker reports whatever is still stuck after."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        left = await pool.fetchval(
            "SELECT (SELECT count(*) FROM outbox) + (SELECT count(*) FROM bills"
            " WHERE status IN ('reserved', 'pending_countersign'))"
        )
        if left == 0:
            break
        await asyncio.sleep(0.5)
    return time.monotonic() - started


async def _scenario(
    stack: Stack, proxies: dict[str, FaultProxy], engine_env: dict[str, str], seed: int,
    seconds: float, faults: list[Fault], gmssl_sample: int,
) -> ChaosResult:  # fmt: skip
    await prepare(
        stack.config.grpc_addr, office_count=50_000, paper_count=100_000, tls=stack.tls(),
        creds=stack.app_credentials(),
    )  # fmt: skip
    keys = await public_keys(stack)
    load = Load(stack.config.grpc_addr, seed, tls=stack.tls(), creds=stack.app_credentials())
    player = Faults(stack, proxies, engine_env)
    started = time.monotonic()
    # The clients stop starting new work at the end of the load; the faults may
    # run a restart past it, and the clients finish what they began.
    loading = asyncio.create_task(load.run(started + seconds))
    await player.play(faults, started)
    await asyncio.to_thread(player.restore)
    await loading
    print(f"  [{time.monotonic() - started:6.1f}s] load over; settling", flush=True)
    pool = await connect_pool(stack.database_url, migrate=False)
    try:
        waited = await settle(pool, timeout=180)
        report = await check(
            pool, load.ledger, keys, ring=stack.data_keys(), unit_code=demo.UNIT_CODE,
            gmssl_sample=gmssl_sample, seed=seed,
        )  # fmt: skip
    finally:
        await pool.close()
    report.figures = {**load.ledger.counts(), **report.figures, "settle_s": round(waited)}
    return ChaosResult(
        seed, seconds, faults, report, dict(load.outcomes), load.details, player.failed
    )


def run(seed: int, seconds: float, *, data_dir: Path | None = None, gmssl_sample: int = 150,
        keep: bool = False) -> ChaosResult:  # fmt: skip
    """One fault run on a stack of its own; prints the schedule first."""
    faults = schedule(seed, seconds)
    print(f"chaos: seed {seed}, {seconds:.0f} s, {len(faults)} faults (replay: --seed {seed})")
    for f in faults:
        print(f"  {f.line()}")
    sys.stdout.flush()
    own_dir = data_dir is None
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="ebill-chaos-"))
    print(f"chaos data and logs in {data_dir}", flush=True)
    config = StackConfig(data_dir=data_dir, log_dir=data_dir / "logs", extra_env=FAST_RECOVERY)
    began = time.monotonic()
    with Stack(config) as stack:
        stack.seed_demo(stock=50_000)
        assert stack.pg is not None
        proxies = {
            "database": FaultProxy(upstream_unix=stack.pg.socket_path).start(),
            "signer": FaultProxy(upstream_host="127.0.0.1", upstream_port=config.signer_port),
            "fiscal": FaultProxy(upstream_host="127.0.0.1", upstream_port=config.fiscal_port),
        }
        proxies["signer"].start()
        proxies["fiscal"].start()
        engine_env = {
            "EBILL_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{proxies['database'].port}/ebill",
            "EBILL_SIGNER_ADDR": proxies["signer"].addr,
            "EBILL_FISCAL_ADDR": proxies["fiscal"].addr,
        }
        try:
            stack.start_engine(180, **engine_env)
            result = asyncio.run(
                _scenario(stack, proxies, engine_env, seed, seconds, faults, gmssl_sample)
            )
        finally:
            for proxy in proxies.values():
                proxy.stop()
    result.elapsed = time.monotonic() - began
    if own_dir and result.report.ok and not keep:
        shutil.rmtree(data_dir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=120, help="length of the load")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    parser.add_argument("--gmssl-sample", type=int, default=150, help="bills checked with gmssl")
    parser.add_argument("--data-dir", default="", help="default: a fresh temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep data and logs after a pass")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    result = run(
        seed, args.seconds, data_dir=Path(args.data_dir) if args.data_dir else None,
        gmssl_sample=args.gmssl_sample, keep=args.keep,
    )  # fmt: skip
    print()
    print("\n".join(result.lines()))
    sys.exit(0 if result.report.ok else 1)


if __name__ == "__main__":
    main()
