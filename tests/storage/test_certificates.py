"""A unit's certificates in PostgreSQL: the first is active, activation rotates
(the old one stays), an expired one cannot be activated, expiry is warned about
(gauge and the entry the inspection reads), every change is recorded and logged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import REGISTRY

from clients.ca import CaClient
from clients.fiscal import FiscalClient
from clients.signer import SignerClient
from engine.catalog import UnitEntry
from engine.errors import FailedPrecondition
from engine.sm2 import SigningKey
from engine.x509 import Certificate, Name, assemble, parse, tbs_certificate
from storage.catalog import certs, unit_versions
from storage.catalog.edit import upsert
from usecases.certificates import Certificates

UNIT = "T00000077"
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
CA = SigningKey.generate()


def _cert(serial: int, start: datetime, days: int) -> Certificate:
    tbs = tbs_certificate(
        serial=serial,
        issuer=Name("test CA"),
        subject=Name("测试医院", "测试医院", UNIT),
        not_before=start,
        not_after=start + timedelta(days=days),
        public_key=SigningKey.generate().public.point,
    )
    return parse(assemble(tbs, CA.sign(tbs)))


async def test_rotation_expiry_and_records(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        await upsert(conn, UNIT, [UnitEntry(UNIT, "测试医院")], "t")
        first = await certs.store(
            conn, UNIT, _cert(0x101, NOW - timedelta(days=355), 365), "k-a", "t"
        )
        second = await certs.store(conn, UNIT, _cert(0x102, NOW, 730), "k-b", "t")
        stale = await certs.store(
            conn, UNIT, _cert(0x103, NOW - timedelta(days=800), 30), "k-c", "t"
        )
        assert first.active and not second.active and not stale.active
        v = (await unit_versions(conn, [UNIT]))[UNIT]
        with pytest.raises(FailedPrecondition, match="not valid now"):
            await certs.activate(conn, UNIT, stale.serial, "t", now=NOW)
        got = await certs.activate(conn, UNIT, second.serial, "t", now=NOW)
        assert got.active and (await unit_versions(conn, [UNIT]))[UNIT] > v
        assert await certs.active_key_ids(conn, [UNIT]) == {UNIT: "k-b"}
        ops = [r["op"] for r in await conn.fetch(
            "SELECT op FROM log_entries WHERE unit_code = $1 AND op LIKE 'catalog.certificate%'"
            " ORDER BY id", UNIT)]  # fmt: skip
        assert ops == ["catalog.certificate.create"] * 3 + ["catalog.certificate.update"]
        # The old one is kept (bills signed under it are verified against it).
        assert {c.serial for c in await certs.certificates(conn, UNIT)} == {"101", "102", "103"}
        await certs.activate(conn, UNIT, first.serial, "t", now=NOW)

    uc = Certificates(
        db,
        SignerClient("127.0.0.1:1", "unit-sign"),
        FiscalClient("127.0.0.1:1"),
        CaClient("127.0.0.1:1"),
        warn_days=30,
    )
    [expiry] = [e for e in await uc.expiries(NOW) if e.unit_code == UNIT]
    assert (expiry.serial, expiry.days_left, expiry.warn) == ("101", 10, True)
    gauge = REGISTRY.get_sample_value("ebill_certificate_days_left", {"unit": UNIT})
    assert gauge == 10
