"""History migration on the session stack: `ebill import history` brings a previous
system's bills in; they are found by GetBill and ListBills, red-flushed and
refunded through the engine like back-entered bills; a re-run imports nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from bench.history_data import OLD_BILL_CODE, history_rows, write_jsonl
from ops.stack import Stack
from protos.ebill.v1 import bill_pb2, issuance_pb2, issuance_pb2_grpc, lifecycle_pb2
from protos.ebill.v1 import lifecycle_pb2_grpc as lc_grpc
from tests.e2e.lifecycle_support import ISSUED, RED_FLUSHED, assert_signed, op, serial
from tests.resilience import public_keys
from usecases import demo

pytestmark = pytest.mark.slow

# Numbers of the old bill code no other test uses.
FIRST = 7_000_000_001 + (os.getpid() % 1000) * 1000


def run_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ebill.cli", "import", *args],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def by_number(code: str, no: str) -> issuance_pb2.GetBillRequest:
    return issuance_pb2.GetBillRequest(
        by_number=issuance_pb2.BillNumberKey(bill_code=code, bill_no=no)
    )


async def test_history_bills_are_imported_found_red_flushed_and_refunded(
    stack: Stack,
    pool: asyncpg.Pool,
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    lifecycle: lc_grpc.LifecycleServiceStub,
    tmp_path: Path,
) -> None:
    rows = list(history_rows(60, prefix=f"HX{os.getpid()}", first_no=FIRST))
    f = tmp_path / "old-system.jsonl"
    write_jsonl(f, iter(rows))
    first = run_cli(stack, "history", str(f), "--operator", "迁移员")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "imported 60 bills" in first.stdout, first.stdout
    again = run_cli(stack, "history", str(f), "--operator", "迁移员")
    assert again.returncode == 0 and "nothing imported" in again.stdout, again.stdout

    # GetBill finds it by number and by serial, as it was issued.
    a, b = rows[0], rows[1]
    got = await issuance.GetBill(by_number(OLD_BILL_CODE, a["bill_no"]))
    assert got.origin == "history" and got.status == ISSUED
    assert got.check_code == a["check_code"] and got.total_amount == a["bill"]["total_amount"]
    by_serial = await issuance.GetBill(
        issuance_pb2.GetBillRequest(
            by_bus=issuance_pb2.BusKey(unit_code=demo.UNIT_CODE, bus_no=a["bill"]["bus_no"])
        )
    )
    assert by_serial.bill_no == a["bill_no"]
    # ListBills at its issuing point, by the payer's ID card.
    listed = await lifecycle.ListBills(
        lifecycle_pb2.ListBillsRequest(
            operator=op("001"), payer_id_card_no=a["bill"]["payer"]["id_card_no"]
        )
    )
    assert a["bill_no"] in [x.bill_no for x in listed.bills]

    # Red-flushed here: a red bill on the unit's current outpatient code, signed
    # and countersigned, naming the history bill.
    resp = await lifecycle.RedFlush(
        lifecycle_pb2.RedFlushRequest(
            operator=op("001"),
            original=by_number(OLD_BILL_CODE, a["bill_no"]),
            bus_no=serial("HR"),
            reason="退费",
        )
    )
    red = resp.red_bill
    assert red.bill_code == "44060119" and red.red_of == f"{OLD_BILL_CODE}/{a['bill_no']}"
    assert red.total_amount == "-" + a["bill"]["total_amount"]
    assert_signed(red, await public_keys(stack))
    assert resp.original.status == RED_FLUSHED
    # Refunded in full: the red bill and nothing left to re-issue.
    refund = await lifecycle.Refund(
        lifecycle_pb2.RefundRequest(
            operator=op("001"),
            original=by_number(OLD_BILL_CODE, b["bill_no"]),
            red_bus_no=serial("HF"),
            refund_amount=b["bill"]["total_amount"],
            reason="全额退费",
        )
    )
    assert refund.original.status == RED_FLUSHED and not refund.HasField("remainder")
    assert refund.red_bill.status == bill_pb2.BILL_STATUS_ISSUED

    # The old system's red bills came in as red bills of their originals.
    red_row = next(r for r in rows if r.get("red_of"))
    old_red = await issuance.GetBill(by_number(OLD_BILL_CODE, red_row["bill_no"]))
    assert old_red.red_of == f"{OLD_BILL_CODE}/{red_row['red_of']['bill_no']}"
    # Every history bill is a leaf of the transparency log.
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM log_entries l JOIN bills b ON b.id = l.bill_id"
            " WHERE l.op = 'bill.history_import' AND b.bus_no LIKE $1",
            f"HX{os.getpid()}%",
        )
        == 60
    )
