"""Delivery through the whole stack (issue #15, item 3): bills issued over gRPC
reach the SMS sandbox and the SMTP server by themselves; DeliveryService shows
status and history, binds a WeChat account and re-sends, respects opt-outs and
the operator's reach; a red bill is announced as such; a provider outage is
retried and the message goes out when it is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import grpc
import pytest
import pytest_asyncio

from ops.stack import Stack
from protos.ebill.v1 import delivery_pb2 as d
from protos.ebill.v1 import delivery_pb2_grpc, issuance_pb2_grpc, lifecycle_pb2
from protos.ebill.v1 import lifecycle_pb2_grpc as lc_grpc
from tests.delivery_support import sandbox_faults, sandbox_messages
from tests.e2e.conftest import Mailbox
from tests.e2e.lifecycle_support import by_number, charge, issue, next_seq, op, serial

pytestmark = pytest.mark.slow
T = TypeVar("T")
OPENID = "oE2eTestOpenid0000000000001x"


@pytest_asyncio.fixture(scope="module")
async def delivery(stack: Stack) -> AsyncIterator[delivery_pb2_grpc.DeliveryServiceStub]:
    async with stack.channel() as ch:
        yield delivery_pb2_grpc.DeliveryServiceStub(ch)


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 30) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("not within the time")
        await asyncio.sleep(0.2)


def phone() -> str:
    return f"139{next_seq():08d}"


def number(b: Any) -> d.BillNumber:
    return d.BillNumber(bill_code=b.bill_code, bill_no=b.bill_no)


async def sms_to(stack: Stack, tel: str, n: int = 1) -> list[dict[str, Any]]:
    async def got() -> list[dict[str, Any]] | None:
        found = await sandbox_messages(stack.provider_url("sms"), stack.provider_ca, tel)
        return found if len(found) >= n else None

    return await eventually(got)


async def test_an_issued_bill_reaches_the_payer_by_sms_and_email(
    stack: Stack, mailbox: Mailbox, issuance: issuance_pb2_grpc.IssuanceServiceStub,
    delivery: delivery_pb2_grpc.DeliveryServiceStub,
) -> None:  # fmt: skip
    tel = phone()
    b = charge()
    bill = await issue(
        issuance, replace(b, payer=replace(b.payer, tel=tel, email=f"p{tel}@example.com"))
    )
    [sms] = await sms_to(stack, tel)
    assert sms["template"] == "SMS_EBILL" and sms["params"]["no"] == bill.bill_no
    assert sms["params"]["url"].endswith(
        f"/bill/{bill.bill_code}/{bill.bill_no}?c={bill.check_code}"
    )
    mail = await eventually(
        lambda: asyncio.sleep(0, [m for m in mailbox.messages if bill.bill_no in str(m["Subject"])])
    )
    assert mail[0]["To"] == f"p{tel}@example.com"

    async def sent() -> d.GetDeliveryResponse | None:
        r = await delivery.GetDelivery(d.GetDeliveryRequest(operator=op(), bill=number(bill)))
        ok = {c.status for c in r.channels} == {d.DELIVERY_STATUS_SENT}
        return r if ok and len(r.channels) == 2 else None

    status = await sent_or_fail(sent)
    by = {c.channel: c for c in status.channels}
    assert by[d.DELIVERY_CHANNEL_SMS].provider_id == sms["message_id"]
    assert by[d.DELIVERY_CHANNEL_SMS].history[0].address == f"{tel[:3]}****{tel[-4:]}"

    # Another issuing point may not look at it.
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await delivery.GetDelivery(d.GetDeliveryRequest(operator=op("002"), bill=number(bill)))
    assert e.value.code() is grpc.StatusCode.PERMISSION_DENIED

    # A WeChat account bound to the visit card, then the bill re-sent: pushed there too.
    await delivery.BindAccount(d.BindAccountRequest(operator=op(), card_no=b.payer.card_no,
                                                    channel=d.DELIVERY_CHANNEL_WECHAT,
                                                    account=OPENID))  # fmt: skip
    r = await delivery.Resend(d.ResendRequest(operator=op(), bill=number(bill),
                                              channels=[d.DELIVERY_CHANNEL_WECHAT]))  # fmt: skip
    assert r.queued == 1

    async def pushed() -> list[dict[str, Any]] | None:
        found = await sandbox_messages(stack.provider_url("wechat"), stack.provider_ca, OPENID)
        return [m for m in found if m["params"]["no"] == bill.bill_no] or None

    [wx] = await eventually(pushed)
    assert wx["template"] == "EBILL_NOTICE" and wx["extra"]["url"].endswith(bill.check_code)


async def sent_or_fail(check: Callable[[], Awaitable[T | None]]) -> T:
    return await eventually(check)


async def test_a_red_bill_is_announced_and_an_opt_out_respected(
    stack: Stack, issuance: issuance_pb2_grpc.IssuanceServiceStub,
    lifecycle: lc_grpc.LifecycleServiceStub, delivery: delivery_pb2_grpc.DeliveryServiceStub,
) -> None:  # fmt: skip
    tel = phone()
    b = charge()
    original = await issue(issuance, replace(b, payer=replace(b.payer, tel=tel)))
    await sms_to(stack, tel)
    red = (await lifecycle.RedFlush(lifecycle_pb2.RedFlushRequest(
        operator=op(), original=by_number(original), bus_no=serial("R"), reason="wrong patient",
    ))).red_bill  # fmt: skip
    msgs = await sms_to(stack, tel, 2)
    red_sms = next(m for m in msgs if m["template"] == "SMS_EBILL_RED")
    assert red_sms["params"]["no"] == red.bill_no and "冲红" in red_sms["text"]

    # The payer opts out: the next bill is not sent, and the history says why.
    r = await delivery.OptOut(d.OptOutRequest(operator=op(), channel=d.DELIVERY_CHANNEL_SMS,
                                              address=tel))  # fmt: skip
    assert r.changed
    b2 = charge()
    quiet = await issue(issuance, replace(b2, payer=replace(b2.payer, tel=tel)))

    async def skipped() -> d.ChannelDelivery | None:
        resp = await delivery.GetDelivery(d.GetDeliveryRequest(operator=op(), bill=number(quiet)))
        c = resp.channels[0] if resp.channels else None
        return c if c and c.status == d.DELIVERY_STATUS_SKIPPED else None

    c = await eventually(skipped)
    assert c.last_error == "opted out"
    assert len(await sandbox_messages(stack.provider_url("sms"), stack.provider_ca, tel)) == 2


async def test_a_provider_outage_is_retried_and_the_message_goes_out_after(
    stack: Stack, issuance: issuance_pb2_grpc.IssuanceServiceStub,
    delivery: delivery_pb2_grpc.DeliveryServiceStub,
) -> None:  # fmt: skip
    sms_url, ca = stack.provider_url("sms"), stack.provider_ca
    tel = phone()
    b = charge()
    await sandbox_faults(sms_url, ca, down=True)
    try:
        bill = await issue(issuance, replace(b, payer=replace(b.payer, tel=tel)))

        async def retried() -> d.ChannelDelivery | None:
            resp = await delivery.GetDelivery(
                d.GetDeliveryRequest(operator=op(), bill=number(bill))
            )
            c = resp.channels[0] if resp.channels else None
            return c if c and c.attempts >= 1 else None

        c = await eventually(retried)
        assert c.status == d.DELIVERY_STATUS_PENDING and "503" in c.last_error
        assert c.history[0].outcome == "retry"
    finally:
        await sandbox_faults(sms_url, ca, down=False)
    # The first retry comes 5 s later.
    [m] = await sms_to(stack, tel)
    assert m["params"]["no"] == bill.bill_no


async def test_templates_are_the_bill_offices(
    delivery: delivery_pb2_grpc.DeliveryServiceStub,
) -> None:
    office = lifecycle_pb2.Operator(unit_code=op().unit_code, operator="office-1")
    got = await delivery.GetTemplate(d.GetTemplateRequest(
        operator=office, channel=d.DELIVERY_CHANNEL_EMAIL, kind=d.MESSAGE_KIND_ISSUED))  # fmt: skip
    assert got.is_default and "{{ url }}" in got.body
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await delivery.SetTemplate(d.SetTemplateRequest(operator=op(), template=got))
    assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # a point may not
    bad = d.DeliveryTemplate(channel=got.channel, kind=got.kind, subject="s", body="{{ oops }}")
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await delivery.SetTemplate(d.SetTemplateRequest(operator=office, template=bad))
    assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert dict(e.value.trailing_metadata() or ()).get("ebill-field") == "template.body"
    mine = d.DeliveryTemplate(channel=got.channel, kind=got.kind, subject="票据 {{ bill_no }}",
                              body="您好\n{{ url }}\n")  # fmt: skip
    saved = await delivery.SetTemplate(d.SetTemplateRequest(operator=office, template=mine))
    assert not saved.is_default and saved.body == "您好\n{{ url }}\n"
    back = await delivery.SetTemplate(
        d.SetTemplateRequest(operator=office, template=mine, reset=True)
    )
    assert back.is_default
