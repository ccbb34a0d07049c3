"""The gRPC IssuedBill carries the platform's QR signature (issue #15): a HIS that
prints the bill itself builds the same QR as the engine's pages, and the
signature verifies under the platform's key with gmssl."""

from __future__ import annotations

from dataclasses import replace

from engine.qr import QrPayload, facts_of_canonical
from tests.gm_reference import gm_verify
from tests.rendering_support import FISCAL, NAMES, UNIT, signed_bill
from usecases.rendering import view_of
from wire.bills import bill_to_pb


def test_issued_bill_message_carries_the_qr_signature() -> None:
    bill = signed_bill()
    m = bill_to_pb(bill)
    assert m.qr_signature == bill.qr_signature and m.qr_signature
    facts = facts_of_canonical(m.canonical)
    assert gm_verify(FISCAL.public.point, facts.message, m.qr_signature)
    # The QR a client builds from the message is the one the pages print.
    printed = view_of(bill, NAMES, unit_key=UNIT.public, fiscal_key=FISCAL.public).qr_text
    assert QrPayload(facts, m.qr_signature).text == printed


def test_a_bill_without_one_has_it_empty() -> None:
    assert bill_to_pb(replace(signed_bill(), qr_signature=b"")).qr_signature == b""
