"""Issue #11 item 11, the platform's side: the fiscal sandbox seals only what a
platform would. It runs alone here (its own process, no stack): amounts add up,
the bill code fits the kind of bill, a red bill cancels a countersigned original
of the same unit exactly and once, and RegisterUnit cannot replace a unit's key."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from clients._grpc import open_channel
from config.tls import TlsFiles
from engine.money import format_fen
from engine.sm2 import SigningKey
from ops.stack import free_port
from protos.fiscal.v1 import fiscal_pb2, fiscal_pb2_grpc

OUTPATIENT = "44060119"
INPATIENT = "44060219"


@pytest.fixture(scope="module")
def fiscal_addr() -> Iterator[tuple[str, TlsFiles]]:
    data_dir = Path(tempfile.mkdtemp(prefix="ebill-fiscal-rules-"))
    addr = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops.sandboxes.fiscal", "--addr", addr, "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "ready on" in line:
                break
        else:
            raise RuntimeError("the fiscal sandbox did not start")
        # TLS on (the default): the sandbox made the local PKI in its data dir.
        yield addr, TlsFiles.in_dir(data_dir / "pki", "client")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest_asyncio.fixture
async def fiscal(
    fiscal_addr: tuple[str, TlsFiles],
) -> AsyncIterator[fiscal_pb2_grpc.FiscalPlatformStub]:
    async with open_channel(*fiscal_addr) as ch:
        yield fiscal_pb2_grpc.FiscalPlatformStub(ch)


def document(
    unit: str,
    bill_code: str,
    bill_no: str,
    *,
    total: int = 1000,
    charges: tuple[int, ...] = (600, 400),
    pays: tuple[int, ...] = (1000,),
    bus_type: str = "02",
    red_of: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A bill document shaped like engine.canonical's (the members the platform reads)."""
    kinds = {"01": "inpatient", "02": "outpatient", "07": "deposit"}
    doc: dict[str, Any] = {
        "unit_code": unit,
        "bill_code": bill_code,
        "bill_no": bill_no,
        "check_code": "c0ffee",
        "bus_type": bus_type,
        "bill_kind": kinds[bus_type],
        "total_amount": format_fen(total),
        "charge_items": [
            {"charge_code": f"A0{i + 1}", "amt": format_fen(a), "self_amt": "0.00"}
            for i, a in enumerate(charges)
        ],
        "list_items": [],
        "pay_channels": [
            {"pay_channel_code": f"0{i + 1}", "amount": format_fen(a)} for i, a in enumerate(pays)
        ],
        "insurance": None,
    }
    if red_of is not None:
        doc["red_of"] = red_of
    return doc


def item(doc: dict[str, Any], key: SigningKey, *, total_fen: int | None = None) -> Any:
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return fiscal_pb2.CountersignItem(
        unit_code=doc["unit_code"],
        bill_code=doc["bill_code"],
        bill_no=doc["bill_no"],
        check_code=doc["check_code"],
        total_fen=int(Decimal(doc["total_amount"]) * 100) if total_fen is None else total_fen,
        canonical=canonical,
        unit_signature=key.sign(canonical),
    )


async def countersign(fiscal: fiscal_pb2_grpc.FiscalPlatformStub, *items: Any) -> list[str]:
    """The error code of each item ('' when countersigned)."""
    resp = await fiscal.CountersignBatch(fiscal_pb2.CountersignBatchRequest(items=items))
    return ["" if r.ok else r.error_code for r in resp.results]


async def register(
    fiscal: fiscal_pb2_grpc.FiscalPlatformStub, unit: str, key: SigningKey
) -> fiscal_pb2.RegisterUnitResponse:
    resp: fiscal_pb2.RegisterUnitResponse = await fiscal.RegisterUnit(
        fiscal_pb2.RegisterUnitRequest(unit_code=unit, unit_name=unit, public_key=key.public.point)
    )
    return resp


async def numbers(
    fiscal: fiscal_pb2_grpc.FiscalPlatformStub, unit: str, bill_code: str, count: int
) -> list[str]:
    seg = await fiscal.GrantSegment(
        fiscal_pb2.GrantSegmentRequest(unit_code=unit, bill_code=bill_code, count=count)
    )
    return [f"{n:010d}" for n in range(int(seg.start_no), int(seg.end_no) + 1)]


async def test_register_unit_cannot_replace_a_key(
    fiscal: fiscal_pb2_grpc.FiscalPlatformStub,
) -> None:
    key, intruder = SigningKey.generate(), SigningKey.generate()
    await register(fiscal, "KEYS01", key)
    await register(fiscal, "KEYS01", key)  # the same key again: idempotent
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await register(fiscal, "KEYS01", intruder)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "another public key" in (err.value.details() or "")
    # The unit's own key still seals its bills; the intruder's does not.
    a, b = await numbers(fiscal, "KEYS01", OUTPATIENT, 2)
    assert await countersign(
        fiscal, item(document("KEYS01", OUTPATIENT, a), key),
        item(document("KEYS01", OUTPATIENT, b), intruder),
    ) == ["", "BAD_UNIT_SIGNATURE"]  # fmt: skip


