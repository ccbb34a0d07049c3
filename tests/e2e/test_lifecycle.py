"""Red-flush and refund over gRPC, on the session stack (real engine, sandboxes,
PostgreSQL): the signed negative red bill, its replay, racing windows, and a
partial refund that reissues the remainder.

Every refused operation is checked to have changed nothing (tests/refusal.py).
Red bills' signatures are verified with gmssl over their canonical bytes.
Paper is in test_lifecycle_paper.py; back entry, other bill kinds and queries in
test_lifecycle_records.py; the helpers they share in lifecycle_support.py.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import asyncpg
import grpc
import pytest

from engine.model import BillInput, ChargeItemInput, PayChannelInput
from ops.stack import Stack
from protos.ebill.v1 import issuance_pb2_grpc, lifecycle_pb2
from protos.ebill.v1 import lifecycle_pb2_grpc as lc_grpc
from protos.fiscal.v1 import fiscal_pb2, fiscal_pb2_grpc
from tests.e2e.lifecycle_support import (
    ISSUED,
    RED_FLUSHED,
    assert_signed,
    by_number,
    charge,
    issue,
    op,
    serial,
)
from tests.refusal import refused
from tests.resilience import public_keys
from wire.bills import input_to_pb

pytestmark = pytest.mark.slow


def amounts(doc: dict[str, Any]) -> list[Decimal]:
    out = [Decimal(doc["total_amount"])]
    out += [Decimal(c["amt"]) for c in doc["charge_items"]]
    out += [Decimal(li["amt"]) for li in doc["list_items"]]
    out += [Decimal(p["amount"]) for p in doc["pay_channels"]]
    if doc["insurance"]:
        out += [Decimal(doc["insurance"][k]) for k in ("fund_pay", "account_pay", "own_pay")]
    return out


async def test_red_flush_issues_a_signed_negative_red_bill_once(
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    lifecycle: lc_grpc.LifecycleServiceStub,
    pool: asyncpg.Pool,
    stack: Stack,
) -> None:
    original = await issue(issuance, charge())
    red_no = serial("R")
    resp = await lifecycle.RedFlush(
        lifecycle_pb2.RedFlushRequest(
            operator=op(), original=by_number(original), bus_no=red_no, reason="charged twice"
        )
    )
    red = resp.red_bill
    assert red.status == ISSUED and red.bus_no == red_no
    assert red.bill_code == original.bill_code and red.bill_no != original.bill_no
    assert red.red_of == f"{original.bill_code}/{original.bill_no}"
    assert red.total_amount == f"-{original.total_amount}"
    assert red.operator == "clerk-07"
    assert resp.original.status == RED_FLUSHED
    assert resp.original.red_by == f"{red.bill_code}/{red.bill_no}"

    # The red document is the original's with every amount negated and a reference.
    doc, orig_doc = json.loads(red.canonical), json.loads(original.canonical)
    assert doc["red_of"] == {
        "bill_code": original.bill_code,
        "bill_no": original.bill_no,
        "check_code": original.check_code,
    }
    assert amounts(doc) == [-a for a in amounts(orig_doc)]
    assert doc["charge_items"][0]["charge_code"] == orig_doc["charge_items"][0]["charge_code"]
    assert (doc["bill_code"], doc["bill_no"], doc["check_code"]) == (
        red.bill_code,
        red.bill_no,
        red.check_code,
    )
    assert_signed(red, await public_keys(stack))

    # The platform holds the red bill with its negative total.
    async with stack.channel("fiscal") as ch:
        found = await fiscal_pb2_grpc.FiscalPlatformStub(ch).VerifyBill(
            fiscal_pb2.VerifyBillRequest(
                bill_code=red.bill_code, bill_no=red.bill_no, check_code=red.check_code
            )
        )
    assert found.found and found.total_fen == -int(original.total_amount.replace(".", ""))

    # Stored amounts add up: the red bill's items and channels cancel the original's.
    for table, column in (("bill_charge_items", "amt_fen"), ("bill_pay_channels", "amount_fen")):
        total = await pool.fetchval(
            f"SELECT sum({column}) FROM {table} t JOIN bills b ON b.id = t.bill_id"
            " WHERE b.bill_no = ANY($1::text[]) AND b.bill_code = $2",
            [original.bill_no, red.bill_no],
            original.bill_code,
        )
        assert total == 0, table

    # The same call again answers with the same red bill.
    again = await lifecycle.RedFlush(
        lifecycle_pb2.RedFlushRequest(
            operator=op(), original=by_number(original), bus_no=red_no, reason="charged twice"
        )
    )
    assert again.red_bill.bill_no == red.bill_no and again.red_bill.replayed

    # A second red-flush is refused and changes nothing.
    err = await refused(
        pool,
        lifecycle.RedFlush(
            lifecycle_pb2.RedFlushRequest(
                operator=op(), original=by_number(original), bus_no=serial("R"), reason="again"
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert "already red-flushed" in (err.details() or "")
    # A red bill is not red-flushed either.
    await refused(
        pool,
        lifecycle.RedFlush(
            lifecycle_pb2.RedFlushRequest(
                operator=op(), original=by_number(red), bus_no=serial("R"), reason="x"
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    events = await pool.fetch(
        "SELECT e.op, e.operator FROM bill_events e JOIN bills b ON b.id = e.bill_id"
        " WHERE b.bill_code = $1 AND b.bill_no = $2",
        red.bill_code,
        red.bill_no,
    )
    assert [(e["op"], e["operator"]) for e in events] == [("red_flush", "clerk-07")]


async def test_two_windows_racing_to_red_flush_one_bill_get_one_red_bill(
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    lifecycle: lc_grpc.LifecycleServiceStub,
    pool: asyncpg.Pool,
) -> None:
    original = await issue(issuance, charge())
    leased = await pool.fetchval("SELECT sum(next_no) FROM segments")
    calls = [
        lifecycle.RedFlush(
            lifecycle_pb2.RedFlushRequest(
                operator=op(who=f"clerk-{i}"),
                original=by_number(original),
                bus_no=serial("RACE"),
                reason="race",
            )
        )
        for i in range(4)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    ok = [r for r in results if isinstance(r, lifecycle_pb2.RedFlushResponse)]
    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(ok) == 1 and len(errors) == 3, results
    assert all(e.code() == grpc.StatusCode.FAILED_PRECONDITION for e in errors)
    # Exactly one number was taken, by the one red bill.
    assert await pool.fetchval("SELECT sum(next_no) FROM segments") == leased + 1


async def test_refund_red_flushes_and_reissues_the_remainder(
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    lifecycle: lc_grpc.LifecycleServiceStub,
    pool: asyncpg.Pool,
    stack: Stack,
) -> None:
    original_in = charge()
    original = await issue(issuance, original_in)
    total = int(original.total_amount.replace(".", ""))
    refund = total // 3
    keep = total - refund
    remainder_in = replace(
        original_in,
        bus_no=serial("REM"),
        total_amount=f"{keep // 100}.{keep % 100:02d}",
        charge_items=(
            ChargeItemInput(
                sort_no=1,
                charge_code="A03",
                charge_name="检查费",
                unit="次",
                std=f"{keep // 100}.{keep % 100:02d}",
                number="1",
                amt=f"{keep // 100}.{keep % 100:02d}",
            ),
        ),
        list_items=(),
        pay_channels=(PayChannelInput("02", f"{keep // 100}.{keep % 100:02d}"),),
        insurance=replace(
            original_in.insurance,
            fund_pay="",
            other_fund_pay="",
            account_pay="",
            own_pay="",
            self_pay="",
            medical_insurance_id="",
        ),
    )

    def refund_req(amount: str, remainder: BillInput | None, red_bus: str) -> Any:
        r = lifecycle_pb2.RefundRequest(
            operator=op(),
            original=by_number(original),
            red_bus_no=red_bus,
            refund_amount=amount,
            reason="drug returned",
        )
        if remainder is not None:
            r.remainder.CopyFrom(input_to_pb(remainder))
        return r

    # Refund above the original is refused, and nothing changes.
    await refused(
        pool,
        lifecycle.Refund(refund_req(f"{total // 100 + 1}.00", remainder_in, serial("R"))),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="refund_amount",
    )
    # A remainder that does not add up is refused.
    await refused(
        pool,
        lifecycle.Refund(refund_req("0.01", remainder_in, serial("R"))),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="remainder.total_amount",
    )
    # Invalid remainder: the field path names it.
    bad = replace(remainder_in, pay_channels=(PayChannelInput("99", "1.00"),))
    await refused(
        pool,
        lifecycle.Refund(refund_req(f"{refund / 100:.2f}", bad, serial("R"))),
        grpc.StatusCode.INVALID_ARGUMENT,
    )

    # A remainder under a serial already used by another bill is refused.
    await refused(
        pool,
        lifecycle.Refund(
            refund_req(
                f"{refund // 100}.{refund % 100:02d}",
                replace(remainder_in, bus_no=original_in.bus_no),
                serial("R"),
            )
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        field="remainder.bus_no",
    )

    red_bus = serial("R")
    resp = await lifecycle.Refund(
        refund_req(f"{refund // 100}.{refund % 100:02d}", remainder_in, red_bus)
    )
    red, rem = resp.red_bill, resp.remainder
    assert resp.original.status == RED_FLUSHED
    assert red.red_of == rem.replaces == f"{original.bill_code}/{original.bill_no}"
    assert int(red.total_amount.replace(".", "").replace("-", "")) == total
    assert red.total_amount.startswith("-")
    assert int(rem.total_amount.replace(".", "")) == total - refund
    assert rem.status == ISSUED and rem.bus_no == remainder_in.bus_no
    keys = await public_keys(stack)
    assert_signed(red, keys)
    assert_signed(rem, keys)
    # Net effect on the payer: original + red + remainder = what they keep.
    net = sum(
        int(b.total_amount.replace(".", "").replace("-", ""))
        * (-1 if b.total_amount[0] == "-" else 1)
        for b in (original, red, rem)
    )
    assert net == keep

    # Retried: the same bills back.
    again = await lifecycle.Refund(
        refund_req(f"{refund // 100}.{refund % 100:02d}", remainder_in, red_bus)
    )
    assert (again.red_bill.bill_no, again.remainder.bill_no) == (red.bill_no, rem.bill_no)
    # The same serial with another amount, or as a whole red-flush, is another
    # operation: refused naming the serial, never answered with this refund's bills
    # (a HIS would take the part refund for the whole).
    await refused(
        pool,
        lifecycle.Refund(refund_req(original.total_amount, None, red_bus)),
        grpc.StatusCode.ALREADY_EXISTS,
        field="red_bus_no",
    )
    await refused(
        pool,
        lifecycle.RedFlush(
            lifecycle_pb2.RedFlushRequest(
                operator=op(), original=by_number(original), bus_no=red_bus, reason="whole"
            )
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        field="bus_no",
    )

    # A full refund needs no remainder.
    whole = await issue(issuance, charge())
    full = await lifecycle.Refund(
        lifecycle_pb2.RefundRequest(
            operator=op(),
            original=by_number(whole),
            red_bus_no=serial("R"),
            refund_amount=whole.total_amount,
        )
    )
    assert full.original.status == RED_FLUSHED and not full.HasField("remainder")
