"""Trust in the fiscal platform (issue #11 item 11), the pure parts: a unit
signature the platform hands back must verify under the unit's key, and the
pinned platform key is read from PEM or hex."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tongsuopy.crypto import serialization

from config.settings import read_public_key
from engine.model import BillStatus
from engine.pipeline import Work, take_countersignature
from engine.sm2 import SigningKey

UNIT = SigningKey.generate()
CANON = b'{"bill_no":"0000000001"}'


def work() -> Work:
    return Work(
        bill_id=1, unit_code="U", bus_no="B1", bus_type="outpatient", place_code="001",
        bill_code="06010126", bill_no="0000000001", check_code="abcdef", status=BillStatus.RESERVED,
        total_fen=100, issued_at=datetime.now(UTC), canonical=CANON, canonical_version="1",
        unit_signature=UNIT.sign(CANON),
    )  # fmt: skip


def take(w: Work, unit_signature: bytes, key: object = UNIT.public) -> Work:
    return take_countersignature(
        w, unit_signature=unit_signature, fiscal_signature=b"fs", countersigned_at="now",
        unit_key=key,  # type: ignore[arg-type]
    )  # fmt: skip


def test_the_platforms_unit_signature_is_taken_only_if_it_verifies() -> None:
    w = work()
    # Ours back, or another valid signature of the unit (a repeat): taken.
    assert take(w, w.unit_signature).fiscal_signature == b"fs"
    other = UNIT.sign(CANON)
    assert take(w, other).unit_signature == other
    # Another key's signature, or garbage: the bill is rejected, ours kept.
    for bad in (SigningKey.generate().sign(CANON), b"\x30\x02garbage"):
        out = take(w, bad)
        assert out.rejected and not out.fiscal_signature and out.unit_signature == w.unit_signature
        assert "does not verify" in out.deferred
    # Unit key unavailable: a different signature cannot be checked, so it waits.
    waiting = take(w, other, key=None)
    assert not waiting.rejected and not waiting.fiscal_signature and waiting.deferred


def test_the_pinned_key_is_read_from_pem_or_hex(tmp_path: Path) -> None:
    key = SigningKey.generate().public
    hex_file = tmp_path / "k.hex"
    hex_file.write_text(key.point.hex() + "\n")
    assert read_public_key(str(hex_file)) == key.point
    pub = serialization.load_der_public_key(
        b"0Y0\x13\x06\x07*\x86H\xce=\x02\x01\x06\x08*\x81\x1c\xcfU\x01\x82-\x03B\x00" + key.point
    )
    pem = pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem_file = tmp_path / "k.pem"
    pem_file.write_bytes(pem)
    assert read_public_key(str(pem_file)) == key.point
    bad = tmp_path / "bad"
    bad.write_text("zz")
    with pytest.raises(SystemExit, match="EBILL_FISCAL_PUBLIC_KEY_FILE"):
        read_public_key(str(bad))


def test_archive_checks_the_countersignature_and_the_qr_signature() -> None:
    from engine.canonical import countersign_message
    from engine.pipeline import check_platform_signatures
    from engine.qr import facts_of_canonical
    from tests.rendering_support import signed_bill

    fiscal = SigningKey.generate()
    bill = signed_bill()
    w = replace(work(), canonical=bill.canonical, unit_signature=bill.unit_signature)
    qr_message = facts_of_canonical(bill.canonical).message
    good = replace(
        w,
        fiscal_signature=fiscal.sign(countersign_message(w.canonical, w.unit_signature)),
        qr_signature=fiscal.sign(qr_message),
    )
    assert check_platform_signatures(good, fiscal.public, "") == good
    # A QR signature over other facts (another amount): not issued, waiting will not help.
    other = qr_message.replace(b":338.44:", b":1.00:")
    bad_qr = check_platform_signatures(
        replace(good, qr_signature=fiscal.sign(other)), fiscal.public, ""
    )
    assert bad_qr.rejected and not bad_qr.fiscal_signature and not bad_qr.qr_signature
    assert bad_qr.deferred == "fiscal QR signature invalid"
    # Another key's countersignature: the same.
    forged = replace(good, fiscal_signature=SigningKey.generate().sign(w.countersign_message))
    assert check_platform_signatures(forged, fiscal.public, "").rejected
    # No key: wait, keep nothing the platform said.
    waiting = check_platform_signatures(good, None, "fiscal key unavailable")
    assert not waiting.rejected and waiting.deferred == "fiscal key unavailable"
