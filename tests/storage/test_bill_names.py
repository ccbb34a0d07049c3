"""The names a rendered bill prints, read from the catalogue (storage.bill_names),
and the QR signature column written by the archive statement."""

from __future__ import annotations

import asyncpg

from storage.bill_names import bill_names
from storage.catalog import PAY_CHANNELS, ensure_unit


async def test_names_of_a_unit_and_its_bill_code(db: asyncpg.Pool) -> None:
    await ensure_unit(
        db,
        unit_code="R00000001",
        unit_name="渲染测试医院",
        issuing_points=[("001", "window")],
        charge_codes=[("A01", "西药费")],
        bill_codes=[("02", "99000002", "医疗门诊收费票据（电子）")],
    )
    unit_name, bill_name, channels = await bill_names(db, "R00000001", "99000002")
    assert (unit_name, bill_name) == ("渲染测试医院", "医疗门诊收费票据（电子）")
    assert set(channels) == set(PAY_CHANNELS)
    # Unknown codes: empty names, the view falls back to codes.
    assert (await bill_names(db, "nobody", "00000000"))[:2] == ("", "")


async def test_bills_have_a_qr_signature_column(db: asyncpg.Pool) -> None:
    kind = await db.fetchval(
        "SELECT data_type FROM information_schema.columns"
        " WHERE table_name = 'bills' AND column_name = 'qr_signature'"
    )
    assert kind == "bytea"
