"""Personal data at rest, end to end over gRPC (issue #12, item 5).

Bills of a payer with a known ID card number, phone, e-mail and card are issued,
one red-flushed and one recorded offline through the engine; then every table
of the engine's database is read raw and dumped with pg_dump: none of those
values appears. GetBill still returns them, with canonical bytes whose unit
signature and countersignature gmssl verifies; ListBills finds the bills by ID
card (written with a lower-case x) and shows the payer masked to callers
without bill.read_pii.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
from dataclasses import replace

import asyncpg
import pytest

from engine.masking import mask_email, mask_id_card, mask_tel
from engine.model import PayerInput
from ops.stack import Stack
from protos.ebill.v1 import issuance_pb2, issuance_pb2_grpc, lifecycle_pb2, lifecycle_pb2_grpc
from storage.personal import open_canonical
from tests.e2e.lifecycle_support import (
    ISSUED,
    PLACE,
    assert_signed,
    by_number,
    charge,
    op,
    receive_paper,
    serial,
)
from tests.resilience import public_keys
from tests.storage.test_personal_data import _pg_dump, raw_dump
from usecases import demo
from wire.bills import input_to_pb

pytestmark = pytest.mark.slow


def _payer() -> PayerInput:
    # Unique per run, so that the search finds only this test's bills.
    rng = random.Random()
    return PayerInput(
        name="隐私端到端测试",
        payer_type="1",
        id_card_no=f"{rng.randrange(10**16, 10**17)}X",
        card_type="1",
        card_no=f"MC{rng.randrange(10**9, 10**10)}",
        tel=f"139{rng.randrange(10**7, 10**8)}",
        email=f"pii.{rng.randrange(10**6)}@example.com",
    )


def _secrets(p: PayerInput) -> tuple[str, ...]:
    return (p.id_card_no, p.id_card_no.lower(), p.tel, p.email, p.card_no, p.name)


def _assert_absent(text: str, p: PayerInput) -> None:
    for secret in _secrets(p):
        assert secret not in text, secret
        assert secret.encode().hex() not in text, secret


async def test_payer_data_is_sealed_in_the_database_and_served_through_the_engine(
    stack: Stack,
    pool: asyncpg.Pool,
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    lifecycle: lifecycle_pb2_grpc.LifecycleServiceStub,
) -> None:
    payer = _payer()
    bills = [charge(payer=payer) for _ in range(3)]
    resp = await issuance.IssueBatch(
        issuance_pb2.IssueBatchRequest(bills=[input_to_pb(b) for b in bills])
    )
    issued = [r.bill for r in resp.results]
    assert [b.status for b in issued] == [ISSUED] * 3
    red = await lifecycle.RedFlush(
        lifecycle_pb2.RedFlushRequest(
            operator=op(), original=by_number(issued[0]), bus_no=serial("PII"), reason="test"
        )
    )
    assert red.red_bill.status == ISSUED
    paper = await receive_paper(lifecycle, 2)
    offline = replace(charge(payer=payer), bus_no=serial("PIIOFF"))
    await issuance.RecordOfflineBill(
        issuance_pb2.RecordOfflineBillRequest(
            bill=input_to_pb(offline),
            paper_code=paper.paper_code,
            paper_no=paper.start_no,
            operator="clerk-07",
        )
    )

    # GetBill: the payer in full, and the canonical bytes as signed (gmssl).
    keys = await public_keys(stack)
    for b in [*issued, red.red_bill]:
        got = await issuance.GetBill(by_number(b))
        assert got.request.payer.id_card_no == payer.id_card_no
        assert (got.request.payer.tel, got.request.payer.email) == (payer.tel, payer.email)
        assert payer.id_card_no.encode() in got.canonical
        assert_signed(got, keys)
        # What the database holds opens to exactly those bytes.
        row = await pool.fetchrow(
            "SELECT id, canonical, canonical_sealed FROM bills WHERE bill_code = $1"
            " AND bill_no = $2",
            b.bill_code,
            b.bill_no,
        )
        assert row is not None and row["canonical"] is None
        assert open_canonical(stack.data_keys(), row) == got.canonical

    # The offline bill gets its e-bill from the recovery loop (back-issued from
    # its opened request); wait for it before
    # listing, so that it cannot arrive between two listings (CI saw it do so).
    for _ in range(300):
        if await pool.fetchval(
            "SELECT bill_id FROM offline_bills WHERE bus_no = $1", offline.bus_no
        ):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the offline bill was not back-issued within 30 s")
    back = await issuance.GetBill(
        issuance_pb2.GetBillRequest(
            by_bus=issuance_pb2.BusKey(unit_code=offline.unit_code, bus_no=offline.bus_no)
        )
    )
    assert back.request.payer.id_card_no == payer.id_card_no

    # ListBills: found by the ID card as written (lower-case x). The app may read
    # personal data (bill.read_pii) and sees the payer in clear; an auditor, who
    # may not, sees it masked.
    listed = await lifecycle.ListBills(
        lifecycle_pb2.ListBillsRequest(operator=op(), payer_id_card_no=payer.id_card_no.lower())
    )
    want = {b.bill_no for b in issued} | {red.red_bill.bill_no, back.bill_no}
    assert {b.bill_no for b in listed.bills} == want
    assert {b.request.payer.id_card_no for b in listed.bills} == {payer.id_card_no}
    auditor = await stack.login("auditor")
    async with stack.channel(creds=auditor) as ch:
        masked = await lifecycle_pb2_grpc.LifecycleServiceStub(ch).ListBills(
            lifecycle_pb2.ListBillsRequest(
                operator=lifecycle_pb2.Operator(unit_code=demo.UNIT_CODE, place_code=PLACE),
                payer_id_card_no=payer.id_card_no.lower(),
            )
        )
    assert {b.bill_no for b in masked.bills} == want
    for b in masked.bills:
        assert b.request.payer.id_card_no == mask_id_card(payer.id_card_no)
        assert b.request.payer.tel == mask_tel(payer.tel)
        assert b.request.payer.email == mask_email(payer.email)
        assert b.request.payer.name == payer.name
        assert not b.canonical and not b.unit_signature
        assert not b.request.charge_items  # a listing carries the payer only
    by_tel = await lifecycle.ListBills(
        lifecycle_pb2.ListBillsRequest(operator=op(), payer_tel=payer.tel)
    )
    assert {b.bill_no for b in by_tel.bills} == want

    # The database, read raw and dumped: no payer data anywhere.
    text = await raw_dump(pool)
    assert offline.bus_no in text and issued[1].bill_no in text
    _assert_absent(text, payer)
    dump = subprocess.run(
        [str(_pg_dump()), "--data-only", "--dbname", stack.database_url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert issued[2].bill_no in dump
    _assert_absent(dump, payer)
