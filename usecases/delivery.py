"""Delivery of archived bills to payers (issue #15, item 3): the worker that
drains the delivery outbox, and the management operations.

The archive transaction queues one job per bill and channel (storage.delivery);
issuance never waits for a provider. The worker claims due jobs with a lease (so
engines sharing the database never send one job side by side), renders each
unit's template, sends on the channel's client with a bounded concurrency, and
records each try in one transaction per pass. A refusal that may pass
(unreachable, 5xx, throttling) is retried with backoff up to
``max_attempts``; one that cannot (bad number, unknown template, bad signature)
fails at once. Opted-out addresses are skipped.

Delivery is at-least-once: a provider's "accepted" cannot commit with our
record, so an engine killed between the two sends that job again after the lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import asyncpg
from jinja2 import TemplateError

from clients._http import ChannelError
from clients.alipay import AlipayClient
from clients.mail import Mailer, MailError
from clients.sms import SmsClient
from clients.wechat import WechatClient
from engine.delivery import (
    DEFAULT_TEMPLATES,
    Channel,
    Job,
    JobStatus,
    Message,
    MessageKind,
    Outcome,
    Template,
    backoff_s,
    bill_url,
    check_template,
    mask_address,
    normalise_address,
    render,
)
from engine.errors import InvalidArgument, NotFound
from engine.sealing import KeyRing
from ops import metrics
from storage import delivery as store
from storage import delivery_prefs as prefs
from storage.delivery import JobView, Result

__all__ = ["BillDelivery", "Channels", "Delivery", "delivery_loop"]

log = logging.getLogger(__name__)

# Who sends: this engine process, for the transparency log and the logs.
WORKER_ID = f"delivery@{socket.gethostname()}:{os.getpid()}"


@dataclass
class Channels:
    """The configured channel clients; None: that channel is off. The clients are
    the engine's own (ebill/wiring.py opens and closes them once)."""

    sms: SmsClient | None = None
    mail: Mailer | None = None
    wechat: WechatClient | None = None
    alipay: AlipayClient | None = None

    def configured(self, channel: Channel) -> bool:
        if channel is Channel.EMAIL:
            return self.mail is not None and self.mail.enabled
        return {Channel.SMS: self.sms, Channel.WECHAT: self.wechat, Channel.ALIPAY: self.alipay}[
            channel
        ] is not None

    async def close(self) -> None:
        for c in (self.sms, self.wechat, self.alipay):
            if c is not None:
                await c.close()

    async def send(self, m: Message) -> str:
        """Send on the message's channel; returns the provider's message id."""
        if m.channel is Channel.SMS:
            assert self.sms is not None
            return await self.sms.send(m.to, m.provider_template, m.params)
        if m.channel is Channel.EMAIL:
            assert self.mail is not None
            return await self.mail.send(m.to, m.subject, m.body)
        if m.channel is Channel.WECHAT:
            assert self.wechat is not None
            return await self.wechat.send_template(m.to, m.provider_template, m.params, m.url)
        assert self.alipay is not None
        return await self.alipay.send_template(m.to, m.provider_template, m.params, m.url)


@dataclass(frozen=True, slots=True)
class BillDelivery:
    """A bill's delivery on every channel it has."""

    bill_code: str
    bill_no: str
    unit_code: str
    place_code: str
    jobs: tuple[JobView, ...]


