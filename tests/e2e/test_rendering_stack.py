"""Issued on the whole stack, then rendered and verified: the platform sandbox
signs each bill's QR facts with its countersignature, the engine stores the
signature, and the public pages, the PDF and `ebill verify` check it with the
keys fetched from the sandboxes; a red-flush shows on the verification API."""

from __future__ import annotations

import io
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from pypdf import PdfReader
from starlette.applications import Starlette

from clients.fiscal import FiscalClient
from clients.signer import SignerClient
from ebill.http.public import routes
from engine.qr import facts_of_canonical, parse
from engine.sm2 import VerifyingKey
from engine.verification import BillExport
from ops.stack import Stack
from protos.ebill.v1 import issuance_pb2_grpc, lifecycle_pb2
from protos.ebill.v1 import lifecycle_pb2_grpc as lc_grpc
from tests.e2e.lifecycle_support import by_number, charge, issue, op, serial
from tests.gm_reference import gm_verify
from tests.resilience import public_keys
from usecases.rendering import EXPORT_NAME, ClientKeys, Rendering, StoredBills
from usecases.verification import Verification

pytestmark = pytest.mark.slow


@dataclass
class Services:
    rendering: Rendering
    verification: Verification


async def test_issued_bill_has_a_platform_signed_qr_and_renders_verifiably(
    issuance: issuance_pb2_grpc.IssuanceServiceStub,
    lifecycle: lc_grpc.LifecycleServiceStub,
    pool: asyncpg.Pool,
    stack: Stack,
) -> None:
    unit_key, fiscal_key = await public_keys(stack)
    bill = await issue(issuance, charge())
    qr_signature = await pool.fetchval(
        "SELECT qr_signature FROM bills WHERE bill_code = $1 AND bill_no = $2",
        bill.bill_code,
        bill.bill_no,
    )
    # Signed by the platform over the facts of the canonical bytes (gmssl agrees).
    facts = facts_of_canonical(bill.canonical)
    assert qr_signature and gm_verify(fiscal_key, facts.message, bytes(qr_signature))
    # The gRPC answer carries it, on issuance and on GetBill, so that a HIS can
    # print the QR itself.
    assert bill.qr_signature == bytes(qr_signature)
    assert (await issuance.GetBill(by_number(bill))).qr_signature == bill.qr_signature

    async with (
        FiscalClient(stack.config.fiscal_addr, tls=stack.tls("engine")) as fiscal,
        SignerClient(stack.config.signer_addr, "unit-sign", tls=stack.tls("engine")) as signer,
    ):
        rendering = Rendering(StoredBills(pool, stack.data_keys()), ClientKeys(fiscal, signer))
        verification = Verification(rendering)
        pdf = await rendering.pdf(bill.bill_code, bill.bill_no, bill.check_code)
        assert await rendering.pdf(bill.bill_code, bill.bill_no, bill.check_code) == pdf
        assert rendering.cache.hits == 1
        (data,) = PdfReader(io.BytesIO(pdf)).attachments[EXPORT_NAME]
        export = BillExport.from_json(data)
        assert export.unit_public_key == unit_key
        assert export.check(VerifyingKey(fiscal_key)).ok

        ok = await verification.by_number(bill.bill_code, bill.bill_no, bill.check_code)
        assert ok.authentic and ok.red_text == "未冲红"
        qr = parse(ok.view.qr_text if ok.view else "")
        assert (await verification.by_qr(qr.text)).authentic

        # Red-flushed: still authentic, and says so.
        red = (
            await lifecycle.RedFlush(
                lifecycle_pb2.RedFlushRequest(
                    operator=op(), original=by_number(bill), bus_no=serial("Q"), reason="退费"
                )
            )
        ).red_bill
        # In process, on this event loop: the pool belongs to it.
        app = Starlette(routes=routes(Services(rendering, verification)))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bills") as client:
            after = (
                await client.get(
                    "/api/verify",
                    params={"bill_code": bill.bill_code, "bill_no": bill.bill_no,
                            "check_code": bill.check_code},
                )
            ).json()  # fmt: skip
            assert after["authentic"] and after["status"] == "red_flushed"
            assert f"{red.bill_code}/{red.bill_no}" in after["red_flush"]
            red_page = await client.get(
                f"/bill/{red.bill_code}/{red.bill_no}", params={"c": red.check_code}
            )
            assert "红字票据" in red_page.text and bill.bill_no in red_page.text
            red_check = (
                await client.get("/api/verify", params={"qr": _qr_of(red_page.text)})
            ).json()
            assert red_check["authentic"], red_check


def _qr_of(html: str) -> str:
    marker = 'id="qr" title="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)].replace("&amp;", "&")
