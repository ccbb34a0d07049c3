"""The checker of a fault run: what the clients were told (a Ledger) against what
the database holds, once everything has settled.

Every violation is collected as one line (nothing stops at the first), so a
failing run reports all it broke. Used by bench/chaos.py and by the resilience
tests (tests/resilience.py), which assert that the list is empty.

What it proves:
- every acknowledged operation is present exactly once: an issued bill under its
  bus_no with the number and check code it was answered with; a red-flush's red
  bill cancelling the original it named; a refund's red bill and remainder; a
  conversion's paper bill; a distribution's numbers at the issuing point, and no
  two acknowledged distributions of the same number;
- numbers per segment are contiguous: the bills of a segment carry exactly the
  numbers from its start to its next_no (none lost, none skipped, none twice);
  the same for paper stock and the paper bills printed from it;
- the stock identity granted = issued + available + voided + returned holds for
  every bill code, and the numbers used are the bills held;
- nothing is stuck: no bill reserved or pending countersignature, no outbox row;
- every red-flushed bill has exactly one red bill, and every red bill negates its
  original and is countersigned;
- every signature verifies: natively for every bill, with gmssl (an independent
  implementation, 10 ms a check) for a seeded sample.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from bench.gm_reference import gm_verify
from engine.errors import DataLoss
from engine.sealing import KeyRing
from engine.sm2 import VerifyingKey
from storage.personal import open_canonical
from storage.stock.segments import identity

__all__ = ["Acked", "Distribution", "Ledger", "Report", "check"]

# A violation list longer than this is cut in the report: the first ones say it.
_SHOW = 50

Bad = Callable[[str], None]
Verify = Callable[[bytes, bytes, bytes], bool]


@dataclass(frozen=True, slots=True)
class Acked:
    """A bill as an answer gave it: enough to find it and to compare."""

    bus_no: str
    bill_code: str
    bill_no: str
    check_code: str = ""

    @property
    def number(self) -> str:
        return f"{self.bill_code}/{self.bill_no}"


@dataclass(frozen=True, slots=True)
class Distribution:
    place_code: str
    bill_code: str
    start_no: int
    end_no: int


@dataclass
class Ledger:
    """What the clients were acknowledged, by operation. Keys are the operations'
    idempotency keys where they have one, so a replayed answer lands on its entry."""

    issued: dict[str, Acked] = field(default_factory=dict)
    # red bus_no -> (original, red bill)
    red_flushed: dict[str, tuple[Acked, Acked]] = field(default_factory=dict)
    # red bus_no -> (original, red bill, remainder or None on a full refund)
    refunded: dict[str, tuple[Acked, Acked, Acked | None]] = field(default_factory=dict)
    # "bill_code/bill_no" -> (paper_code, paper_no)
    converted: dict[str, tuple[str, str]] = field(default_factory=dict)
    distributed: list[Distribution] = field(default_factory=list)
    # An answer that contradicts an earlier one for the same key (seen by the client).
    contradictions: list[str] = field(default_factory=list)

    def ack_issued(self, bill: Acked) -> None:
        prior = self.issued.setdefault(bill.bus_no, bill)
        if prior != bill:
            self.contradictions.append(
                f"bus_no {bill.bus_no} answered as {prior.number} and later as {bill.number}"
            )

    def counts(self) -> dict[str, int]:
        return {
            "issued": len(self.issued),
            "red_flushed": len(self.red_flushed),
            "refunded": len(self.refunded),
            "converted": len(self.converted),
            "distributed": len(self.distributed),
            "distributed_numbers": sum(d.end_no - d.start_no + 1 for d in self.distributed),
        }


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def lines(self) -> list[str]:
        out = [f"  {k}: {v}" for k, v in self.figures.items()]
        if self.ok:
            out.append("  no violation")
        else:
            out.append(f"  {len(self.violations)} violation(s):")
            out += [f"    - {v}" for v in self.violations[:_SHOW]]
            if len(self.violations) > _SHOW:
                out.append(f"    ... and {len(self.violations) - _SHOW} more")
        return out


def _same(row: asyncpg.Record | None, want: Acked) -> bool:
    if row is None:
        return False
    same = (row["bill_code"], row["bill_no"]) == (want.bill_code, want.bill_no)
    return same and (not want.check_code or row["check_code"] == want.check_code)


async def check(
    pool: asyncpg.Pool,
    ledger: Ledger,
    keys: tuple[bytes, bytes],
    *,
    ring: KeyRing,
    unit_code: str,
    gmssl_sample: int = 150,
    seed: int = 0,
) -> Report:
    """Check the ledger and the invariants; ``keys`` = (unit, fiscal) public keys,
    ``ring`` the data key ring that opens the bills' sealed canonical bytes."""
    report = Report()
    bad = report.violations.append
    report.violations += ledger.contradictions

    rows = await pool.fetch(
        "SELECT id, bus_no, bill_code, bill_no, check_code, status, segment_id, origin,"
        " red_of, replaces, total_fen, canonical_sealed, unit_signature, fiscal_signature"
        " FROM bills WHERE unit_code = $1",
        unit_code,
    )
    by_bus = {r["bus_no"]: r for r in rows}
    by_id = {r["id"]: r for r in rows}
    by_number = {f"{r['bill_code']}/{r['bill_no']}": r for r in rows}
    report.figures["bills_in_database"] = len(rows)

    # Acknowledged bills: present under their bus_no, as answered.
    for bus_no, want in ledger.issued.items():
        row = by_bus.get(bus_no)
        if not _same(row, want):
            got = "missing" if row is None else f"{row['bill_code']}/{row['bill_no']}"
            bad(f"issued bill {bus_no}: acknowledged as {want.number}, database has {got}")

    reds_of: dict[int, list[asyncpg.Record]] = {}
    for r in rows:
        if r["red_of"] is not None:
            reds_of.setdefault(r["red_of"], []).append(r)

    def red_pair(kind: str, key: str, original: Acked, red: Acked) -> None:
        row = by_bus.get(key)
        orig = by_number.get(original.number)
        if not _same(row, red) or row is None:
            bad(f"{kind} {key}: red bill {red.number} acknowledged, not in the database")
        elif orig is None or row["red_of"] != orig["id"]:
            bad(f"{kind} {key}: red bill {red.number} does not cancel {original.number}")
        elif orig["status"] != "red_flushed":
            bad(f"{kind} {key}: original {original.number} is {orig['status']}, not red_flushed")

    for key, (original, red) in ledger.red_flushed.items():
        red_pair("red-flush", key, original, red)
    for key, (original, red, remainder) in ledger.refunded.items():
        red_pair("refund", key, original, red)
        if remainder is not None:
            rem = by_bus.get(remainder.bus_no)
            orig = by_number.get(original.number)
            if not _same(rem, remainder) or rem is None:
                bad(f"refund {key}: remainder {remainder.number} acknowledged, not in the database")
            elif orig is None or rem["replaces"] != orig["id"]:
                bad(f"refund {key}: remainder {remainder.number} does not replace the original")

    # Red bills, acknowledged or not: one per cancelled bill, negating it.
    for r in rows:
        reds = reds_of.get(r["id"], [])
        if len(reds) > 1:
            bad(f"bill {r['bill_code']}/{r['bill_no']} has {len(reds)} red bills")
        if r["status"] == "red_flushed" and not reds:
            bad(f"bill {r['bill_code']}/{r['bill_no']} is red_flushed without a red bill")
        if r["red_of"] is not None:
            orig = by_id.get(r["red_of"])
            if orig is None or r["total_fen"] != -orig["total_fen"]:
                bad(f"red bill {r['bill_code']}/{r['bill_no']} does not negate its original")
            elif orig["status"] != "red_flushed":
                bad(f"red bill {r['bill_code']}/{r['bill_no']}: original is {orig['status']}")

    await _paper(pool, ledger, by_number, bad, unit_code)
    await _stock(pool, ledger, bad, unit_code, report)

    # Nothing stuck.
    stuck = await pool.fetch(
        "SELECT status, count(*) AS n FROM bills WHERE unit_code = $1"
        " AND status IN ('reserved', 'pending_countersign') GROUP BY 1",
        unit_code,
    )
    for r in stuck:
        bad(f"{r['n']} bill(s) stuck in {r['status']}")
    outbox = int(
        await pool.fetchval(
            "SELECT count(*) FROM outbox o JOIN bills b ON b.id = o.bill_id WHERE b.unit_code = $1",
            unit_code,
        )
    )
    if outbox:
        bad(f"{outbox} outbox row(s) left")

    signed = [r for r in rows if r["origin"] == "engine"]
    report.figures["signatures_verified_natively"] = _signatures(signed, keys, ring, bad, None)
    rng = random.Random(seed)
    sample = rng.sample(signed, min(gmssl_sample, len(signed)))
    report.figures["signatures_verified_gmssl"] = _signatures(sample, keys, ring, bad, gm_verify)
    return report


