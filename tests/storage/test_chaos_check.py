"""The chaos checker (bench/chaos_check.py) on a real database: silent on
consistent rows, and it names every kind of damage a fault run could leave."""

from __future__ import annotations

import asyncpg

from bench.chaos_check import Acked, Distribution, Ledger, check
from engine.sm2 import SigningKey
from storage.bills import reserve
from tests.factories import RING
from tests.storage.test_reserve import UNIT, prepared, setup, work

UNIT_KEY, FISCAL_KEY = SigningKey.generate(), SigningKey.generate()
KEYS = (UNIT_KEY.public.point, FISCAL_KEY.public.point)


async def issued_bills(db: asyncpg.Pool, n: int) -> Ledger:
    """``n`` bills reserved, then signed and countersigned as the pipeline would."""
    await setup(db, numbers=10)
    out = await reserve(db, [(i, prepared(i + 1)) for i in range(n)], ring=RING)
    ledger = Ledger()
    for i in range(n):
        w = work(out[i])
        canonical = w.canonical
        unit_sig = UNIT_KEY.sign(canonical)
        await db.execute(
            "UPDATE bills SET status = 'issued', unit_signature = $2, fiscal_signature = $3"
            " WHERE id = $1",
            w.bill_id, unit_sig, FISCAL_KEY.sign(canonical + unit_sig),
        )  # fmt: skip
        await db.execute("DELETE FROM outbox WHERE bill_id = $1", w.bill_id)
        ledger.ack_issued(Acked(prepared(i + 1).bus_no, w.bill_code, w.bill_no, w.check_code))
    return ledger


async def test_consistent_rows_pass(db: asyncpg.Pool) -> None:
    ledger = await issued_bills(db, 3)
    report = await check(db, ledger, KEYS, ring=RING, unit_code=UNIT, gmssl_sample=3)
    assert report.ok, report.lines()
    assert report.figures["signatures_verified_natively"] == 3
    assert report.figures["signatures_verified_gmssl"] == 3


async def test_every_kind_of_damage_is_named(db: asyncpg.Pool) -> None:
    ledger = await issued_bills(db, 3)
    first, second, third = ledger.issued.values()
    # An acknowledged bill the database does not have.
    ledger.ack_issued(Acked("NEVER-STORED", first.bill_code, "9999000009"))
    # An answer contradicting an earlier one for the same bus_no.
    ledger.ack_issued(Acked(first.bus_no, first.bill_code, "9999000008"))
    # A number leased but on no bill: a gap below next_no, the identity off by one.
    await db.execute("UPDATE segments SET next_no = next_no + 1 WHERE unit_code = $1", UNIT)
    # An outbox row left behind.
    await db.execute(
        "INSERT INTO outbox (bill_id, next_attempt_at) SELECT id, now() FROM bills"
        " WHERE bill_no = $1",
        second.bill_no,
    )
    # A bill stuck before countersignature, and a signature that does not verify.
    await db.execute(
        "UPDATE bills SET status = 'pending_countersign', fiscal_signature = NULL"
        " WHERE bill_no = $1",
        second.bill_no,
    )
    await db.execute(
        "UPDATE bills SET unit_signature = $2 WHERE bill_no = $1",
        third.bill_no, UNIT_KEY.sign(b"something else"),
    )  # fmt: skip
    # Two acknowledged distributions of the same numbers, to a point that has none.
    ledger.distributed += [
        Distribution("002", "44060119", 5, 9),
        Distribution("002", "44060119", 9, 9),
    ]

    report = await check(db, ledger, KEYS, ring=RING, unit_code=UNIT, gmssl_sample=3)
    text = "\n".join(report.violations)
    assert not report.ok
    for expected in (
        "issued bill NEVER-STORED: acknowledged as",
        f"bus_no {first.bus_no} answered as",
        "segment ",
        "numbers used",
        "1 bill(s) stuck in pending_countersign",
        f"{second.bill_no} (pending_countersign) lacks a signature",
        f"{third.bill_no}: unit signature does not verify natively",
        f"{third.bill_no}: unit signature does not verify with gmssl",
        "share numbers",
        "1 outbox row(s) left",
        "0 of its numbers are at that issuing point",
    ):
        assert expected in text, (expected, text)
