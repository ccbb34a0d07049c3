"""The canonical bytes are exactly what docs/canonical-bytes.md says."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from engine.canonical import CANONICAL_VERSION, canonical_bytes, countersign_message
from engine.model import Reservation
from engine.validation import validate
from tests.factories import bill, catalog

DOCS = Path(__file__).resolve().parents[2] / "docs"
RES = Reservation("44060119", "0010535766", "3f2a1b", datetime(2026, 11, 23, 8, 30, 1, 250000, UTC))


def example_bytes() -> bytes:
    return canonical_bytes(validate(bill(1), catalog()), RES)


def test_documented_example_is_byte_for_byte_what_the_engine_signs() -> None:
    assert (DOCS / "canonical-example.json").read_bytes() == example_bytes()


def test_layout_rules() -> None:
    raw = example_bytes()
    doc = json.loads(raw)
    # sorted keys, no insignificant white space, UTF-8 unescaped
    assert (
        raw == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )
    assert "收费员".encode() in raw
    assert doc["version"] == CANONICAL_VERSION
    assert doc["issued_at"] == "2026-11-23T08:30:01.250Z"
    assert (doc["bill_code"], doc["bill_no"], doc["check_code"]) == (
        "44060119",
        "0010535766",
        "3f2a1b",
    )
    for item in doc["charge_items"]:
        assert len(item["amt"].split(".")[1]) == 2
        assert len(item["number"].split(".")[1]) == 4


def test_equal_inputs_give_equal_bytes_and_any_change_shows() -> None:
    v = validate(bill(1), catalog())
    assert canonical_bytes(v, RES) == canonical_bytes(validate(bill(1), catalog()), RES)
    assert canonical_bytes(v, replace(RES, check_code="000000")) != canonical_bytes(v, RES)
    other = validate(bill(1, remark="x"), catalog())
    assert canonical_bytes(other, RES) != canonical_bytes(v, RES)


def test_countersign_message_covers_bill_and_unit_signature() -> None:
    assert countersign_message(b"doc", b"sig") == b"docsig"