async def _paper(
    pool: asyncpg.Pool,
    ledger: Ledger,
    by_number: dict[str, asyncpg.Record],
    bad: Bad,
    unit_code: str,
) -> None:
    papers = await pool.fetch(
        "SELECT paper_code, paper_no, bill_id, status, stock_id FROM paper_bills"
        " WHERE unit_code = $1",
        unit_code,
    )
    by_paper = {(p["paper_code"], p["paper_no"]): p for p in papers}
    for number, (paper_code, paper_no) in ledger.converted.items():
        bill = by_number.get(number)
        paper = by_paper.get((paper_code, paper_no))
        if bill is None:
            bad(f"conversion of {number}: the bill is not in the database")
        elif paper is None or paper["bill_id"] != bill["id"]:
            bad(f"conversion of {number}: paper {paper_code}/{paper_no} does not carry it")
        elif paper["status"] != "printed":
            bad(f"conversion of {number}: paper {paper_code}/{paper_no} is {paper['status']}")
    printed: dict[int, int] = {}
    for p in papers:
        if p["status"] == "printed" and p["bill_id"] is not None:
            printed[p["bill_id"]] = printed.get(p["bill_id"], 0) + 1
    for bill_id, n in printed.items():
        if n > 1:
            bad(f"bill id {bill_id} is printed on {n} paper bills")
    # Paper stock: every sheet below next_no is a paper bill taken from it, once, and
    # no paper bill lies outside the range. Sheets at or above next_no may be taken
    # too: an offline bill is printed on a blank the window names (storage.offline),
    # and the next conversion skips it (storage.paper._first_blank).
    for st in await pool.fetch("SELECT * FROM paper_stock WHERE unit_code = $1", unit_code):
        used = sorted(int(p["paper_no"]) for p in papers if p["stock_id"] == st["id"])
        below = [n for n in used if n < st["next_no"]]
        if (
            below != list(range(st["start_no"], st["next_no"]))
            or len(set(used)) != len(used)
            or any(n > st["end_no"] for n in used)
        ):
            bad(
                f"paper stock {st['paper_code']} {st['start_no']}-{st['end_no']}: sheets used"
                f" {_span(used)}, next_no {st['next_no']}"
            )


