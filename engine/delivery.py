"""Delivery of archived bills to the payer: channels, job statuses, templates,
addresses and the retry schedule (issue #15, item 3). Pure: no I/O.

A template is Jinja2 text rendered in a sandboxed environment (a unit's staff
edit them; a template must not reach Python objects), with StrictUndefined so a
misspelt variable is refused when the template is saved, not when a patient
should have had his bill.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from jinja2 import StrictUndefined, TemplateError
from jinja2 import Template as Template_
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from engine.errors import InvalidArgument
from engine.money import format_fen

__all__ = [
    "BILL_PATH",
    "CHECK_PARAM",
    "DEFAULT_TEMPLATES",
    "MAX_RENDERED",
    "Attempt",
    "Channel",
    "DeliveryBill",
    "Job",
    "JobStatus",
    "Message",
    "MessageKind",
    "Outcome",
    "Template",
    "backoff_s",
    "bill_path",
    "bill_url",
    "check_template",
    "mask_address",
    "mask_name",
    "normalise_address",
    "normalise_phone",
    "render",
]


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"
    WECHAT = "wechat"
    ALIPAY = "alipay"


class JobStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    # Retries exhausted, or refused for good (bad number, unknown template).
    FAILED = "failed"
    # Not sent on purpose: the payer opted out, or the address is unusable.
    SKIPPED = "skipped"


class Outcome(StrEnum):
    """What one try gave (a row of the attempt history)."""

    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    SKIPPED = "skipped"


class MessageKind(StrEnum):
    ISSUED = "issued"
    # A red bill (红字票据): tells the payer his bill was cancelled.
    RED = "red"


@dataclass(frozen=True, slots=True)
class DeliveryBill:
    """What a message says about a bill, and where it goes."""

    bill_id: int
    unit_code: str
    unit_name: str
    place_code: str
    bill_code: str
    bill_no: str
    check_code: str
    total_fen: int
    issued_at: datetime
    payer_name: str
    tel: str = ""
    email: str = ""
    wechat: str = ""
    alipay: str = ""
    # For a red bill: "<bill_code>/<bill_no>" of the bill it cancels.
    red_of: str = ""

    @property
    def kind(self) -> MessageKind:
        return MessageKind.RED if self.red_of else MessageKind.ISSUED

    def address(self, channel: Channel) -> str:
        return {
            Channel.SMS: self.tel,
            Channel.EMAIL: self.email,
            Channel.WECHAT: self.wechat,
            Channel.ALIPAY: self.alipay,
        }[channel]


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed delivery job with the bill it delivers."""

    id: int
    channel: Channel
    attempts: int
    bill: DeliveryBill


@dataclass(frozen=True, slots=True)
class Attempt:
    """One row of a job's history."""

    at: datetime
    outcome: Outcome
    provider_id: str
    error: str
    address: str


@dataclass(frozen=True, slots=True)
class Template:
    """A channel's message for a kind of bill.

    Email uses ``subject`` and ``body``. SMS, WeChat and Alipay send the
    provider's registered template ``provider_template`` filled with ``params``
    (name -> Jinja2 text); ``body`` is what the message reads as, kept in the
    history and shown to staff.
    """

    channel: Channel
    kind: MessageKind
    provider_template: str
    subject: str
    body: str
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered message, ready for a channel's client."""

    channel: Channel
    to: str
    provider_template: str
    subject: str
    body: str
    params: Mapping[str, str]
    url: str


