"""End to end over gRPC: HIS -> engine -> Ray pipeline -> signer, fiscal, PostgreSQL.

Every signature checked here is checked with gmssl, over the documented canonical
bytes, against public keys fetched from the sandboxes themselves.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from dataclasses import replace
from typing import Any

import asyncpg
import grpc
import pytest

from engine.model import BillInput
from ops.stack import Stack
from protos.ebill.v1 import bill_pb2, issuance_pb2, issuance_pb2_grpc
from protos.fiscal.v1 import fiscal_pb2, fiscal_pb2_grpc
from storage.personal import open_canonical
from tests.e2e.conftest import SCARCE_POINT, SCARCE_STOCK
from tests.gm_reference import gm_verify
from tests.resilience import public_keys
from usecases import demo
from wire.bills import input_to_pb

pytestmark = pytest.mark.slow

_seq = itertools.count(1)
ISSUED = bill_pb2.BILL_STATUS_ISSUED


def fresh(n: int = 1, **changes: object) -> list[BillInput]:
    """Bills with bus_no never used before in this session."""
    prefix = f"E{next(_seq):04d}X"
    return [replace(demo.demo_bill(i, prefix=prefix), **changes) for i in range(n)]  # type: ignore[arg-type]


def req(b: BillInput) -> issuance_pb2.IssueBillRequest:
    return issuance_pb2.IssueBillRequest(bill=input_to_pb(b))


def assert_signed(b: bill_pb2.IssuedBill, unit_key: bytes, fiscal_key: bytes) -> None:
    assert gm_verify(unit_key, b.canonical, b.unit_signature), f"unit signature of {b.bill_no}"
    assert gm_verify(fiscal_key, b.canonical + b.unit_signature, b.fiscal_signature), (
        f"fiscal countersignature of {b.bill_no}"
    )


async def counts(pool: asyncpg.Pool) -> tuple[int, int]:
    """(bill rows, numbers leased from every segment)."""
    rows = await pool.fetchval("SELECT count(*) FROM bills")
    leased = await pool.fetchval("SELECT sum(next_no - start_no) FROM segments")
    return int(rows), int(leased)


async def test_single_bill_is_issued_signed_countersigned_and_archived(
    issuance: issuance_pb2_grpc.IssuanceServiceStub, stack: Stack, pool: asyncpg.Pool
) -> None:
    (b,) = fresh()
    bill = (await issuance.IssueBill(req(b))).bill
    assert bill.status == ISSUED
    assert bill.bill_code == "44060119"
    assert len(bill.bill_no) == 10 and bill.bill_no.isdigit()
    assert len(bill.check_code) == 6
    assert bill.total_amount == b.total_amount and not bill.replayed

    unit_key, fiscal_key = await public_keys(stack)
    assert_signed(bill, unit_key, fiscal_key)

    doc = json.loads(bill.canonical)
    assert (
        bill.canonical
        == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )
    assert doc["version"] == bill.canonical_version == "ebill-canonical/1"
    assert (doc["bill_code"], doc["bill_no"], doc["check_code"]) == (
        bill.bill_code,
        bill.bill_no,
        bill.check_code,
    )
    assert doc["bus_no"] == b.bus_no and doc["total_amount"] == b.total_amount
    assert [c["charge_code"] for c in doc["charge_items"]] == [
        c.charge_code for c in b.charge_items
    ]
    assert doc["payer"]["name"] == b.payer.name

    row = await pool.fetchrow(
        "SELECT * FROM bills WHERE unit_code=$1 AND bus_no=$2", b.unit_code, b.bus_no
    )
    assert row["status"] == "issued" and row["archived_at"] is not None
    # Stored sealed (docs/personal-data.md); opened, the very bytes signed.
    assert row["canonical"] is None
    assert open_canonical(stack.data_keys(), row) == bill.canonical
    assert bytes(row["unit_signature"]) == bill.unit_signature
    assert bytes(row["fiscal_signature"]) == bill.fiscal_signature
    assert row["total_fen"] == int(b.total_amount.replace(".", ""))
    items = await pool.fetch(
        "SELECT charge_code, amt_fen FROM bill_charge_items WHERE bill_id=$1", row["id"]
    )
    assert sum(i["amt_fen"] for i in items) == row["total_fen"]

    async with stack.channel("fiscal") as ch:
        fiscal = fiscal_pb2_grpc.FiscalPlatformStub(ch)
        found = await fiscal.VerifyBill(
            fiscal_pb2.VerifyBillRequest(
                bill_code=bill.bill_code, bill_no=bill.bill_no, check_code=bill.check_code
            )
        )
        assert found.found and found.total_fen == row["total_fen"]
        assert found.canonical_sm3 == hashlib.new("sm3", bill.canonical).hexdigest()
        wrong = await fiscal.VerifyBill(
            fiscal_pb2.VerifyBillRequest(
                bill_code=bill.bill_code, bill_no=bill.bill_no, check_code="zzzzzz"
            )
        )
        assert not wrong.found


async def test_batch_of_200_every_signature_verifies_with_gmssl(
    issuance: issuance_pb2_grpc.IssuanceServiceStub, stack: Stack, pool: asyncpg.Pool
) -> None:
    bills = fresh(200)
    before = await counts(pool)
    resp = await issuance.IssueBatch(
        issuance_pb2.IssueBatchRequest(bills=[input_to_pb(b) for b in bills])
    )
    assert [r.index for r in resp.results] == list(range(200))
    assert [r.bus_no for r in resp.results] == [b.bus_no for b in bills]
    issued = [r.bill for r in resp.results]
    assert all(r.HasField("bill") for r in resp.results)
    assert all(b.status == ISSUED for b in issued)
    assert len({(b.bill_code, b.bill_no) for b in issued}) == 200
    unit_key, fiscal_key = await public_keys(stack)
    for b in issued:
        assert_signed(b, unit_key, fiscal_key)
    after = await counts(pool)
    assert after == (before[0] + 200, before[1] + 200)


async def test_batch_larger_than_200_is_refused_whole(
    issuance: issuance_pb2_grpc.IssuanceServiceStub, pool: asyncpg.Pool
) -> None:
    before = await counts(pool)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await issuance.IssueBatch(
            issuance_pb2.IssueBatchRequest(bills=[input_to_pb(b) for b in fresh(201)])
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "bills" in (err.value.details() or "")
    assert await counts(pool) == before


async def test_concurrent_issuances_get_distinct_numbers(
    issuance: issuance_pb2_grpc.IssuanceServiceStub, pool: asyncpg.Pool
) -> None:
    n = 150
    before = await counts(pool)
    bills = fresh(n)
    single = [issuance.IssueBill(req(b)) for b in bills[:100]]
    batches = [
        issuance.IssueBatch(issuance_pb2.IssueBatchRequest(bills=[input_to_pb(b) for b in chunk]))
        for chunk in (bills[100:125], bills[125:])
    ]
    singles = await asyncio.gather(*single)
    batched = await asyncio.gather(*batches)
    numbers = [r.bill.bill_no for r in singles] + [
        r.bill.bill_no for b in batched for r in b.results
    ]
    assert len(numbers) == n and len(set(numbers)) == n
    assert await counts(pool) == (before[0] + n, before[1] + n)


async def test_retried_bus_no_returns_the_first_bill(
    issuance: issuance_pb2_grpc.IssuanceServiceStub, pool: asyncpg.Pool
) -> None:
    (b,) = fresh()
    first = (await issuance.IssueBill(req(b))).bill
    before = await counts(pool)
    again = (await issuance.IssueBill(req(b))).bill
    assert again.replayed and not first.replayed
    assert (again.bill_code, again.bill_no, again.check_code) == (
        first.bill_code,
        first.bill_no,
        first.check_code,
    )
    assert again.unit_signature == first.unit_signature
    assert again.fiscal_signature == first.fiscal_signature
    assert await counts(pool) == before


async def test_a_bus_no_reused_with_other_content_is_a_conflict(
    issuance: issuance_pb2_grpc.IssuanceServiceStub, pool: asyncpg.Pool
) -> None:
    # Issue #11 item 4: a HIS reusing a serial by mistake got someone else's bill,
    # marked replayed; it must get a conflict naming bus_no, alone or in a batch.
    (b, other) = fresh(2)
    first = (await issuance.IssueBill(req(b))).bill
    before = await counts(pool)
    changed = replace(b, payer=replace(b.payer, name="Li Si"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await issuance.IssueBill(req(changed))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert (err.value.details() or "").startswith("bill.bus_no:"), err.value.details()
    resp = await issuance.IssueBatch(
        issuance_pb2.IssueBatchRequest(bills=[input_to_pb(x) for x in (changed, b, other)])
    )
    assert resp.results[0].error.code == "ALREADY_EXISTS"
    assert resp.results[0].error.field == "bills[0].bus_no"
    assert resp.results[1].bill.replayed and resp.results[1].bill.bill_no == first.bill_no
    assert resp.results[2].bill.status == ISSUED and not resp.results[2].bill.replayed
    assert await counts(pool) == (before[0] + 1, before[1] + 1)


async def test_racing_bus_no_all_get_the_first_bill(
    issuance: issuance_pb2_grpc.IssuanceServiceStub, stack: Stack, pool: asyncpg.Pool
) -> None:
    (b,) = fresh()
    before = await counts(pool)
    singles = [issuance.IssueBill(req(b)) for _ in range(20)]
    batch = issuance.IssueBatch(issuance_pb2.IssueBatchRequest(bills=[input_to_pb(b)] * 5))
    results = await asyncio.gather(*singles, batch)
    bills = [r.bill for r in results[:-1]] + [r.bill for r in results[-1].results]
    assert len({(x.bill_code, x.bill_no, x.check_code) for x in bills}) == 1
    assert len({x.fiscal_signature for x in bills}) == 1
    assert sum(not x.replayed for x in bills) <= 1
    assert await counts(pool) == (before[0] + 1, before[1] + 1)
    unit_key, fiscal_key = await public_keys(stack)
    assert_signed(bills[0], unit_key, fiscal_key)


async def test_an_issued_bus_no_repeated_within_a_batch(
    issuance: issuance_pb2_grpc.IssuanceServiceStub, pool: asyncpg.Pool
) -> None:
    (b, other) = fresh(2)
    first = (await issuance.IssueBill(req(b))).bill
    before = await counts(pool)
    resp = await issuance.IssueBatch(
        issuance_pb2.IssueBatchRequest(bills=[input_to_pb(x) for x in (b, other, b, b)])
    )
    again = [resp.results[i].bill for i in (0, 2, 3)]
    assert all(x.replayed and x.status == ISSUED for x in again)
    assert {(x.bill_no, x.fiscal_signature) for x in again} == {
        (first.bill_no, first.fiscal_signature)
    }
    assert resp.results[1].bill.status == ISSUED and not resp.results[1].bill.replayed
    assert await counts(pool) == (before[0] + 1, before[1] + 1)


def _charge0(b: BillInput, **changes: Any) -> BillInput:
    return replace(b, charge_items=(replace(b.charge_items[0], **changes), *b.charge_items[1:]))


INVALID = [
    (lambda b: _charge0(b, amt="12.345"), "bill.charge_items[0].amt"),
    (lambda b: _charge0(b, charge_code="NOPE"), "bill.charge_items[0].charge_code"),
    (lambda b: replace(b, payer=replace(b.payer, name="")), "bill.payer.name"),
    (lambda b: replace(b, total_amount="1.00"), "bill.total_amount"),
    (lambda b: replace(b, bus_time="yesterday"), "bill.bus_time"),
    (lambda b: replace(b, place_code="999"), "bill.place_code"),
    (
        lambda b: replace(b, pay_channels=(replace(b.pay_channels[0], pay_channel_code="77"),)),
        "bill.pay_channels[0].pay_channel_code",
    ),
]


async def test_another_unit_is_outside_the_apps_scope(
    issuance: issuance_pb2_grpc.IssuanceServiceStub, pool: asyncpg.Pool
) -> None:
    # The demo app is bound to its unit: a bill of another unit is refused by
    # authorization (ebill.grpc.auth), before validation would call it unknown.
    (b,) = fresh()
    before = await counts(pool)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await issuance.IssueBill(req(replace(b, unit_code="000000000")))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await counts(pool) == before


@pytest.mark.parametrize(("mutate", "field"), INVALID, ids=[f for _, f in INVALID])
async def test_invalid_field_is_named_and_nothing_is_written(
    issuance: issuance_pb2_grpc.IssuanceServiceStub, pool: asyncpg.Pool, mutate: object, field: str
) -> None:
    (b,) = fresh()
    bad = mutate(b)  # type: ignore[operator]
    before = await counts(pool)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await issuance.IssueBill(req(bad))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith(field + ":"), err.value.details()
    assert ("ebill-field", field) in tuple(err.value.trailing_metadata() or ())
    assert await counts(pool) == before
    assert await pool.fetchval("SELECT count(*) FROM bills WHERE bus_no=$1", b.bus_no) == 0


async def test_missing_bill_is_invalid(issuance: issuance_pb2_grpc.IssuanceServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await issuance.IssueBill(issuance_pb2.IssueBillRequest())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_batch_reports_each_item_and_issues_only_the_valid_ones(
    issuance: issuance_pb2_grpc.IssuanceServiceStub, pool: asyncpg.Pool
) -> None:
    bills = fresh(5)
    bills[2] = replace(bills[2], payer=replace(bills[2].payer, payer_type="x"))
    before = await counts(pool)
    resp = await issuance.IssueBatch(
        issuance_pb2.IssueBatchRequest(bills=[input_to_pb(b) for b in bills])
    )
    bad = resp.results[2]
    assert bad.WhichOneof("outcome") == "error"
    assert bad.error.code == "INVALID_ARGUMENT"
    assert bad.error.field == "bills[2].payer.payer_type"
    assert all(resp.results[i].bill.status == ISSUED for i in (0, 1, 3, 4))
    assert await counts(pool) == (before[0] + 4, before[1] + 4)


async def test_issuing_point_out_of_stock(
    issuance: issuance_pb2_grpc.IssuanceServiceStub, pool: asyncpg.Pool
) -> None:
    bills = fresh(SCARCE_STOCK + 2, place_code=SCARCE_POINT)
    resp = await issuance.IssueBatch(
        issuance_pb2.IssueBatchRequest(bills=[input_to_pb(b) for b in bills])
    )
    outcomes = [r.WhichOneof("outcome") for r in resp.results]
    assert outcomes == ["bill"] * SCARCE_STOCK + ["error"] * 2
    assert {r.error.code for r in resp.results[SCARCE_STOCK:]} == {"RESOURCE_EXHAUSTED"}
    left = await pool.fetchval(
        "SELECT sum(end_no - next_no + 1) FROM segments WHERE place_code=$1", SCARCE_POINT
    )
    assert left == 0
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await issuance.IssueBill(req(fresh(place_code=SCARCE_POINT)[0]))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_get_bill_and_status_by_number_and_by_bus_no(
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
) -> None:
    (b,) = fresh()
    issued = (await issuance.IssueBill(req(b))).bill
    by_number = issuance_pb2.GetBillRequest(
        by_number=issuance_pb2.BillNumberKey(bill_code=issued.bill_code, bill_no=issued.bill_no)
    )
    by_bus = issuance_pb2.GetBillRequest(
        by_bus=issuance_pb2.BusKey(unit_code=b.unit_code, bus_no=b.bus_no)
    )
    for key in (by_number, by_bus):
        got = await issuance.GetBill(key)
        assert (got.bill_no, got.check_code, got.status) == (
            issued.bill_no,
            issued.check_code,
            ISSUED,
        )
        assert got.canonical == issued.canonical
        assert got.request == input_to_pb(b)
        status = await issuance.GetBillStatus(key)
        assert status.status == ISSUED and status.bus_no == b.bus_no and not status.red_flushed
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await issuance.GetBill(
            issuance_pb2.GetBillRequest(
                by_bus=issuance_pb2.BusKey(unit_code=b.unit_code, bus_no="none")
            )
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await issuance.GetBill(issuance_pb2.GetBillRequest())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
