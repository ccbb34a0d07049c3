"""The QR payload: facts from the canonical document, signed by the platform,
verified offline; any change to a fact or the signature is caught (pure)."""

from __future__ import annotations

import json
from datetime import date

import pytest

from engine.qr import QrFacts, QrPayload, facts_of, facts_of_canonical, parse
from engine.sm2 import SigningKey
from tests.gm_reference import gm_verify

KEY = SigningKey.generate()
DOC = {
    "bill_code": "44060119",
    "bill_no": "0010535766",
    "check_code": "a1b2c3",
    "total_amount": "12345.67",
    # 20:30 UTC is the next day in China.
    "issued_at": "2026-11-23T20:30:00.000Z",
}


def test_facts_come_from_the_document_in_china_time() -> None:
    facts = facts_of(DOC)
    assert facts == QrFacts("44060119", "0010535766", "a1b2c3", 1234567, date(2026, 11, 24))
    assert facts.message == b"EB1:44060119:0010535766:a1b2c3:12345.67:20261124"
    red = facts_of({**DOC, "total_amount": "-12345.67"})
    assert red.total_fen == -1234567 and b":-12345.67:" in red.message
    assert facts_of_canonical(json.dumps(DOC).encode()) == facts


def test_round_trip_and_offline_verification() -> None:
    facts = facts_of(DOC)
    payload = QrPayload(facts, KEY.sign(facts.message))
    back = parse(payload.text)
    assert back == payload and back.verify(KEY.public)
    # The same text inside a verification URL.
    assert parse("https://bills.example/verify?qr=" + payload.text) == payload
    # gmssl, an independent SM2, agrees.
    assert gm_verify(KEY.public.point, facts.message, back.signature)


@pytest.mark.parametrize(
    ("field", "value"),
    [(1, "44060120"), (2, "0010535767"), (3, "a1b2c4"), (4, "22345.67"), (5, "20261125")],
)
def test_a_changed_fact_no_longer_verifies(field: int, value: str) -> None:
    facts = facts_of(DOC)
    parts = QrPayload(facts, KEY.sign(facts.message)).text.split(":")
    parts[field] = value
    assert not parse(":".join(parts)).verify(KEY.public)


def test_a_foreign_key_or_no_signature_does_not_verify() -> None:
    facts = facts_of(DOC)
    assert not QrPayload(facts, SigningKey.generate().sign(facts.message)).verify(KEY.public)
    assert not parse(QrPayload(facts, b"").text).verify(KEY.public)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "EB2:44060119:0010535766:a1b2c3:1.00:20261124:AA",
        "EB1:4406011:0010535766:a1b2c3:1.00:20261124:AA",
        "EB1:44060119:0010535766:a1b2c3:1.0:20261124:AA",
        "EB1:44060119:0010535766:a1b2c3:1.00:2026-11-24:AA",
        "EB1:44060119:0010535766:a1b2c3:1.00:20261124:A",
        "https://x.example/verify?p=1",
    ],
)
def test_malformed_payloads_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse(text)