async def _stock(
    pool: asyncpg.Pool, ledger: Ledger, bad: Bad, unit_code: str, report: Report
) -> None:
    segments = await pool.fetch("SELECT * FROM segments WHERE unit_code = $1", unit_code)
    numbers: dict[int, list[int]] = {}
    for r in await pool.fetch(
        "SELECT segment_id, bill_no FROM bills WHERE unit_code = $1 AND segment_id IS NOT NULL",
        unit_code,
    ):
        numbers.setdefault(r["segment_id"], []).append(int(r["bill_no"]))
    for seg in segments:
        used = sorted(numbers.get(seg["id"], []))
        # Leased numbers are exactly the numbers on bills: none lost, none skipped.
        if used != list(range(seg["start_no"], seg["next_no"])):
            bad(
                f"segment {seg['id']} ({seg['bill_code']} {seg['start_no']}-{seg['end_no']},"
                f" next_no {seg['next_no']}): bills carry {_span(used)}"
            )
    report.figures["segments"] = len(segments)

    # Distributions: each acknowledged range sits at its issuing point, once.
    seen: list[Distribution] = []
    for d in ledger.distributed:
        covered = sum(
            min(d.end_no, s["end_no"]) - max(d.start_no, s["start_no"]) + 1
            for s in segments
            if s["bill_code"] == d.bill_code
            and s["place_code"] == d.place_code
            and s["start_no"] <= d.end_no
            and s["end_no"] >= d.start_no
        )
        if covered != d.end_no - d.start_no + 1:
            bad(
                f"distribution {d.bill_code} {d.start_no}-{d.end_no} to {d.place_code}:"
                f" {covered} of its numbers are at that issuing point"
            )
        for o in seen:
            if o.bill_code == d.bill_code and o.start_no <= d.end_no and o.end_no >= d.start_no:
                bad(f"distributions {o} and {d} share numbers")
        seen.append(d)

    for line in await identity(pool, unit_code):
        if not line.balanced:
            bad(
                f"stock identity {line.bill_code}: granted {line.granted} != issued"
                f" {line.issued} + available {line.available} + voided {line.voided}"
                f" + returned {line.returned}"
            )
        if line.issued - line.issued_before_go_live != line.bills:
            bad(
                f"stock identity {line.bill_code}: {line.issued} numbers used"
                f" ({line.issued_before_go_live} before go-live), {line.bills} bills held"
            )
        report.figures[f"granted_{line.bill_code}"] = line.granted


def _span(used: list[int]) -> str:
    """A short description of a list of numbers, for a violation line."""
    if not used:
        return "none"
    return f"{len(used)} numbers {used[0]}..{used[-1]} ({len(set(used))} distinct)"


def _signatures(
    rows: list[asyncpg.Record],
    keys: tuple[bytes, bytes],
    ring: KeyRing,
    bad: Bad,
    reference: Verify | None,
) -> int:
    unit_key, fiscal_key = keys
    native_unit, native_fiscal = VerifyingKey(unit_key), VerifyingKey(fiscal_key)
    checked = 0
    for r in rows:
        number = f"{r['bill_code']}/{r['bill_no']}"
        try:
            canonical = open_canonical(ring, r)
        except DataLoss as exc:
            bad(f"bill {number}: its sealed canonical bytes do not open ({exc})")
            continue
        unit_sig = bytes(r["unit_signature"] or b"")
        fiscal_sig = bytes(r["fiscal_signature"] or b"")
        if not unit_sig or not fiscal_sig:
            bad(f"bill {number} ({r['status']}) lacks a signature")
            continue
        if reference is None:
            unit_ok = native_unit.verify(canonical, unit_sig)
            fiscal_ok = native_fiscal.verify(canonical + unit_sig, fiscal_sig)
            how = "natively"
        else:
            unit_ok = reference(unit_key, canonical, unit_sig)
            fiscal_ok = reference(fiscal_key, canonical + unit_sig, fiscal_sig)
            how = "with gmssl"
        if not unit_ok:
            bad(f"bill {number}: unit signature does not verify {how}")
        if not fiscal_ok:
            bad(f"bill {number}: countersignature does not verify {how}")
        checked += 1
    return checked
