"""Write-off and audit figures against a real PostgreSQL: a red bill the fiscal
platform refused (status ``rejected``, migration 0006) cancels nothing, so it is
not declared as a red bill, its original not as red-flushed, and it does not hold
the declaration back as unfinished."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import asyncpg

from engine.model import CST
from engine.pipeline import finish
from storage.archive import archive
from storage.stock.writeoff import audit_figures, ebill_figures
from tests.storage.test_red_refused import issued_original, red_flush
from tests.storage.test_reserve import UNIT, setup


async def test_a_refused_red_bill_is_not_counted_as_a_red_bill(db: asyncpg.Pool) -> None:
    _, bill_code = await setup(db, numbers=10)
    original = await issued_original(db)
    red = await red_flush(db, original, "RED-1")
    refused = replace(
        red, unit_signature=b"unit-red", deferred="fiscal platform rejected: UNKNOWN_ORIGINAL",
        rejected=True, platform_refused=True,
    )  # fmt: skip
    await archive(db, [finish(refused)])
    today = datetime.now(UTC).astimezone(CST).date()

    f = await ebill_figures(db, UNIT, bill_code, today, today)
    assert (f.issued_count, f.issued_fen) == (1, original.total_fen)
    assert (f.red_count, f.red_fen, f.red_flushed_count, f.unfinished) == (0, 0, 0, 0)
    [audit] = await audit_figures(db, UNIT, today, today)
    assert (audit.bill_code, audit.count, audit.total_fen) == (bill_code, 1, original.total_fen)
    assert audit.unarchived == 0

    # A later red bill the platform countersigns is counted as before.
    again = await red_flush(db, original, "RED-2")
    await archive(db, [finish(replace(again, unit_signature=b"u", fiscal_signature=b"f"))])
    f = await ebill_figures(db, UNIT, bill_code, today, today)
    assert (f.issued_count, f.red_count, f.red_flushed_count) == (1, 1, 1)
    assert (f.red_fen, f.unfinished) == (-original.total_fen, 0)
    [audit] = await audit_figures(db, UNIT, today, today)
    assert (audit.count, audit.total_fen) == (2, 0)