def _defaults() -> dict[tuple[Channel, MessageKind], Template]:
    issued = (
        "{{ unit_name }}为您开具了电子票据：{{ bill_code }}-{{ bill_no }}，金额{{ amount }}元。"
    )
    red = (
        "{{ unit_name }}已冲红您的电子票据 {{ original }}，红字票据 {{ bill_code }}-{{ bill_no }}。"
    )
    view = "查看：{{ url }}"
    params = {
        "unit": "{{ unit_name }}",
        "code": "{{ bill_code }}",
        "no": "{{ bill_no }}",
        "amount": "{{ amount }}",
        "url": "{{ url }}",
    }
    out: dict[tuple[Channel, MessageKind], Template] = {}
    for kind, text, subject in (
        (MessageKind.ISSUED, issued, "【{{ unit_name }}】电子票据 {{ bill_code }}-{{ bill_no }}"),
        (MessageKind.RED, red, "【{{ unit_name }}】票据冲红 {{ bill_code }}-{{ bill_no }}"),
    ):
        suffix = "_RED" if kind is MessageKind.RED else ""
        out[Channel.EMAIL, kind] = Template(
            Channel.EMAIL,
            kind,
            "",
            subject,
            "{{ payer_name }}，您好：\n\n" + text + "\n校验码：{{ check_code }}\n" + view + "\n",
        )
        out[Channel.SMS, kind] = Template(
            Channel.SMS,
            kind,
            "SMS_EBILL" + suffix,
            "",
            text + view,
            MappingProxyType(dict(params)),
        )
        for ch, tid in ((Channel.WECHAT, "EBILL_NOTICE"), (Channel.ALIPAY, "EBILL_CARD")):
            out[ch, kind] = Template(
                ch,
                kind,
                tid + suffix,
                subject,
                text,
                MappingProxyType(dict(params, payer="{{ payer_name | mask_name }}")),
            )
    return out


DEFAULT_TEMPLATES: Mapping[tuple[Channel, MessageKind], Template] = MappingProxyType(_defaults())


def mask_name(name: str) -> str:
    """张三 -> 张*, 欧阳娜娜 -> 欧***: the family name is enough to recognise."""
    return name[:1] + "*" * (len(name) - 1) if name else ""


def mask_address(channel: Channel, address: str) -> str:
    if channel is Channel.SMS and len(address) >= 7:
        return address[:3] + "****" + address[-4:]
    if channel is Channel.EMAIL and "@" in address:
        local, _, domain = address.partition("@")
        return local[:1] + "***@" + domain
    return address[:4] + "***" if address else ""


_PHONE = re.compile(r"1[3-9]\d{9}")


def normalise_phone(raw: str) -> str | None:
    """A mainland mobile number as providers take it (11 digits), or None: spaces,
    dashes and a +86/0086 prefix are dropped; landlines cannot receive SMS."""
    digits = re.sub(r"[\s\-()]", "", raw)
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and len(digits) == 11 + len(prefix):
            digits = digits[len(prefix) :]
            break
    return digits if _PHONE.fullmatch(digits) else None


_EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,}")


def normalise_address(channel: Channel, raw: str) -> str | None:
    """The address a channel sends to, normalised (opt-outs match on it), or None."""
    raw = raw.strip()
    if channel is Channel.SMS:
        return normalise_phone(raw)
    if channel is Channel.EMAIL:
        if not _EMAIL.fullmatch(raw):
            return None
        # The domain is case-insensitive; the local part is the recipient's own.
        local, _, domain = raw.rpartition("@")
        return f"{local}@{domain.lower()}"
    return raw if 0 < len(raw) <= 128 and raw.isprintable() and " " not in raw else None


# The bill's public H5 page: the one template of its path, which the route of
# ebill/http/public.py is declared from (its PDF and notice slip hang below it;
# ``:str`` is the route's segment type), and the query parameter carrying the
# check code. Links are built by bill_url.
BILL_PATH = "/bill/{bill_code:str}/{bill_no:str}"
CHECK_PARAM = "c"
_SEGMENT = re.compile(r"\{(\w+):str\}")


def bill_path(bill_code: str, bill_no: str) -> str:
    """The H5 page's path for one bill (the PDF is this plus ``.pdf``)."""
    values = {"bill_code": quote(bill_code, safe=""), "bill_no": quote(bill_no, safe="")}
    return _SEGMENT.sub(lambda m: values[m[1]], BILL_PATH)


def bill_url(base: str, bill_code: str, bill_no: str, check_code: str) -> str:
    """The bill's public H5 page under ``base`` (EBILL_PUBLIC_URL; "" for a link
    relative to the public pages' own host)."""
    query = f"{CHECK_PARAM}={quote(check_code, safe='')}"
    return f"{base.rstrip('/')}{bill_path(bill_code, bill_no)}?{query}"


def backoff_s(attempts: int) -> float:
    """Wait before try ``attempts + 1``: 5 s, 10 s, 20 s ... at most 10 minutes."""
    return float(min(600, 5 * 2 ** max(0, attempts - 1)))


# Longest text a template may produce (a message is short; a bigger one is a mistake).
MAX_RENDERED = 10_000


