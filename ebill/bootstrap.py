"""Setting a unit up: reference data, its key registered with the fiscal platform,
number segments granted by the platform and distributed to issuing points."""

from __future__ import annotations

import asyncpg
import grpc

from ebill import demo
from protos.fiscal.v1 import fiscal_pb2, fiscal_pb2_grpc
from protos.hsm.v1 import signer_pb2, signer_pb2_grpc
from storage.catalog import add_segment, ensure_unit, stock_summary

__all__ = ["bootstrap_demo", "grant_stock", "register_unit"]


async def register_unit(
    signer_addr: str, key_id: str, fiscal_addr: str, unit_code: str, name: str
) -> bytes:
    """Tell the fiscal platform which public key the unit's signing server signs with."""
    async with grpc.aio.insecure_channel(signer_addr) as ch:
        exported = await signer_pb2_grpc.SignerStub(ch).ExportPublicKey(
            signer_pb2.ExportPublicKeyRequest(key_id=key_id), timeout=10
        )
    async with grpc.aio.insecure_channel(fiscal_addr) as ch:
        await fiscal_pb2_grpc.FiscalPlatformStub(ch).RegisterUnit(
            fiscal_pb2.RegisterUnitRequest(
                unit_code=unit_code, unit_name=name, public_key=exported.public_key
            ),
            timeout=10,
        )
    return bytes(exported.public_key)


async def grant_stock(
    pool: asyncpg.Pool,
    fiscal_addr: str,
    *,
    unit_code: str,
    place_code: str,
    bill_code: str,
    count: int,
) -> tuple[int, int]:
    """Ask the platform for a segment and give it to an issuing point."""
    async with grpc.aio.insecure_channel(fiscal_addr) as ch:
        seg = await fiscal_pb2_grpc.FiscalPlatformStub(ch).GrantSegment(
            fiscal_pb2.GrantSegmentRequest(unit_code=unit_code, bill_code=bill_code, count=count),
            timeout=10,
        )
    start, end = int(seg.start_no), int(seg.end_no)
    await add_segment(
        pool,
        unit_code=unit_code,
        place_code=place_code,
        bill_code=bill_code,
        start_no=start,
        end_no=end,
        grant_id=seg.grant_id,
    )
    return start, end


async def bootstrap_demo(
    pool: asyncpg.Pool,
    *,
    signer_addr: str,
    signer_key_id: str,
    fiscal_addr: str,
    stock: int = 100_000,
) -> None:
    """The demo hospital, ready to issue: every issuing point holds at least
    ``stock // 2`` numbers of every bill code it uses."""
    await ensure_unit(
        pool,
        unit_code=demo.UNIT_CODE,
        unit_name=demo.UNIT_NAME,
        issuing_points=demo.ISSUING_POINTS,
        charge_codes=demo.CHARGE_CODES,
        bill_codes=demo.BILL_CODES,
    )
    await register_unit(signer_addr, signer_key_id, fiscal_addr, demo.UNIT_CODE, demo.UNIT_NAME)
    have = {
        (r["place_code"], r["bill_code"]): int(r["available"])
        for r in await stock_summary(pool, demo.UNIT_CODE)
    }
    for place, _ in demo.ISSUING_POINTS:
        for bill_code in sorted({c for _, c, _ in demo.BILL_CODES}):
            if have.get((place, bill_code), 0) < stock // 2:
                await grant_stock(
                    pool,
                    fiscal_addr,
                    unit_code=demo.UNIT_CODE,
                    place_code=place,
                    bill_code=bill_code,
                    count=stock,
                )
