"""The signer and fiscal sandboxes are real servers with real rules."""

from __future__ import annotations

import json

import grpc
import pytest

from engine.sm2 import SigningKey
from ops.stack import Stack
from protos.fiscal.v1 import fiscal_pb2, fiscal_pb2_grpc
from protos.hsm.v1 import signer_pb2, signer_pb2_grpc
from tests.gm_reference import gm_verify

pytestmark = pytest.mark.slow

UNIT = "SANDBOX01"


async def test_signer_signs_batches_gmssl_verifies_and_key_survives(stack: Stack) -> None:
    async with stack.channel("signer") as ch:
        signer = signer_pb2_grpc.SignerStub(ch)
        data = [f"bill {i}".encode() for i in range(50)]
        sigs = (
            await signer.SignBatch(signer_pb2.SignBatchRequest(key_id="t1", data=data))
        ).signatures
        pub = (
            await signer.ExportPublicKey(signer_pb2.ExportPublicKeyRequest(key_id="t1"))
        ).public_key
        assert len(sigs) == 50
        assert all(gm_verify(pub, d, s) for d, s in zip(data, sigs, strict=True))
        checks = await signer.VerifyBatch(
            signer_pb2.VerifyBatchRequest(
                key_id="t1",
                items=[
                    signer_pb2.VerifyItem(data=data[0], signature=sigs[0]),
                    signer_pb2.VerifyItem(data=data[1], signature=sigs[0]),
                ],
            )
        )
        assert list(checks.valid) == [True, False]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await signer.SignBatch(signer_pb2.SignBatchRequest(key_id="../etc", data=[b"x"]))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # the key was made on first use and is kept on disk, readable only by its owner
    pem = stack.config.data_dir / "signer" / "t1.pem"
    assert pem.stat().st_mode & 0o077 == 0
    assert SigningKey.from_pem(pem.read_bytes()).public.point == pub


async def test_fiscal_countersigns_only_good_unit_signatures_on_granted_numbers(
    stack: Stack,
) -> None:
    unit_key = SigningKey.generate()
    async with stack.channel("fiscal") as ch:
        fiscal = fiscal_pb2_grpc.FiscalPlatformStub(ch)
        await fiscal.RegisterUnit(
            fiscal_pb2.RegisterUnitRequest(
                unit_code=UNIT, unit_name="t", public_key=unit_key.public.point
            )
        )
        seg = await fiscal.GrantSegment(
            fiscal_pb2.GrantSegmentRequest(unit_code=UNIT, bill_code="44060119", count=5)
        )
        assert int(seg.end_no) - int(seg.start_no) == 4 and len(seg.start_no) == 10
        fiscal_pub = (await fiscal.GetPublicKey(fiscal_pb2.GetPublicKeyRequest())).public_key

        def item(
            no: str, *, sign_with: SigningKey = unit_key, check: str = "abc123"
        ) -> fiscal_pb2.CountersignItem:
            # The members the platform reads: identity, kind and amounts that add up.
            doc = json.dumps(
                {
                    "unit_code": UNIT,
                    "bill_code": "44060119",
                    "bill_no": no,
                    "check_code": check,
                    "bus_type": "02",
                    "bill_kind": "outpatient",
                    "total_amount": "1.00",
                    "charge_items": [{"charge_code": "A01", "amt": "1.00", "self_amt": "0.00"}],
                    "pay_channels": [{"pay_channel_code": "02", "amount": "1.00"}],
                },
                sort_keys=True,
            ).encode()
            return fiscal_pb2.CountersignItem(
                unit_code=UNIT,
                bill_code="44060119",
                bill_no=no,
                check_code=check,
                total_fen=100,
                canonical=doc,
                unit_signature=sign_with.sign(doc),
            )

        good = item(seg.start_no)
        forged = item(seg.end_no, sign_with=SigningKey.generate())
        ungranted = item(f"{int(seg.end_no) + 1:010d}")
        lying = item(f"{int(seg.start_no) + 1:010d}")
        lying.check_code = "ffffff"  # claims another check code than the one signed
        resp = await fiscal.CountersignBatch(
            fiscal_pb2.CountersignBatchRequest(items=[good, forged, ungranted, lying])
        )
        ok, bad_sig, not_granted, mismatch = resp.results
        assert ok.ok and gm_verify(
            fiscal_pub, good.canonical + good.unit_signature, ok.fiscal_signature
        )
        assert (bad_sig.ok, bad_sig.error_code) == (False, "BAD_UNIT_SIGNATURE")
        assert (not_granted.ok, not_granted.error_code) == (False, "NOT_GRANTED")
        assert (mismatch.ok, mismatch.error_code) == (False, "MISMATCH")

        # Again with a fresh (randomised) unit signature: the first countersignature comes back.
        again = item(seg.start_no)
        (replay,) = (
            await fiscal.CountersignBatch(fiscal_pb2.CountersignBatchRequest(items=[again]))
        ).results
        assert replay.ok and replay.fiscal_signature == ok.fiscal_signature
        assert replay.unit_signature == good.unit_signature != again.unit_signature
        # Another document under a number already used is refused.
        other = item(seg.start_no, check="999999")
        (dup,) = (
            await fiscal.CountersignBatch(fiscal_pb2.CountersignBatchRequest(items=[other]))
        ).results
        assert (dup.ok, dup.error_code) == (False, "DUPLICATE_NUMBER")

        found = await fiscal.VerifyBill(
            fiscal_pb2.VerifyBillRequest(
                bill_code="44060119", bill_no=seg.start_no, check_code="abc123"
            )
        )
        assert found.found and found.unit_code == UNIT and found.total_fen == 100
