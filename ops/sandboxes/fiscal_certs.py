"""Unit signing certificates at the fiscal platform sandbox, and the CA that issues them.

The CA (fiscal.v1.CertificateAuthority, served beside the platform) holds its own
SM2 key, issues X.509 SM2 certificates (engine.x509) to a key whose holder
proves possession, and publishes its self-signed root. The platform trusts that
root: RegisterCertificate accepts a certificate it signed, naming the unit (OU),
and from then on verifies a unit signature against the unit's certificates valid
at the bill's issue time. Overlapping certificates are how a key is rotated: a
bill issued under the old one still verifies, and so does one under the new.
A unit without certificates keeps the key it registered (RegisterUnit).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from engine.sm2 import SigningKey, VerifyingKey
from engine.x509 import Certificate, Name, assemble, parse, pop_message, tbs_certificate
from protos.fiscal.v1 import fiscal_pb2, fiscal_pb2_grpc

__all__ = ["CERT_SCHEMA", "CaService", "CertificateDesk"]

CERT_SCHEMA = """
CREATE TABLE IF NOT EXISTS certificates (
    unit_code TEXT, serial TEXT, der BLOB, registered_at TEXT, PRIMARY KEY (unit_code, serial));
"""
CA_NAME = Name("ebill sandbox fiscal CA", "财政电子票据测试CA")
MAX_VALID_DAYS = 3650


class CaService(fiscal_pb2_grpc.CertificateAuthorityServicer):
    def __init__(self, key: SigningKey) -> None:
        self._key = key
        now = datetime(2020, 1, 1, tzinfo=UTC)
        tbs = tbs_certificate(
            serial=1,
            issuer=CA_NAME,
            subject=CA_NAME,
            not_before=now,
            not_after=now + timedelta(days=365 * 30),
            public_key=key.public.point,
            ca=True,
        )
        self.root = assemble(tbs, key.sign(tbs))

    def IssueCertificate(
        self, request: fiscal_pb2.IssueCertificateRequest, context: grpc.ServicerContext
    ) -> fiscal_pb2.IssueCertificateResponse:
        try:
            key = VerifyingKey(request.public_key)
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"public_key: {exc}")
        if not request.unit_code or not request.unit_name:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unit_code and unit_name are required")
        if not key.verify(pop_message(request.unit_code, key.point), request.proof):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "proof: the key did not sign it")
        days = request.valid_days or 365
        if not 0 < days <= MAX_VALID_DAYS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"valid_days: 1..{MAX_VALID_DAYS}")
        start = datetime.now(UTC).replace(microsecond=0)
        if request.not_before:
            try:
                start = datetime.fromisoformat(request.not_before).astimezone(UTC)
            except ValueError:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not_before: RFC 3339")
        tbs = tbs_certificate(
            serial=secrets.randbits(63) | 1 << 62,
            issuer=CA_NAME,
            subject=Name(request.unit_name, request.unit_name, request.unit_code),
            not_before=start,
            not_after=start + timedelta(days=days),
            public_key=key.point,
        )
        return fiscal_pb2.IssueCertificateResponse(certificate=assemble(tbs, self._key.sign(tbs)))

    def GetCaCertificate(
        self, request: fiscal_pb2.GetCaCertificateRequest, context: grpc.ServicerContext
    ) -> fiscal_pb2.GetCaCertificateResponse:
        return fiscal_pb2.GetCaCertificateResponse(certificate=self.root)


class CertificateDesk:
    """RegisterCertificate and unit-signature checks; FiscalService provides the store."""

    _db: sqlite3.Connection
    _lock: threading.Lock
    _unit_keys: dict[str, VerifyingKey]
    _ca_key: VerifyingKey
    _certs: dict[str, list[Certificate]]

    def _load_certs(self) -> None:
        self._certs = {}
        for unit, der in self._db.execute("SELECT unit_code, der FROM certificates"):
            self._certs.setdefault(unit, []).append(parse(bytes(der)))

    def RegisterCertificate(
        self, request: fiscal_pb2.RegisterCertificateRequest, context: grpc.ServicerContext
    ) -> fiscal_pb2.RegisterCertificateResponse:
        try:
            cert = parse(request.certificate)
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"certificate: {exc}")
            raise
        if not self._ca_key.verify(cert.tbs, cert.signature):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "certificate: not issued by our CA")
        if cert.subject.unit != request.unit_code:
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"certificate: issued to unit {cert.subject.unit!r}, not {request.unit_code!r}",
            )
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO certificates VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (request.unit_code, cert.serial_hex, cert.der, datetime.now(UTC).isoformat()),
            )
            # A unit known to the platform by its certificate alone.
            self._db.execute(
                "INSERT INTO units VALUES (?, ?, ?) ON CONFLICT (unit_code) DO NOTHING",
                (request.unit_code, cert.subject.common_name, cert.public_key),
            )
            self._unit_keys.setdefault(request.unit_code, VerifyingKey(cert.public_key))
            have = self._certs.setdefault(request.unit_code, [])
            if all(c.serial != cert.serial for c in have):
                have.append(cert)
        return fiscal_pb2.RegisterCertificateResponse(serial=cert.serial_hex)

    def _unit_verifies(self, unit_code: str, canonical: bytes, signature: bytes) -> bool:
        """Whether the unit signed ``canonical``: with a certificate of the unit
        valid at the bill's issue time, or (no certificates) the registered key."""
        certs = self._certs.get(unit_code)
        if not certs:
            key = self._unit_keys.get(unit_code)
            return key is not None and key.verify(canonical, signature)
        try:
            doc: Any = json.loads(canonical)
            at = datetime.fromisoformat(str(doc["issued_at"]).replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError):
            return False
        return any(
            c.valid_at(at) and VerifyingKey(c.public_key).verify(canonical, signature)
            for c in certs
        )