class _Env(SandboxedEnvironment):
    """The sandbox already bars attribute tricks and huge ranges; ``*`` and ``**``
    are checked too, so ``'x' * 10**9`` cannot eat the engine's memory."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            raise SecurityError("** is not allowed in templates")
        if (
            isinstance(left, str | list)
            and isinstance(right, int)
            and len(left) * right > MAX_RENDERED
        ):
            raise SecurityError("result too long")
        if (
            isinstance(right, str | list)
            and isinstance(left, int)
            and len(right) * left > MAX_RENDERED
        ):
            raise SecurityError("result too long")
        return super().call_binop(context, operator, left, right)


_ENV = _Env(undefined=StrictUndefined, autoescape=False)
_ENV.filters["mask_name"] = mask_name


def _context(bill: DeliveryBill, url: str) -> dict[str, Any]:
    return {
        "unit_name": bill.unit_name,
        "payer_name": bill.payer_name,
        "bill_code": bill.bill_code,
        "bill_no": bill.bill_no,
        "check_code": bill.check_code,
        # A red bill's amount is negative; the message speaks of its size.
        "amount": format_fen(abs(bill.total_fen)),
        "issued_date": bill.issued_at.strftime("%Y-%m-%d"),
        "url": url,
        "red": bool(bill.red_of),
        "original": bill.red_of.replace("/", "-"),
    }


@functools.lru_cache(maxsize=256)
def _compiled(text: str) -> Template_:
    """Templates are few and rendered for every message: compile each once."""
    return _ENV.from_string(text)


def _render_text(text: str, ctx: Mapping[str, Any]) -> str:
    """Render one text; any failure of a template (syntax, unknown name, a
    sandbox refusal, a range too big) is a TemplateError."""
    try:
        out = _compiled(text).render(ctx)
    except TemplateError:
        raise
    except (ArithmeticError, ValueError, TypeError, LookupError, MemoryError) as exc:
        raise TemplateError(f"{type(exc).__name__}: {exc}") from exc
    if len(out) > MAX_RENDERED:
        raise TemplateError(f"renders to more than {MAX_RENDERED} characters")
    return out


def render(template: Template, bill: DeliveryBill, to: str, url: str) -> Message:
    """Fill ``template`` for ``bill``; raises jinja2.TemplateError on a bad one."""
    ctx = _context(bill, url)
    return Message(
        channel=template.channel,
        to=to,
        provider_template=template.provider_template,
        subject=_render_text(template.subject, ctx),
        body=_render_text(template.body, ctx),
        params={k: _render_text(v, ctx) for k, v in template.params.items()},
        url=url,
    )


_SAMPLE = DeliveryBill(
    bill_id=0,
    unit_code="0",
    unit_name="示例医院",
    place_code="001",
    bill_code="44060119",
    bill_no="0000000001",
    check_code="a1b2c3",
    total_fen=12345,
    issued_at=datetime(2026, 1, 1),
    payer_name="张三",
    red_of="44060119/0000000000",
)


_PARAM_NAME = re.compile(r"[A-Za-z0-9_]{1,32}")


def _bad(path: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"{path}: {message}", field=path)


def check_template(template: Template) -> None:
    """Refuse a template that does not render (syntax, unknown variable, a
    sandbox violation), naming the field, before it is stored."""
    if template.channel is not Channel.EMAIL and not template.provider_template:
        raise _bad("template.provider_template", "required for this channel")
    if template.channel is Channel.EMAIL and not template.subject.strip():
        raise _bad("template.subject", "required for email")
    if not template.body.strip():
        raise _bad("template.body", "required")
    if len(template.params) > 20:
        raise _bad("template.params", "at most 20 parameters")
    for k, v in template.params.items():
        if not _PARAM_NAME.fullmatch(k):
            raise _bad("template.params", "a parameter name must be 1-32 letters, digits or _")
        if not v.isprintable():
            raise _bad(f"template.params.{k}", "holds a control character")
    if not template.subject.isprintable():
        raise _bad("template.subject", "holds a control character")
    ctx = _context(_SAMPLE, "https://example/public")
    texts = [("subject", template.subject), ("body", template.body)]
    texts += [(f"params.{k}", v) for k, v in template.params.items()]
    for path, text in texts:
        if len(text) > 4000:
            raise _bad(f"template.{path}", "longer than 4000 characters")
        try:
            _render_text(text, ctx)
        except TemplateError as exc:
            raise _bad(f"template.{path}", str(exc)[:200]) from exc
