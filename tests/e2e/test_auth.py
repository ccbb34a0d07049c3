"""Authentication on the running stack: signed requests (replayed, expired,
tampered), client certificates, staff sessions and their scope, and the
management RPCs (disable, rotate) taking effect."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import grpc
import pytest

from clients._grpc import open_channel
from clients.credentials import AppCredentials, open_engine_channel
from engine.identity import Permission
from ops import pki
from ops.stack import Stack
from protos.ebill.v1 import (
    identity_pb2,
    identity_pb2_grpc,
    issuance_pb2,
    issuance_pb2_grpc,
    lifecycle_pb2,
    lifecycle_pb2_grpc,
    stock_pb2,
    stock_pb2_grpc,
)
from tests.e2e.auth_support import make_app, state
from tests.e2e.lifecycle_support import charge, issue
from tests.refusal import refused
from usecases import demo

pytestmark = pytest.mark.slow

WHOAMI = "/ebill.v1.IdentityService/WhoAmI"


async def _whoami(ch: grpc.aio.Channel, metadata: list[tuple[str, str]]) -> grpc.StatusCode:
    try:
        await ch.unary_unary(
            WHOAMI,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=identity_pb2.PrincipalInfo.FromString,
        )(identity_pb2.IdentityEmpty(), metadata=tuple(metadata), timeout=10)
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


async def test_replayed_expired_and_tampered_requests_refused(stack: Stack) -> None:
    creds = stack.app_credentials()
    assert creds is not None
    body = identity_pb2.IdentityEmpty().SerializeToString()
    async with stack.channel(creds=False) as ch:
        md = creds.metadata(WHOAMI, body)
        assert await _whoami(ch, md) == grpc.StatusCode.OK
        # The same signed metadata again: its nonce was seen.
        assert await _whoami(ch, md) == grpc.StatusCode.UNAUTHENTICATED
        # Signed correctly, but ten minutes old (the window is five).
        real = time.time
        try:
            time.time = lambda: real() - 600
            stale = creds.metadata(WHOAMI, body)
        finally:
            time.time = real
        assert await _whoami(ch, stale) == grpc.StatusCode.UNAUTHENTICATED
        # Signed over another body, or another method.
        other = creds.metadata(WHOAMI, b"\x0a\x01x")
        assert await _whoami(ch, other) == grpc.StatusCode.UNAUTHENTICATED
        wrong = creds.metadata("/ebill.v1.IdentityService/Logout", body)
        assert await _whoami(ch, wrong) == grpc.StatusCode.UNAUTHENTICATED


async def test_app_by_client_certificate(stack: Stack) -> None:
    tls = stack.tls()
    if tls is None:
        pytest.skip("TLS off")
    admin = await stack.login("admin")
    pki.make_leaf(tls.ca.parent, "kiosk", server=False, client=True)
    await make_app(
        stack, admin, "kiosk-7", [Permission.BILL_READ], places=["002"], cert_cn="ebill kiosk"
    )
    kiosk_tls = type(tls).in_dir(tls.ca.parent, "kiosk")
    async with open_channel(stack.config.grpc_addr, kiosk_tls) as ch:
        who = await identity_pb2_grpc.IdentityServiceStub(ch).WhoAmI(identity_pb2.IdentityEmpty())
        assert (who.kind, who.name, list(who.places)) == ("app", "kiosk-7", ["002"])
    # The kiosk's certificate with the demo app's signature: two apps, refused.
    async with open_engine_channel(
        stack.config.grpc_addr, kiosk_tls, stack.app_credentials()
    ) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await identity_pb2_grpc.IdentityServiceStub(ch).WhoAmI(identity_pb2.IdentityEmpty())
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_cashier_of_one_point_cannot_see_or_act_on_another(
    stack: Stack, pool: asyncpg.Pool, issuance: issuance_pb2_grpc.IssuanceServiceStub
) -> None:
    other = await issue(issuance, charge("002"))  # a bill of point 002, by the HIS
    cashier = await stack.login("cashier-001")
    by_number = issuance_pb2.GetBillRequest(
        by_number=issuance_pb2.BillNumberKey(bill_code=other.bill_code, bill_no=other.bill_no)
    )
    before = await state(pool)
    async with stack.channel(creds=cashier) as ch:
        bills = issuance_pb2_grpc.IssuanceServiceStub(ch)
        life = lifecycle_pb2_grpc.LifecycleServiceStub(ch)
        for attempt in (
            bills.GetBill(by_number),
            bills.GetBillStatus(by_number),
            life.ListBills(
                lifecycle_pb2.ListBillsRequest(
                    operator=lifecycle_pb2.Operator(unit_code=demo.UNIT_CODE, place_code="002")
                )
            ),
            life.RedFlush(
                lifecycle_pb2.RedFlushRequest(
                    operator=lifecycle_pb2.Operator(unit_code=demo.UNIT_CODE, place_code="002"),
                    original=by_number,
                    bus_no=f"RED-{other.bus_no}",
                    reason="not mine",
                )
            ),
            # Acting at their own point in the name of somebody else.
            life.ListBills(
                lifecycle_pb2.ListBillsRequest(
                    operator=lifecycle_pb2.Operator(
                        unit_code=demo.UNIT_CODE, place_code="001", operator="cashier-002"
                    )
                )
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await attempt
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, err.value.details()
        # Their own point: allowed, and the operator recorded is the signed-in user.
        mine = await life.ListBills(
            lifecycle_pb2.ListBillsRequest(
                operator=lifecycle_pb2.Operator(unit_code=demo.UNIT_CODE, place_code="001")
            )
        )
        assert all(b.place_code == "001" for b in mine.bills)
        # Issuing is theirs, stock management is not.
        who = await identity_pb2_grpc.IdentityServiceStub(ch).WhoAmI(identity_pb2.IdentityEmpty())
        assert "bill.issue" in who.permissions and "stock.manage" not in who.permissions
    assert await state(pool) == before


async def test_disabled_app_and_ended_session_are_refused(stack: Stack) -> None:
    admin = await stack.login("admin")
    app = await make_app(stack, admin, "batch-job", [Permission.BILL_READ])
    async with stack.channel(creds=app) as ch:
        await identity_pb2_grpc.IdentityServiceStub(ch).WhoAmI(identity_pb2.IdentityEmpty())
    async with stack.channel(creds=admin) as ch:
        ident = identity_pb2_grpc.IdentityServiceStub(ch)
        rotated = await ident.RotateAppSecret(identity_pb2.AppRef(app_id="batch-job"))
        assert rotated.secret_version == 2
    # The old secret stops working within the cache time; the new one works.
    await asyncio.sleep(stack_cache_s() + 0.5)
    async with stack.channel(creds=app) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await identity_pb2_grpc.IdentityServiceStub(ch).WhoAmI(identity_pb2.IdentityEmpty())
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    new = AppCredentials("batch-job", rotated.secret)
    async with stack.channel(creds=new) as ch:
        await identity_pb2_grpc.IdentityServiceStub(ch).WhoAmI(identity_pb2.IdentityEmpty())
    # A session ended by Logout is refused.
    cashier = await stack.login("cashier-002")
    async with stack.channel(creds=cashier) as ch:
        ident = identity_pb2_grpc.IdentityServiceStub(ch)
        await ident.Logout(identity_pb2.LogoutRequest())
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await ident.WhoAmI(identity_pb2.IdentityEmpty())
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_wrong_password_and_missing_code_refused(stack: Stack) -> None:
    async with stack.channel(creds=False) as ch:
        ident = identity_pb2_grpc.IdentityServiceStub(ch)
        for username, password in (
            ("cashier-002", "Not-the-password-1"),
            ("manager-a", stack.demo.staff["manager-a"].password),  # no TOTP code
            ("nobody", "Whatever-pass-1"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await ident.Login(identity_pb2.LoginRequest(username=username, password=password))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def stack_cache_s() -> float:
    return 5.0  # EBILL_AUTH_CACHE_S default


async def test_second_approval_by_the_same_user_refused(
    stack: Stack,
    pool: asyncpg.Pool,
    manager_a: stock_pb2_grpc.StockServiceStub,
    manager_b: stock_pb2_grpc.StockServiceStub,
) -> None:
    # Asked by signed-in manager-a for point 005 (their name filled in for them).
    asked = await manager_a.RequestRequisition(
        stock_pb2.RequisitionRequest(
            operator=lifecycle_pb2.Operator(unit_code=demo.UNIT_CODE, place_code="005"),
            bill_code="44060119",
            count=5,
        )
    )
    row = await pool.fetchrow("SELECT requested_by FROM requisitions WHERE id = $1", asked.id)
    assert row is not None and row["requested_by"] == "manager-a"
    decision = stock_pb2.DecisionRequest(
        operator=lifecycle_pb2.Operator(unit_code=demo.UNIT_CODE), id=asked.id, reason="no"
    )
    await refused(
        pool,
        manager_a.DecideRequisition(decision),
        grpc.StatusCode.FAILED_PRECONDITION,
        field="operator.operator",
    )
    await manager_b.DecideRequisition(decision)
    status = await pool.fetchval("SELECT status FROM requisitions WHERE id = $1", asked.id)
    assert status == "rejected"
