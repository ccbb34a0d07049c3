"""Bills that enter or leave other ways, and the queries over them, on the session
stack: back entry of a bill issued elsewhere, deposit vouchers, non-tax, current
account and donation bills, and the listing filters an issuing point sees.

Every refused operation is checked to have changed nothing (tests/refusal.py).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import asyncpg
import grpc
import pytest

from engine.model import ChargeItemInput, PayChannelInput, PayerInput
from ops.stack import Stack
from protos.ebill.v1 import bill_pb2, issuance_pb2, issuance_pb2_grpc, lifecycle_pb2
from protos.ebill.v1 import lifecycle_pb2_grpc as lc_grpc
from tests.e2e.lifecycle_support import (
    ISSUED,
    OTHER_PLACE,
    PLACE,
    RED_FLUSHED,
    assert_signed,
    by_number,
    charge,
    issue,
    next_seq,
    op,
    receive_paper,
    serial,
)
from tests.factories import non_medical
from tests.refusal import refused
from tests.resilience import public_keys
from wire.bills import input_to_pb

pytestmark = pytest.mark.slow


async def test_back_entry_of_a_bill_issued_elsewhere_can_be_refunded(
    lifecycle: lc_grpc.LifecycleServiceStub, pool: asyncpg.Pool, stack: Stack
) -> None:
    src = charge()
    n = next_seq()
    req = lifecycle_pb2.BackEntryRequest(
        operator=op(),
        bill=input_to_pb(src),
        bill_code="44998819",
        bill_no=f"{n:010d}",
        check_code="a1b2c3",
        issued_at="20261001093000000",
    )
    entered = await lifecycle.BackEntry(req)
    assert entered.origin == "back_entry" and entered.status == ISSUED
    assert entered.bill_no == f"{n:010d}" and not entered.unit_signature
    await refused(pool, lifecycle.BackEntry(req), grpc.StatusCode.ALREADY_EXISTS)
    # A number of our own stock is not a back entry.
    own = await pool.fetchrow("SELECT bill_code, start_no FROM segments LIMIT 1")
    await refused(
        pool,
        lifecycle.BackEntry(
            lifecycle_pb2.BackEntryRequest(
                operator=op(),
                bill=input_to_pb(charge()),
                bill_code=own["bill_code"],
                bill_no=f"{own['start_no']:010d}",
                check_code="x",
                issued_at="20261001093000000",
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="bill_no",
    )
    resp = await lifecycle.RedFlush(
        lifecycle_pb2.RedFlushRequest(
            operator=op(), original=by_number(entered), bus_no=serial("R"), reason="refund"
        )
    )
    red = resp.red_bill
    # Cancelled on this unit's own bill code for outpatient charges, signed here.
    assert red.bill_code == "44060119" and red.red_of == f"44998819/{n:010d}"
    assert_signed(red, await public_keys(stack))
    assert resp.original.status == RED_FLUSHED


async def test_deposit_vouchers_one_per_deposit_red_flushed_on_refund(
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    lifecycle: lc_grpc.LifecycleServiceStub,
    stack: Stack,
) -> None:
    deposits = []
    for amount in ("1000.00", "500.00"):
        d = charge(
            bus_type="07",
            total_amount=amount,
            charge_items=(
                ChargeItemInput(
                    sort_no=1,
                    charge_code="A07",
                    charge_name="住院预交金",
                    unit="次",
                    std=amount,
                    number="1",
                    amt=amount,
                ),
            ),
            list_items=(),
            pay_channels=(PayChannelInput("01", amount),),
            insurance=replace(
                charge().insurance,
                fund_pay="",
                account_pay="",
                own_pay="",
                self_pay="",
                medical_insurance_id="",
            ),
        )
        deposits.append(await issue(issuance, d))
    assert {d.bill_code for d in deposits} == {"44060319"}
    assert {d.bill_kind for d in deposits} == {"deposit"}
    assert deposits[0].bill_no != deposits[1].bill_no
    resp = await lifecycle.RedFlush(
        lifecycle_pb2.RedFlushRequest(
            operator=op(),
            original=by_number(deposits[1]),
            bus_no=serial("DR"),
            reason="deposit refunded at discharge",
        )
    )
    assert resp.red_bill.bill_code == "44060319" and resp.red_bill.total_amount == "-500.00"
    assert resp.red_bill.bill_kind == "deposit"
    assert_signed(resp.red_bill, await public_keys(stack))


@pytest.mark.parametrize(
    ("bus_type", "code", "name", "kind", "bill_code"),
    [
        ("11", "B01", "行政事业性收费", "non_tax", "44010119"),
        ("09", "C01", "往来款", "current_account", "44030119"),
        ("10", "D01", "捐赠收入", "donation", "44040119"),
    ],
)
async def test_non_tax_current_account_and_donation_bills(
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    pool: asyncpg.Pool,
    bus_type: str,
    code: str,
    name: str,
    kind: str,
    bill_code: str,
) -> None:
    bill = await issue(issuance, non_medical(bus_type, code, name, "8800.00", place_code=PLACE))
    assert (bill.bill_kind, bill.bill_code) == (kind, bill_code)
    assert json.loads(bill.canonical)["bill_kind"] == kind
    # They carry no medical insurance split.
    b = non_medical(bus_type, code, name, "10.00", place_code=PLACE)
    b = replace(b, insurance=replace(b.insurance, fund_pay="10.00", own_pay="0.00"))
    await refused(
        pool,
        issuance.IssueBill(issuance_pb2.IssueBillRequest(bill=input_to_pb(b))),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="bill.insurance",
    )


async def test_queries_filter_and_an_issuing_point_sees_only_its_own(
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    lifecycle: lc_grpc.LifecycleServiceStub,
    pool: asyncpg.Pool,
) -> None:
    n = next_seq()
    payer = PayerInput(
        name="查询测试",
        payer_type="1",
        id_card_no=f"44082319900101{n:04d}",
        card_type="就诊卡",
        card_no=f"Q{n:08d}",
        tel=f"139{n:08d}",
    )
    mine = [await issue(issuance, charge(payer=payer)) for _ in range(3)]
    theirs = await issue(issuance, charge(place=OTHER_PLACE, payer=payer))
    await receive_paper(lifecycle, 5)
    await lifecycle.ConvertToPaper(
        lifecycle_pb2.PaperBillRequest(operator=op(), bill=by_number(mine[0]))
    )
    red = await lifecycle.RedFlush(
        lifecycle_pb2.RedFlushRequest(
            operator=op(),
            original=by_number(mine[1]),
            bus_no=serial("QR"),
            reason="q",
            void_paper=True,
        )
    )

    async def listed(**f: Any) -> list[str]:
        out, token = [], ""
        while True:
            resp = await lifecycle.ListBills(
                lifecycle_pb2.ListBillsRequest(
                    operator=op(f.pop("place", PLACE)), page_size=2, page_token=token, **f
                )
            )
            out += [b.bill_no for b in resp.bills]
            assert all(not b.canonical and not b.unit_signature for b in resp.bills)
            token = resp.next_page_token
            if not token:
                return out

    everything = [b.bill_no for b in mine] + [red.red_bill.bill_no]
    assert sorted(await listed(payer_id_card_no=payer.id_card_no)) == sorted(everything)
    assert sorted(await listed(payer_tel=payer.tel)) == sorted(everything)
    assert sorted(await listed(payer_card_no=payer.card_no)) == sorted(everything)
    # The other issuing point's bill for the same payer is not in this point's answer ...
    assert theirs.bill_no not in await listed(payer_tel=payer.tel)
    # ... and that point sees only its own.
    assert await listed(place=OTHER_PLACE, payer_tel=payer.tel) == [theirs.bill_no]
    assert await listed(payer_tel=payer.tel, red=lifecycle_pb2.RED_FILTER_RED_FLUSHED) == [
        mine[1].bill_no
    ]
    assert await listed(payer_tel=payer.tel, red=lifecycle_pb2.RED_FILTER_RED_BILL) == [
        red.red_bill.bill_no
    ]
    normal = await listed(payer_tel=payer.tel, red=lifecycle_pb2.RED_FILTER_NORMAL)
    assert sorted(normal) == sorted([mine[0].bill_no, mine[2].bill_no])
    printed = await listed(payer_tel=payer.tel, paper_status=bill_pb2.PAPER_STATUS_PRINTED)
    assert printed == [mine[0].bill_no]
    assert await listed(payer_tel=payer.tel, bill_kind="inpatient") == []
    assert len(await listed(payer_tel=payer.tel, bill_kind="outpatient")) == 4
    assert len(await listed(payer_tel=payer.tel, from_date="20260101", to_date="20991231")) == 4
    assert await listed(payer_tel=payer.tel, to_date="20200101") == []
    await refused(
        pool,
        lifecycle.ListBills(lifecycle_pb2.ListBillsRequest(operator=op(), from_date="2026-01-01")),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="from_date",
    )

    # Acting on another point's bill is refused.
    await refused(
        pool,
        lifecycle.RedFlush(
            lifecycle_pb2.RedFlushRequest(
                operator=op(), original=by_number(theirs), bus_no=serial("R"), reason="x"
            )
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await refused(
        pool,
        lifecycle.ConvertToPaper(
            lifecycle_pb2.PaperBillRequest(operator=op(), bill=by_number(theirs))
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    # An operation without an operator is refused, naming the field.
    await refused(
        pool,
        lifecycle.RedFlush(
            lifecycle_pb2.RedFlushRequest(
                operator=op(who=""), original=by_number(mine[2]), bus_no=serial("R"), reason="x"
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="operator.operator",
    )
