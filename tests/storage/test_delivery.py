"""Delivery outbox (issue #15, item 3) against a real PostgreSQL, with the real
SMS, WeChat and Alipay sandboxes and a real SMTP server (STARTTLS and login)
served in-process: jobs are queued by the archive transaction, the worker sends
them, refusals are retried then recorded as failed, opt-outs are honoured,
batch re-send starts a new round, templates are the unit's own."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from clients.alipay import AlipayClient, load_private, load_public
from clients.mail import Mailer
from clients.sms import SmsClient
from clients.wechat import WechatClient
from engine.delivery import Channel, JobStatus, MessageKind, Outcome, Template
from engine.errors import InvalidArgument
from engine.model import PayerInput
from engine.pipeline import Work, finish
from engine.prepare import Prepared, prepare
from engine.validation import validate
from ops.sandboxes.alipay import AlipaySandbox, ensure_keys
from ops.sandboxes.sms import SmsSandbox
from ops.sandboxes.wechat import WechatSandbox
from storage import delivery as store
from storage import delivery_prefs as prefs
from storage.archive import archive
from storage.bills import reserve
from tests.delivery_support import Mailbox, mailbox, provider_pki, serve_app
from tests.factories import RING, bill
from tests.storage.test_reserve import UNIT, setup, unit_catalog, work
from usecases.delivery import Channels, Delivery

OPENID = "oAbCdEfGhIjKlMnOpQrStUvWxYz1"
ALIPAY_USER = "2088000000000042"


@dataclass
class Env:
    delivery: Delivery
    sms: SmsSandbox
    wechat: WechatSandbox
    alipay: AlipaySandbox
    mail: Mailbox


@pytest_asyncio.fixture(scope="module")
async def providers() -> AsyncIterator[tuple[SmsSandbox, WechatSandbox, AlipaySandbox, Mailbox,
                                             Channels]]:  # fmt: skip
    d = Path(tempfile.mkdtemp(prefix="ebill-delivery-"))
    tls, ca = provider_pki(d / "pki")
    keys = ensure_keys(d / "alipay")
    sms = SmsSandbox({"LTAI-test": "sms-secret"}, {"某医院"})
    wechat = WechatSandbox("wx-app", "wx-secret")
    alipay = AlipaySandbox("2021000000000001", keys)
    with (
        serve_app(sms.app(), tls) as sms_url,
        serve_app(wechat.app(), tls) as wechat_url,
        serve_app(alipay.app(), tls) as alipay_url,
        mailbox(tls) as (box, port),
    ):
        channels = Channels(
            sms=SmsClient(sms_url, "LTAI-test", "sms-secret", "某医院", ca_file=ca),
            mail=Mailer("127.0.0.1", port, "ebill@hospital.test", 5, starttls=True,
                        ca_file=ca, username=box.user, password=box.password),
            wechat=WechatClient(wechat_url, "wx-app", "wx-secret", ca_file=ca),
            alipay=AlipayClient(alipay_url, "2021000000000001", load_private(keys / "app.key"),
                                load_public(keys / "alipay.pub"), ca_file=ca),
        )  # fmt: skip
        yield sms, wechat, alipay, box, channels
        await channels.close()


@pytest_asyncio.fixture
async def env(
    db: asyncpg.Pool, providers: tuple[SmsSandbox, WechatSandbox, AlipaySandbox, Mailbox, Channels]
) -> Env:
    sms, wechat, alipay, box, channels = providers
    for r in (sms.recorder, wechat.recorder, alipay.recorder):
        r.messages.clear()
    box.messages.clear()
    box.refuse = (0, 0)
    await setup(db, numbers=50)
    delivery = Delivery(db, channels, RING, public_url="https://bills.test", max_attempts=3)
    return Env(delivery, sms, wechat, alipay, box)


def prepared(seq: int, **payer: str) -> Prepared:
    b = replace(bill(seq), unit_code=UNIT)
    b = replace(b, payer=replace(b.payer, **payer))
    return prepare(validate(b, unit_catalog()))


async def issue(db: asyncpg.Pool, *ps: Prepared) -> list[Work]:
    reserved = await reserve(db, list(enumerate(ps)), ring=RING)
    works = [work(reserved[i]) for i in range(len(ps))]
    done = [finish(replace(w, unit_signature=b"u", fiscal_signature=b"f")) for w in works]
    await archive(db, done)
    return done


async def jobs(db: asyncpg.Pool, w: Work) -> dict[str, asyncpg.Record]:
    await store.expand(db, RING, 1000)
    rows = await db.fetch("SELECT * FROM delivery_jobs WHERE bill_id = $1", w.bill_id)
    return {r["channel"]: r for r in rows}


async def due_now(db: asyncpg.Pool) -> None:
    await db.execute("UPDATE delivery_jobs SET next_attempt_at = now() WHERE status = 'pending'")


async def test_archive_queues_a_job_per_channel_and_the_worker_sends_them(env: Env) -> None:
    db = env.delivery.pool
    await env.delivery.bind_account(UNIT, "C00000701", Channel.WECHAT, OPENID)
    await env.delivery.bind_account(UNIT, "C00000701", Channel.ALIPAY, ALIPAY_USER)
    [w] = await issue(db, prepared(701, tel="8613900000701", email="Patient@Example.com",
                                   card_no="C00000701"))  # fmt: skip
    assert set(await jobs(db, w)) == {"sms", "email", "wechat", "alipay"}
    # Archived twice (a replay): still one job per channel.
    await archive(db, [w])
    assert len(await jobs(db, w)) == 4
    assert await env.delivery.drain() == 4
    assert {r["status"] for r in (await jobs(db, w)).values()} == {"sent"}

    [sms] = env.sms.recorder.messages
    assert sms.to == "13900000701" and sms.template == "SMS_EBILL"
    assert f"{w.bill_code}-{w.bill_no}" in sms.text
    assert f"https://bills.test/bill/{w.bill_code}/{w.bill_no}?c={w.check_code}" in sms.text
    [mail] = env.mail.messages
    assert mail["To"] == "Patient@example.com" and env.mail.logins
    assert w.bill_no in str(mail["Subject"])
    assert f"?c={w.check_code}" in mail.get_content()
    [wx] = env.wechat.recorder.messages
    assert wx.to == OPENID and wx.params["no"] == w.bill_no
    assert wx.extra["url"].endswith(f"?c={w.check_code}")
    [ali] = env.alipay.recorder.messages
    assert ali.to == ALIPAY_USER and ali.params["payer"].endswith("*")

    status = await env.delivery.status(w.bill_code, w.bill_no)
    by = {j.channel: j for j in status.jobs}
    assert by[Channel.SMS].provider_id == sms.message_id
    assert by[Channel.SMS].history[0].address == "139****0701"
    assert by[Channel.WECHAT].history[0].outcome is Outcome.SENT
    # The pass is a transparency-log leaf committing to the four messages.
    leaf = await db.fetchrow(
        "SELECT * FROM log_entries WHERE op = 'delivery.sent' ORDER BY id DESC LIMIT 1"
    )
    assert leaf is not None and leaf["ref"] == "4 messages" and leaf["unit_code"] == UNIT


async def test_a_red_bill_is_delivered_with_the_red_template(env: Env) -> None:
    db = env.delivery.pool
    from tests.storage.test_red_refused import red_flush

    [original] = await issue(db, prepared(702))
    red = await red_flush(db, original, "RED-702")
    await archive(db, [finish(replace(red, unit_signature=b"u", fiscal_signature=b"f"))])
    await env.delivery.drain()
    texts = {m.template: m.text for m in env.sms.recorder.messages}
    assert set(texts) == {"SMS_EBILL", "SMS_EBILL_RED"}
    assert red.bill_no in texts["SMS_EBILL_RED"] and "冲红" in texts["SMS_EBILL_RED"]


async def test_refusals_are_retried_then_recorded_as_failed(env: Env) -> None:
    db = env.delivery.pool
    env.sms.recorder._fail, env.sms.recorder._fail_status = 100, 503  # provider down
    [w] = await issue(db, prepared(703))
    for _ in range(3):
        await due_now(db)
        await env.delivery.drain()
    job = (await jobs(db, w))["sms"]
    assert job["status"] == JobStatus.FAILED and job["attempts"] == 3
    [view] = (await env.delivery.status(w.bill_code, w.bill_no)).jobs
    assert [a.outcome for a in view.history] == [Outcome.RETRY, Outcome.RETRY, Outcome.FAILED]
    assert "503" in view.last_error
    env.sms.recorder._fail = 0
    # Re-sent by the operator: a new round, sent.
    assert await env.delivery.resend(w.bill_code, w.bill_no, [], "op-1") == 1
    await env.delivery.drain()
    assert (await jobs(db, w))["sms"]["status"] == JobStatus.SENT


async def test_a_refusal_for_good_is_not_retried(env: Env) -> None:
    db = env.delivery.pool
    # A unit template naming a template the provider never registered.
    await env.delivery.set_template(
        UNIT, Template(Channel.SMS, MessageKind.ISSUED, "SMS_UNKNOWN", "", "x {{ url }}",
                       {"url": "{{ url }}"}), "op-1")  # fmt: skip
    [w] = await issue(db, prepared(704))
    await env.delivery.drain()
    job = (await jobs(db, w))["sms"]
    assert job["status"] == JobStatus.FAILED and job["attempts"] == 1
    assert job["last_error"].startswith("isv.SMS_TEMPLATE_ILLEGAL")
    # A bad signature is refused for good as well.
    env.delivery.channels.sms._secret = "wrong"  # type: ignore[union-attr]
    try:
        await env.delivery.reset_template(UNIT, Channel.SMS, MessageKind.ISSUED, "op-1")
        [w2] = await issue(db, prepared(705))
        await env.delivery.drain()
        assert (await jobs(db, w2))["sms"]["last_error"].startswith("SignatureDoesNotMatch")
    finally:
        env.delivery.channels.sms._secret = "sms-secret"  # type: ignore[union-attr]


async def test_a_landline_is_skipped_and_an_opt_out_respected(env: Env) -> None:
    db = env.delivery.pool
    await env.delivery.opt_out(UNIT, Channel.SMS, "138 0000 0707", "window-3")
    with pytest.raises(InvalidArgument):
        await env.delivery.opt_out(UNIT, Channel.SMS, "not a phone", "window-3")
    [land, out, ok] = await issue(
        db, prepared(706, tel="07597750000"), prepared(707, tel="13800000707"),
        prepared(708, tel="13800000708"),
    )  # fmt: skip
    await env.delivery.drain()
    assert (await jobs(db, land))["sms"]["last_error"] == "no usable address"
    assert (await jobs(db, out))["sms"]["status"] == JobStatus.SKIPPED
    assert (await jobs(db, out))["sms"]["last_error"] == "opted out"
    assert [m.to for m in env.sms.recorder.messages] == ["13800000708"]
    # Delivery's own tables hold no phone in clear (keyed digests, masked addresses).
    for table in ("delivery_optouts", "delivery_jobs", "delivery_attempts"):
        dump = str(await db.fetch(f"SELECT * FROM {table}"))
        assert "0000070" not in dump, table
    assert ok.bill_id


async def test_batch_resend_by_status_and_point(env: Env) -> None:
    db = env.delivery.pool
    env.sms.recorder._down = True
    try:
        ws = await issue(db, *(prepared(710 + i) for i in range(4)))
        for _ in range(3):
            await due_now(db)
            await env.delivery.drain()
    finally:
        env.sms.recorder._down = False
    assert [(await jobs(db, w))["sms"]["status"] for w in ws] == ["failed"] * 4
    place = ws[0].place_code
    assert await env.delivery.resend_batch(UNIT, "op", place_code="nowhere") == 0
    n = await env.delivery.resend_batch(UNIT, "op", place_code=place, statuses=[JobStatus.FAILED])
    assert n == 4
    await env.delivery.drain()
    assert len(env.sms.recorder.messages) == 4


async def test_email_5xx_fails_at_once_4xx_is_retried(env: Env) -> None:
    db = env.delivery.pool
    env.mail.refuse = (451, 1)
    [w] = await issue(db, prepared(720, email="a@b.example"))
    await env.delivery.drain()
    assert (await jobs(db, w))["email"]["status"] == JobStatus.PENDING
    await due_now(db)
    await env.delivery.drain()
    assert (await jobs(db, w))["email"]["status"] == JobStatus.SENT
    env.mail.refuse = (550, 1)
    [w2] = await issue(db, prepared(721, email="c@d.example"))
    await env.delivery.drain()
    assert (await jobs(db, w2))["email"]["status"] == JobStatus.FAILED


async def test_a_unit_can_turn_delivery_off(env: Env) -> None:
    db = env.delivery.pool
    await prefs.set_unit_enabled(db, UNIT, False)
    [w] = await issue(db, prepared(730))
    assert await jobs(db, w) == {}
    await prefs.set_unit_enabled(db, UNIT, True)
    [w] = await issue(db, prepared(731))
    assert set(await jobs(db, w)) == {"sms"}


async def test_templates_are_checked_before_they_are_stored(env: Env) -> None:
    bad = Template(Channel.EMAIL, MessageKind.ISSUED, "", "票据", "{{ nosuch }}")
    with pytest.raises(InvalidArgument) as e:
        await env.delivery.set_template(UNIT, bad, "op")
    assert e.value.field == "template.body"
    escape = replace(bad, body="{{ ''.__class__.__mro__ }}")
    with pytest.raises(InvalidArgument):
        await env.delivery.set_template(UNIT, escape, "op")
    mine = replace(bad, body="{{ payer_name | mask_name }} 您的票据 {{ bill_no }} {{ url }}")
    await env.delivery.set_template(UNIT, mine, "op")
    t, default = await env.delivery.template(UNIT, Channel.EMAIL, MessageKind.ISSUED)
    assert not default and t.body == mine.body
    [w] = await issue(env.delivery.pool, prepared(740, email="x@y.example"))
    await env.delivery.drain()
    [m] = env.mail.messages
    assert m.get_content().strip().endswith(f"?c={w.check_code}")
    assert "*" in m.get_content()


async def test_claims_do_not_overlap(env: Env) -> None:
    db = env.delivery.pool
    await issue(db, *(prepared(750 + i) for i in range(3)))
    await store.expand(db, RING, 100)
    first = await store.claim_due(db, RING, 10, timedelta(seconds=60))
    again = await store.claim_due(db, RING, 10, timedelta(seconds=60))
    assert len(first) == 3 and again == []
    _ = PayerInput


async def test_delivery_waits_while_issuance_works(env: Env) -> None:
    db = env.delivery.pool
    await issue(db, *(prepared(760 + i) for i in range(3)))
    busy = replace_delivery(env.delivery, idle_for=lambda: 0.0, max_defer_s=3600, trickle=1)
    assert await busy.run_once() == 0  # issuance at work, nothing waited long
    assert env.sms.recorder.messages == []
    # Something waited longer than the bound: it trickles out, one at a time.
    busy.max_defer_s = 0
    assert await busy.run_once() == 2  # one bill taken in, one message sent
    assert len(env.sms.recorder.messages) == 1
    # Issuance quiet: the rest goes.
    busy.idle_for = lambda: 10.0
    await busy.run_once()
    assert len(env.sms.recorder.messages) == 3


def replace_delivery(d: Delivery, **kw: object) -> Delivery:
    out = Delivery(d.pool, d.channels, d.ring, public_url=d.public_url, max_attempts=3)
    for k, v in kw.items():
        setattr(out, k, v)
    return out
