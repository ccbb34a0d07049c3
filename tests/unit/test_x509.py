"""SM2 certificates built by hand (engine.x509): read back, and the issuer's
signature over the TBSCertificate verified by gmssl (an independent SM2)."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from engine.sm2 import SigningKey
from engine.x509 import Name, assemble, parse, tbs_certificate
from tests.gm_reference import gm_verify

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _cert(ca: SigningKey, unit: SigningKey, days: int = 365) -> bytes:
    tbs = tbs_certificate(
        serial=0x1234ABCD5678,
        issuer=Name("ebill sandbox fiscal CA", "财政电子票据测试CA"),
        subject=Name("厦门市思明区人民医院（示例）", "厦门市思明区人民医院（示例）", "350203001"),
        not_before=NOW,
        not_after=NOW + timedelta(days=days),
        public_key=unit.public.point,
    )
    return assemble(tbs, ca.sign(tbs))


def test_a_certificate_reads_back_and_its_signature_verifies_with_gmssl() -> None:
    ca, unit = SigningKey.generate(), SigningKey.generate()
    cert = parse(_cert(ca, unit))
    assert cert.serial_hex == "1234abcd5678"
    assert cert.subject.unit == "350203001"
    assert cert.subject.common_name == "厦门市思明区人民医院（示例）"
    assert (cert.not_before, cert.not_after) == (NOW, NOW + timedelta(days=365))
    assert cert.public_key == unit.public.point
    assert gm_verify(ca.public.point, cert.tbs, cert.signature)
    assert not gm_verify(unit.public.point, cert.tbs, cert.signature)
    assert cert.valid_at(NOW) and not cert.valid_at(NOW + timedelta(days=365))


def test_a_tampered_certificate_no_longer_verifies() -> None:
    ca, unit = SigningKey.generate(), SigningKey.generate()
    der = bytearray(_cert(ca, unit))
    der[der.index(b"350203001")] ^= 1  # another unit in the subject
    cert = parse(bytes(der))
    assert cert.subject.unit != "350203001"
    assert not ca.public.verify(cert.tbs, cert.signature)


def test_garbage_is_refused() -> None:
    with pytest.raises(ValueError):
        parse(b"\x30\x03\x02\x01\x01")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")
def test_openssl_reads_it_as_an_sm2_certificate(tmp_path: object) -> None:
    ca, unit = SigningKey.generate(), SigningKey.generate()
    out = subprocess.run(
        ["openssl", "x509", "-inform", "DER", "-noout", "-text"],
        input=_cert(ca, unit),
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert "SM2-with-SM3" in out and "ASN1 OID: SM2" in out and "OU = 350203001" in out