async def test_amounts_must_add_up_and_match_the_declared_total(
    fiscal: fiscal_pb2_grpc.FiscalPlatformStub,
) -> None:
    key = SigningKey.generate()
    await register(fiscal, "SUMS01", key)
    n = await numbers(fiscal, "SUMS01", OUTPATIENT, 5)
    assert await countersign(
        fiscal,
        item(document("SUMS01", OUTPATIENT, n[0], charges=(600, 300)), key),
        item(document("SUMS01", OUTPATIENT, n[1], pays=(900,)), key),
        item(document("SUMS01", OUTPATIENT, n[2]), key, total_fen=1),
        item(document("SUMS01", OUTPATIENT, n[3], charges=(), pays=()), key),
        item(document("SUMS01", OUTPATIENT, n[4], pays=(500, 500)), key),
    ) == ["AMOUNTS", "AMOUNTS", "MISMATCH", "AMOUNTS", ""]


async def test_the_bill_code_must_fit_the_kind_of_bill(
    fiscal: fiscal_pb2_grpc.FiscalPlatformStub,
) -> None:
    key = SigningKey.generate()
    await register(fiscal, "KIND01", key)
    out = await numbers(fiscal, "KIND01", OUTPATIENT, 2)
    inp = await numbers(fiscal, "KIND01", INPATIENT, 2)
    other = await numbers(fiscal, "KIND01", "44990119", 1)
    assert await countersign(
        fiscal,
        item(document("KIND01", INPATIENT, inp[0], bus_type="02"), key),  # outpatient bill
        item(document("KIND01", OUTPATIENT, out[0], bus_type="01"), key),  # inpatient bill
        item(document("KIND01", OUTPATIENT, out[1], bus_type="07"), key),  # a deposit
        item(document("KIND01", "44990119", other[0]), key),  # no kind of bill uses 9901
        item(document("KIND01", INPATIENT, inp[1], bus_type="01"), key),
    ) == ["WRONG_KIND", "WRONG_KIND", "WRONG_KIND", "WRONG_KIND", ""]


async def test_a_red_bill_cancels_a_countersigned_original_of_its_unit_exactly_once(
    fiscal: fiscal_pb2_grpc.FiscalPlatformStub,
) -> None:
    key, other_key = SigningKey.generate(), SigningKey.generate()
    await register(fiscal, "RED01", key)
    await register(fiscal, "RED02", other_key)
    n = await numbers(fiscal, "RED01", OUTPATIENT, 10)
    (foreign_no,) = await numbers(fiscal, "RED02", OUTPATIENT, 1)
    original = document("RED01", OUTPATIENT, n[0], charges=(700, 300), pays=(400, 600))
    foreign = document("RED02", OUTPATIENT, foreign_no)
    assert await countersign(fiscal, item(original, key)) == [""]
    assert await countersign(fiscal, item(foreign, other_key)) == [""]

    def red(no: str, of: str, *, unit: str = "RED01", **amounts: Any) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "total": -1000,
            "charges": (-700, -300),
            "pays": (-400, -600),
        } | amounts
        return document(
            unit,
            OUTPATIENT,
            no,
            red_of={"bill_code": OUTPATIENT, "bill_no": of, "check_code": "c0ffee"},
            **shape,
        )

    assert await countersign(
        fiscal,
        # Not exactly negated: half the amounts, or the charges shuffled between lines.
        item(red(n[1], n[0], total=-500, charges=(-350, -150), pays=(-200, -300)), key),
        item(red(n[2], n[0], charges=(-300, -700)), key),
        # Positive amounts under red_of.
        item(red(n[3], n[0], total=1000, charges=(700, 300), pays=(400, 600)), key),
        # A number of a granted code that was never countersigned.
        item(red(n[4], n[9]), key),
        # Another unit's bill.
        item(red(n[5], foreign_no, total=-1000, charges=(-600, -400), pays=(-1000,)), key),
    ) == ["NOT_NEGATED", "NOT_NEGATED", "NOT_NEGATED", "UNKNOWN_ORIGINAL", "FOREIGN_ORIGINAL"]
    good = item(red(n[6], n[0]), key)
    assert await countersign(fiscal, good) == [""]
    # The same red bill again is the idempotent replay; a second red bill is refused,
    # and so is a red bill of the red bill.
    assert await countersign(fiscal, good) == [""]
    assert await countersign(fiscal, item(red(n[7], n[0]), key)) == ["ALREADY_RED_FLUSHED"]
    red_of_red = red(n[8], n[6], total=1000, charges=(700, 300), pays=(400, 600))
    assert await countersign(fiscal, item(red_of_red, key)) == ["RED_OF_RED"]


async def test_a_red_bill_of_a_bill_issued_elsewhere_is_accepted_once(
    fiscal: fiscal_pb2_grpc.FiscalPlatformStub,
) -> None:
    """A bill entered back at the unit (BackEntry) under a code this platform never
    granted: the platform cannot see the original, and seals one red bill for it."""
    key = SigningKey.generate()
    await register(fiscal, "BACK01", key)
    n = await numbers(fiscal, "BACK01", OUTPATIENT, 2)
    elsewhere = {"bill_code": "44998819", "bill_no": "0000000042", "check_code": "a1b2c3"}
    docs = [
        document("BACK01", OUTPATIENT, no, total=-1000, charges=(-1000,), pays=(-1000,),
                 red_of=elsewhere)
        for no in n
    ]  # fmt: skip
    assert await countersign(fiscal, item(docs[0], key)) == [""]
    assert await countersign(fiscal, item(docs[1], key)) == ["ALREADY_RED_FLUSHED"]