class Delivery:
    def __init__(
        self,
        pool: asyncpg.Pool,
        channels: Channels,
        ring: KeyRing,
        *,
        public_url: str,
        max_attempts: int = 6,
        batch: int = 100,
        concurrency: int = 16,
        lease: timedelta = timedelta(seconds=120),
        owner: str = WORKER_ID,
        idle_for: Callable[[], float] | None = None,
        quiet_s: float = 1.0,
        max_defer_s: float = 60.0,
        trickle: int = 20,
    ) -> None:
        self.pool = pool
        self.channels = channels
        self.ring = ring
        self.public_url = public_url
        self.max_attempts = max_attempts
        self.batch = batch
        self.lease = lease
        self.owner = owner
        # Issuance first: while it works (``idle_for`` under ``quiet_s``) delivery
        # waits, unless something has waited ``max_defer_s``; then it sends
        # ``trickle`` at a time, so a saturated engine still delivers, slowly.
        self.idle_for = idle_for
        self.quiet_s = quiet_s
        self.max_defer_s = max_defer_s
        self.trickle = trickle
        self._sem = asyncio.Semaphore(concurrency)

    # -- the worker ---------------------------------------------------------

    async def run_once(self) -> int:
        """One pass: archived bills into jobs, then claim due jobs, send them,
        record the outcomes. Returns how many bills and jobs were handled."""
        limit = self.batch
        if self.idle_for is not None and self.idle_for() < self.quiet_s:
            if await store.oldest_wait_s(self.pool) < self.max_defer_s:
                return 0
            limit = self.trickle
        expanded = await store.expand(self.pool, self.ring, limit)
        jobs = await store.claim_due(self.pool, self.ring, limit, self.lease)
        if not jobs:
            return expanded
        addresses = {j.id: normalise_address(j.channel, j.bill.address(j.channel)) for j in jobs}
        out = await prefs.opted_out(
            self.pool,
            self.ring,
            ((j.bill.unit_code, j.channel, a) for j in jobs if (a := addresses[j.id]) is not None),
        )
        templates: dict[str, dict[tuple[Channel, MessageKind], Template]] = {}
        for unit in {j.bill.unit_code for j in jobs}:
            templates[unit] = await prefs.templates_of(self.pool, unit)
        results = await asyncio.gather(
            *(self._one(j, addresses[j.id], out, templates[j.bill.unit_code]) for j in jobs)
        )
        await store.record(self.pool, results, self.owner)
        for r in results:
            metrics.DELIVERIES.labels(r.job.channel.value, r.outcome.value).inc()
        return expanded + len(results)

    async def _one(
        self,
        job: Job,
        address: str | None,
        opted_out: set[tuple[str, Channel, str]],
        templates: dict[tuple[Channel, MessageKind], Template],
    ) -> Result:
        if address is None:
            return Result(job, Outcome.SKIPPED, error="no usable address")
        masked = mask_address(job.channel, address)
        if (job.bill.unit_code, job.channel, address) in opted_out:
            return Result(job, Outcome.SKIPPED, error="opted out", address=masked)
        if not self.channels.configured(job.channel):
            return Result(job, Outcome.SKIPPED, error="channel not configured", address=masked)
        key = (job.channel, job.bill.kind)
        template = templates.get(key) or DEFAULT_TEMPLATES[key]
        b = job.bill
        try:
            message = render(
                template,
                b,
                address,
                bill_url(self.public_url, b.bill_code, b.bill_no, b.check_code),
            )
        except TemplateError as exc:
            return Result(job, Outcome.FAILED, error=f"template: {exc}"[:300], address=masked)
        async with self._sem:
            try:
                provider_id = await self.channels.send(message)
            except ChannelError as exc:
                return self._refused(job, str(exc), exc.retryable, masked)
            except MailError as exc:
                # SMTP 5xx is a refusal for good; 4xx and connection trouble pass.
                code = getattr(exc, "smtp_code", 0)
                permanent = isinstance(code, int) and 500 <= code < 600
                return self._refused(job, f"smtp: {exc}", not permanent, masked)
            except Exception as exc:  # an adapter's own bug must not stop the pass
                log.exception("delivery job %s: unexpected error", job.id)
                return self._refused(job, f"{type(exc).__name__}: {exc}", True, masked)
        return Result(job, Outcome.SENT, provider_id=provider_id, address=masked)

    def _refused(self, job: Job, error: str, retryable: bool, masked: str) -> Result:
        if retryable and job.attempts + 1 < self.max_attempts:
            return Result(job, Outcome.RETRY, error=error[:300], address=masked,
                          retry_in_s=backoff_s(job.attempts + 1))  # fmt: skip
        return Result(job, Outcome.FAILED, error=error[:300], address=masked)

    async def drain(self) -> int:
        """Send everything due now (tests), issuance or not."""
        total = 0
        while n := await self.run_once():
            total += n
        return total

    # -- management ---------------------------------------------------------

    async def _bill(self, bill_code: str, bill_no: str) -> tuple[int, str, str]:
        row = await self.pool.fetchrow(
            "SELECT id, unit_code, place_code FROM bills WHERE bill_code = $1 AND bill_no = $2",
            bill_code,
            bill_no,
        )
        if row is None:
            raise NotFound(f"bill {bill_code}/{bill_no} not found", field="bill")
        return int(row["id"]), str(row["unit_code"]), str(row["place_code"])

    async def status(self, bill_code: str, bill_no: str) -> BillDelivery:
        bill_id, unit, place = await self._bill(bill_code, bill_no)
        jobs = await store.history(self.pool, bill_id)
        return BillDelivery(bill_code, bill_no, unit, place, tuple(jobs))

    async def resend(
        self, bill_code: str, bill_no: str, channels: Sequence[Channel], principal: str
    ) -> int:
        bill_id, _, _ = await self._bill(bill_code, bill_no)
        return await store.resend_bill(self.pool, self.ring, bill_id, channels, principal)

    async def resend_batch(
        self,
        unit_code: str,
        principal: str,
        *,
        day_from: date | None = None,
        day_to: date | None = None,
        place_code: str = "",
        statuses: Sequence[JobStatus] = (),
        channels: Sequence[Channel] = (),
    ) -> int:
        if day_from and day_to and day_from > day_to:
            raise InvalidArgument("day_to: before day_from", field="day_to")
        return await store.resend_batch(
            self.pool, unit_code, principal, day_from=day_from, day_to=day_to,
            place_code=place_code, statuses=statuses, channels=channels,
        )  # fmt: skip

    async def opt_out(
        self, unit_code: str, channel: Channel, address: str, principal: str, *, out: bool = True
    ) -> bool:
        normal = normalise_address(channel, address)
        if normal is None:
            raise InvalidArgument(f"address: not a {channel.value} address", field="address")
        return await prefs.opt_out(
            self.pool, self.ring, unit_code, channel, normal, principal, out=out
        )

    async def template(
        self, unit_code: str, channel: Channel, kind: MessageKind
    ) -> tuple[Template, bool]:
        """The template in force and whether it is the default."""
        own = (await prefs.templates_of(self.pool, unit_code)).get((channel, kind))
        return (own, False) if own else (DEFAULT_TEMPLATES[channel, kind], True)

    async def set_template(self, unit_code: str, template: Template, principal: str) -> None:
        check_template(template)
        await prefs.set_template(
            self.pool, unit_code, template, template.channel, template.kind, principal
        )

    async def reset_template(
        self, unit_code: str, channel: Channel, kind: MessageKind, principal: str
    ) -> None:
        await prefs.set_template(self.pool, unit_code, None, channel, kind, principal)

    async def set_unit_enabled(self, unit_code: str, enabled: bool, principal: str) -> None:
        await prefs.set_unit_enabled(self.pool, unit_code, enabled, principal)

    async def bind_account(
        self, unit_code: str, card_no: str, channel: Channel, account: str
    ) -> None:
        if channel not in (Channel.WECHAT, Channel.ALIPAY):
            raise InvalidArgument("channel: only wechat or alipay accounts bind", field="channel")
        normal = normalise_address(channel, account)
        if normal is None or not card_no:
            raise InvalidArgument("account: required", field="account")
        await prefs.bind_account(self.pool, self.ring, unit_code, card_no, channel, normal)


async def delivery_loop(delivery: Delivery, interval_s: float) -> None:
    """The worker beside issuance: a pass whenever the last one found work, else
    every ``interval_s``. The channels are not closed here: they are shared (the
    self-service SMS codes) and closed once with the engine's clients."""
    while True:
        busy = 0
        try:
            busy = await delivery.run_once()
            metrics.DELIVERY_PENDING.set(await store.pending_count(delivery.pool))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery pass failed")
        if not busy:
            await asyncio.sleep(interval_s)
