"""A unit's signing certificates in PostgreSQL (unit_certificates, migration 0012).

One certificate per unit is active: new bills are signed with its key id. The
others stay, so the certificate a bill was signed under can always be found.
Every change is a catalogue change record with its transparency-log leaf.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from engine.catalog import CatalogKind, ChangeOp
from engine.errors import FailedPrecondition, NotFound
from engine.x509 import Certificate
from storage.catalog.edit import lock_unit, record

__all__ = ["StoredCertificate", "activate", "active_key_ids", "certificates", "store"]


@dataclass(frozen=True, slots=True)
class StoredCertificate:
    unit_code: str
    serial: str
    key_id: str
    subject: str
    not_before: datetime
    not_after: datetime
    der: bytes
    public_key: bytes
    active: bool
    registered: bool


def _row(r: asyncpg.Record) -> StoredCertificate:
    return StoredCertificate(
        r["unit_code"],
        r["serial"],
        r["key_id"],
        r["subject"],
        r["not_before"],
        r["not_after"],
        bytes(r["der"]),
        bytes(r["public_key"]),
        r["active"],
        r["registered_at"] is not None,
    )


def _summary(c: Certificate | StoredCertificate, key_id: str, active: bool) -> dict[str, object]:
    serial = c.serial_hex if isinstance(c, Certificate) else c.serial
    return {
        "serial": serial,
        "key_id": key_id,
        "subject": str(c.subject),
        "not_after": c.not_after.isoformat(),
        "active": active,
    }


async def store(
    conn: asyncpg.Connection, unit_code: str, cert: Certificate, key_id: str, actor: str
) -> StoredCertificate:
    """Keep a certificate registered with the platform (caller's transaction).
    The unit's first certificate becomes the active one."""
    await lock_unit(conn, unit_code)
    first = not await conn.fetchval(
        "SELECT 1 FROM unit_certificates WHERE unit_code = $1 AND active", unit_code
    )
    row = await conn.fetchrow(
        "INSERT INTO unit_certificates (unit_code, serial, key_id, subject, not_before,"
        " not_after, der, public_key, active, registered_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())"
        " ON CONFLICT (unit_code, serial) DO NOTHING RETURNING *",
        unit_code,
        cert.serial_hex,
        key_id,
        str(cert.subject),
        cert.not_before,
        cert.not_after,
        cert.der,
        cert.public_key,
        first,
    )
    if row is None:  # the same certificate again
        got = await conn.fetchrow(
            "SELECT * FROM unit_certificates WHERE unit_code = $1 AND serial = $2",
            unit_code,
            cert.serial_hex,
        )
        assert got is not None
        return _row(got)
    await record(
        conn,
        unit_code,
        CatalogKind.CERTIFICATE,
        cert.serial_hex,
        ChangeOp.CREATE,
        actor,
        None,
        _summary(cert, key_id, first),
    )
    return _row(row)


async def activate(
    conn: asyncpg.Connection, unit_code: str, serial: str, actor: str, *, now: datetime
) -> StoredCertificate:
    """New bills of the unit are signed under this certificate from now on; the
    previous one stays registered, so bills signed under it still verify."""
    await lock_unit(conn, unit_code)
    row = await conn.fetchrow(
        "SELECT * FROM unit_certificates WHERE unit_code = $1 AND serial = $2 FOR UPDATE",
        unit_code,
        serial,
    )
    if row is None:
        raise NotFound(f"certificate {serial} of unit {unit_code}")
    cert = _row(row)
    if cert.active:
        return cert
    if not cert.not_before <= now < cert.not_after:
        raise FailedPrecondition(
            f"certificate {serial} is not valid now ({cert.not_before} .. {cert.not_after})"
        )
    before = await conn.fetchrow(
        "UPDATE unit_certificates SET active = false WHERE unit_code = $1 AND active"
        " RETURNING serial, key_id",
        unit_code,
    )
    got = await conn.fetchrow(
        "UPDATE unit_certificates SET active = true WHERE unit_code = $1 AND serial = $2"
        " RETURNING *",
        unit_code,
        serial,
    )
    assert got is not None
    await record(
        conn,
        unit_code,
        CatalogKind.CERTIFICATE,
        serial,
        ChangeOp.UPDATE,
        actor,
        None if before is None else {"active": before["serial"], "key_id": before["key_id"]},
        {"active": serial, "key_id": cert.key_id},
    )
    return _row(got)


async def certificates(
    conn: asyncpg.Connection | asyncpg.Pool, unit_code: str | None = None
) -> list[StoredCertificate]:
    """A unit's certificates (every unit's when None), newest first."""
    if unit_code is None:
        rows = await conn.fetch("SELECT * FROM unit_certificates ORDER BY not_before DESC")
    else:
        rows = await conn.fetch(
            "SELECT * FROM unit_certificates WHERE unit_code = $1 ORDER BY not_before DESC",
            unit_code,
        )
    return [_row(r) for r in rows]


async def active_key_ids(
    conn: asyncpg.Connection | asyncpg.Pool, unit_codes: Collection[str]
) -> dict[str, str]:
    """The signing key id of each unit's active certificate (units without one absent)."""
    rows = await conn.fetch(
        "SELECT unit_code, key_id FROM unit_certificates"
        " WHERE active AND unit_code = ANY($1::text[])",
        list(unit_codes),
    )
    return {r["unit_code"]: r["key_id"] for r in rows}
