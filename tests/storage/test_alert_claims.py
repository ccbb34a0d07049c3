"""Claiming low-stock warnings for email against a real PostgreSQL
(storage.stock.alerts): one claimant per warning until its claim lapses
(issue #11, item 10; two real engines in tests/e2e/test_alert_mail_two_engines.py)."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from storage.catalog import ensure_unit
from storage.stock.alerts import claim_alert_email, mark_alert_emailed

UNIT = "T00000012"
LEASE = timedelta(minutes=1)


async def warnings(db: asyncpg.Pool, n: int) -> list[int]:
    await ensure_unit(
        db, unit_code=UNIT, unit_name="alert claims", issuing_points=[("001", "window")],
        charge_codes=[], bill_codes=[],
    )  # fmt: skip
    # Earlier warnings (of other tests' data, on a shared database) are mailed already.
    await db.execute("UPDATE stock_alerts SET emailed_at = now() WHERE emailed_at IS NULL")
    return [
        int(
            await db.fetchval(
                "INSERT INTO stock_alerts (unit_code, place_code, bill_code, threshold,"
                " available, message, email) VALUES ($1, '001', '44060119', 10, 9, 'low',"
                " 'office@hospital.test') RETURNING id",
                UNIT,
            )
        )
        for _ in range(n)
    ]


async def test_a_claimed_warning_is_not_claimed_again_until_its_claim_lapses(
    db: asyncpg.Pool,
) -> None:
    first, second = await warnings(db, 2)
    a = await claim_alert_email(db, "engine-a", LEASE)
    b = await claim_alert_email(db, "engine-b", LEASE)
    assert a is not None and b is not None
    assert (a[0].id, a[1], b[0].id, b[1]) == (first, False, second, False)
    assert await claim_alert_email(db, "engine-b", LEASE) is None
    # engine-a dies mid-send: its claim lapses and the warning is claimed again,
    # flagged as possibly sent already.
    await db.execute(
        "UPDATE stock_alerts SET claimed_until = now() - interval '1 second' WHERE id = $1", first
    )
    again = await claim_alert_email(db, "engine-b", LEASE)
    assert again is not None and (again[0].id, again[1]) == (first, True)


async def test_a_sent_warning_is_never_claimed_and_a_failed_one_waits(db: asyncpg.Pool) -> None:
    first, second = await warnings(db, 2)
    a = await claim_alert_email(db, "engine-a", LEASE)
    assert a is not None and a[0].id == first
    await mark_alert_emailed(db, first)
    b = await claim_alert_email(db, "engine-a", LEASE)
    assert b is not None and b[0].id == second
    await mark_alert_emailed(db, second, error="421 try later")
    # Failed: back off before the next try, and no claim is left to reclaim.
    assert await claim_alert_email(db, "engine-a", LEASE) is None
    row = await db.fetchrow("SELECT * FROM stock_alerts WHERE id = $1", second)
    assert row is not None
    assert (row["attempts"], row["claimed_by"], row["emailed_at"]) == (1, "", None)
    await db.execute(
        "UPDATE stock_alerts SET claimed_until = now() - interval '1 second' WHERE id = $1", second
    )
    retry = await claim_alert_email(db, "engine-b", LEASE)
    assert retry is not None and (retry[0].id, retry[1]) == (second, False)
