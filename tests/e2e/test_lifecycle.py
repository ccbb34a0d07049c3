"""Bill lifecycle over gRPC: red-flush, refund, paper, back entry, deposits,
non-medical bills, queries. On the session stack (real engine, sandboxes, PostgreSQL).

Every refused operation is checked to have changed nothing: bill rows, leased
numbers, paper bills, events and the original's state are compared before and
after. Red bills' signatures are verified with gmssl over their canonical bytes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import asyncpg
import grpc
import pytest

from engine.model import BillInput, ChargeItemInput, PayChannelInput, PayerInput
from ops.stack import Stack
from protos.ebill.v1 import bill_pb2, issuance_pb2, issuance_pb2_grpc, lifecycle_pb2
from protos.ebill.v1 import lifecycle_pb2_grpc as lc_grpc
from protos.fiscal.v1 import fiscal_pb2, fiscal_pb2_grpc
from tests.factories import non_medical
from tests.gm_reference import gm_verify
from tests.refusal import refused
from tests.resilience import public_keys
from usecases import demo
from wire.bills import input_to_pb

pytestmark = pytest.mark.slow

PLACE = "003"
OTHER_PLACE = "002"
_seq = itertools.count(1)
_paper = itertools.count(0)
ISSUED = bill_pb2.BILL_STATUS_ISSUED
RED_FLUSHED = bill_pb2.BILL_STATUS_RED_FLUSHED


def op(place: str = PLACE, who: str = "clerk-07") -> lifecycle_pb2.Operator:
    return lifecycle_pb2.Operator(unit_code=demo.UNIT_CODE, place_code=place, operator=who)


def by_number(b: bill_pb2.IssuedBill) -> issuance_pb2.GetBillRequest:
    return issuance_pb2.GetBillRequest(
        by_number=issuance_pb2.BillNumberKey(bill_code=b.bill_code, bill_no=b.bill_no)
    )


def serial(tag: str) -> str:
    return f"L{next(_seq):05d}{tag}"


def charge(place: str = PLACE, bus_type: str = "02", **changes: Any) -> BillInput:
    n = next(_seq)
    return replace(
        demo.demo_bill(n, prefix=f"LC{n:05d}", place_code=place, bus_type=bus_type), **changes
    )


async def issue(
    issuance: issuance_pb2_grpc.IssuanceServiceStub, b: BillInput
) -> bill_pb2.IssuedBill:
    bill: bill_pb2.IssuedBill = (
        await issuance.IssueBill(issuance_pb2.IssueBillRequest(bill=input_to_pb(b)))
    ).bill
    assert bill.status == ISSUED
    return bill


async def receive_paper(
    lifecycle: lc_grpc.LifecycleServiceStub, count: int, place: str = PLACE
) -> lifecycle_pb2.PaperRange:
    start = 1000 * next(_paper) + 1
    rng: lifecycle_pb2.PaperRange = await lifecycle.ReceivePaper(
        lifecycle_pb2.ReceivePaperRequest(
            operator=op(place),
            paper_code="44990119",
            start_no=f"{start:010d}",
            end_no=f"{start + count - 1:010d}",
        )
    )
    return rng


def assert_signed(b: bill_pb2.IssuedBill, keys: tuple[bytes, bytes]) -> None:
    unit_key, fiscal_key = keys
    assert gm_verify(unit_key, b.canonical, b.unit_signature), f"unit signature of {b.bill_no}"
    assert gm_verify(fiscal_key, b.canonical + b.unit_signature, b.fiscal_signature), (
        f"countersignature of {b.bill_no}"
    )


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


async def test_paper_conversion_reprint_reissue_void_and_red_flush_rules(
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    lifecycle: lc_grpc.LifecycleServiceStub,
    pool: asyncpg.Pool,
) -> None:
    rng = await receive_paper(lifecycle, 20)
    assert rng.remaining == 20 and rng.next_no == rng.start_no
    bill = await issue(issuance, charge())
    key = by_number(bill)

    conv = await lifecycle.ConvertToPaper(lifecycle_pb2.PaperBillRequest(operator=op(), bill=key))
    first_paper = conv.paper_no
    assert conv.paper_code == "44990119" and conv.prints == 1
    assert conv.bill.paper_status == bill_pb2.PAPER_STATUS_PRINTED
    assert conv.bill.paper_no == first_paper

    # Converted once only.
    await refused(
        pool,
        lifecycle.ConvertToPaper(lifecycle_pb2.PaperBillRequest(operator=op(), bill=key)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    # A printed bill is not red-flushed while its paper is out.
    await refused(
        pool,
        lifecycle.RedFlush(
            lifecycle_pb2.RedFlushRequest(
                operator=op(), original=key, bus_no=serial("R"), reason="refund"
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        field="void_paper",
    )
    # Reprint: same paper number, printed twice.
    rep = await lifecycle.Reprint(lifecycle_pb2.PaperBillRequest(operator=op(), bill=key))
    assert (rep.paper_no, rep.prints) == (first_paper, 2)
    # Reissue: the damaged paper is voided, the bill moves to the next paper number.
    re = await lifecycle.ReissuePaper(
        lifecycle_pb2.PaperBillRequest(operator=op(), bill=key, reason="paper torn")
    )
    assert re.paper_no == f"{int(first_paper) + 1:010d}"
    damaged = await pool.fetchrow(
        "SELECT status, void_reason, operator FROM paper_bills WHERE paper_code = $1"
        " AND paper_no = $2",
        "44990119",
        first_paper,
    )
    assert (damaged["status"], damaged["void_reason"], damaged["operator"]) == (
        "voided",
        "paper torn",
        "clerk-07",
    )
    # Void the paper, then red-flush.
    void = await lifecycle.VoidPaper(
        lifecycle_pb2.PaperBillRequest(operator=op(), bill=key, reason="refund at window")
    )
    assert void.bill.paper_status == bill_pb2.PAPER_STATUS_VOIDED
    await refused(
        pool,
        lifecycle.Reprint(lifecycle_pb2.PaperBillRequest(operator=op(), bill=key)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    red = await lifecycle.RedFlush(
        lifecycle_pb2.RedFlushRequest(
            operator=op(), original=key, bus_no=serial("R"), reason="refund"
        )
    )
    assert red.original.status == RED_FLUSHED

    # Or both in one call.
    other = await issue(issuance, charge())
    conv2 = await lifecycle.ConvertToPaper(
        lifecycle_pb2.PaperBillRequest(operator=op(), bill=by_number(other))
    )
    both = await lifecycle.RedFlush(
        lifecycle_pb2.RedFlushRequest(
            operator=op(),
            original=by_number(other),
            bus_no=serial("R"),
            reason="x",
            void_paper=True,
        )
    )
    assert both.original.status == RED_FLUSHED
    assert both.original.paper_status == bill_pb2.PAPER_STATUS_VOIDED
    assert both.original.paper_no == conv2.paper_no

    ops = [
        r["op"]
        for r in await pool.fetch(
            "SELECT op FROM bill_events WHERE bill_id = (SELECT id FROM bills"
            " WHERE bill_code = $1 AND bill_no = $2) ORDER BY id",
            bill.bill_code,
            bill.bill_no,
        )
    ]
    assert ops == ["convert_to_paper", "reprint", "reissue_paper", "void_paper"]
    stock = await lifecycle.GetPaperStock(lifecycle_pb2.GetPaperStockRequest(operator=op()))
    mine = next(r for r in stock.ranges if r.id == rng.id)
    assert mine.remaining == 20 - 3  # first paper, its reissue, the second bill's paper


async def test_blank_paper_is_voided_in_ranges_and_skipped(
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    lifecycle: lc_grpc.LifecycleServiceStub,
    pool: asyncpg.Pool,
) -> None:
    place = "001"  # its own paper, so the next number is predictable
    rng = await receive_paper(lifecycle, 10, place=place)
    start = int(rng.start_no)
    stock = await lifecycle.VoidBlankPaper(
        lifecycle_pb2.VoidBlankPaperRequest(
            operator=op(place),
            paper_code=rng.paper_code,
            start_no=f"{start:010d}",
            end_no=f"{start + 2:010d}",
            reason="water damage",
        )
    )
    assert stock.next_paper_no == f"{start + 3:010d}"
    b = await issue(issuance, charge(place=place))
    conv = await lifecycle.ConvertToPaper(
        lifecycle_pb2.PaperBillRequest(operator=op(place), bill=by_number(b))
    )
    assert conv.paper_no == f"{start + 3:010d}"
    # A range holding a printed paper is not blank.
    await refused(
        pool,
        lifecycle.VoidBlankPaper(
            lifecycle_pb2.VoidBlankPaperRequest(
                operator=op(place),
                paper_code=rng.paper_code,
                start_no=f"{start + 3:010d}",
                end_no=f"{start + 5:010d}",
                reason="x",
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        field="start_no",
    )
    # Paper that overlaps paper already received is refused.
    await refused(
        pool,
        lifecycle.ReceivePaper(
            lifecycle_pb2.ReceivePaperRequest(
                operator=op(place),
                paper_code=rng.paper_code,
                start_no=rng.end_no,
                end_no=f"{int(rng.end_no) + 5:010d}",
            )
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    after = await lifecycle.GetPaperStock(lifecycle_pb2.GetPaperStockRequest(operator=op(place)))
    assert next(r for r in after.ranges if r.id == rng.id).remaining == 10 - 4


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


async def test_back_entry_of_a_bill_issued_elsewhere_can_be_refunded(
    lifecycle: lc_grpc.LifecycleServiceStub, pool: asyncpg.Pool, stack: Stack
) -> None:
    src = charge()
    n = next(_seq)
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
    n = next(_seq)
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
