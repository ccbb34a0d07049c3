"""Self-service retrieval pages (issue #15, item 5), mounted by the engine's HTTP
app (ebill/http/app.py lists this module): the unit's QR code at the window
opens ``/selfservice/{unit_code}``.

1. the patient enters his phone or ID card number -> an SMS code is sent;
2. he enters the code -> a session cookie (HttpOnly, Secure, SameSite=Strict,
   path /selfservice, 15 minutes);
3. he sees his bills of that unit, each linked to its H5 page.

The edge only translates: usecases.selfservice.SelfService decides. Errors are
shown on the page with the HTTP status of the error tree (400, 403, 429 with
Retry-After, 503).
"""

from __future__ import annotations

import html
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from engine.errors import (
    EbillError,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from engine.model import CST
from engine.money import format_fen
from usecases.selfservice import Lookup, SelfService

__all__ = ["COOKIE", "SelfServiceServices", "routes"]

COOKIE = "ebill_selfservice"
_STATUS = {InvalidArgument: 400, PermissionDenied: 403, ResourceExhausted: 429, Unavailable: 503}
_MAX_FIELD = 64
# What a patient reads for the use case's errors (its messages are for logs and
# API clients); keyed by the message's start, the rest falls back to the message.
_TEXTS = (
    ("value: not a mobile number", "请输入正确的手机号码"),
    ("value: not an ID card number", "请输入正确的身份证号码"),
    ("value: is required", "请输入手机号码或身份证号码"),
    ("too many codes from this address", "请求过于频繁，请稍后再试"),
    ("a code was sent less than a minute ago", "验证码已发送，请一分钟后再获取"),
    ("too many codes for this phone", "该手机号获取验证码次数过多，请一小时后再试"),
    ("code: expired or not requested", "验证码已过期或未获取，请重新获取"),
    ("code: too many wrong tries", "验证码错误次数过多，请重新获取"),
    ("code: wrong code", "验证码错误，请重新输入"),
    ("session expired", "查询已过期，请重新获取验证码"),
    ("SMS is not configured", "短信服务暂不可用，请稍后再试"),
    ("the code could not be sent", "验证码发送失败，请稍后再试"),
)


class SelfServiceServices(Protocol):
    """What the routes need: the self-service use case (the gateway's Services
    carries it in ``extra["selfservice"]`` until it has a member of its own)."""

    @property
    def extra(self) -> dict[str, Any]: ...


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    doc = (
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;max-width:32rem;margin:1rem auto;padding:0 1rem}"
        "input,button{font-size:1.1rem;padding:.5rem;width:100%;box-sizing:border-box;"
        "margin:.3rem 0}li{margin:.6rem 0}.err{color:#b00}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(doc, status_code=status, headers={"Cache-Control": "no-store"})


def _field(form: Any, name: str) -> str:
    value = str(form.get(name, ""))
    if len(value) > _MAX_FIELD or not value.isprintable():
        raise InvalidArgument(f"{name}: too long or holds a control character", field=name)
    return value


def _kind(value: str) -> Lookup:
    try:
        return Lookup(value)
    except ValueError:
        raise InvalidArgument("kind: tel or id_card", field="kind") from None


def _start_form(unit: str, message: str = "") -> str:
    u = html.escape(unit)
    err = f"<p class='err' role='alert'>{html.escape(message)}</p>" if message else ""
    return (
        f"{err}<form method='post' action='/selfservice/{u}/code'>"
        "<label><input type='radio' name='kind' value='tel' checked> 手机号</label> "
        "<label><input type='radio' name='kind' value='id_card'> 身份证号</label>"
        "<input name='value' id='value' autocomplete='off' placeholder='手机号或身份证号' required>"
        "<button type='submit' id='send'>获取验证码</button></form>"
    )


def _code_form(unit: str, kind: str, value: str, note: str, message: str = "") -> str:
    u, k, v = html.escape(unit), html.escape(kind), html.escape(value)
    err = f"<p class='err' role='alert'>{html.escape(message)}</p>" if message else ""
    return (
        f"<p id='sent'>{html.escape(note)}</p>{err}"
        f"<form method='post' action='/selfservice/{u}/verify'>"
        f"<input type='hidden' name='kind' value='{k}'>"
        f"<input type='hidden' name='value' value='{v}'>"
        "<input name='code' id='code' inputmode='numeric' autocomplete='one-time-code' "
        "placeholder='6 位验证码' required>"
        "<button type='submit' id='verify'>查询票据</button></form>"
    )


def _text(exc: EbillError) -> str:
    return next((t for start, t in _TEXTS if exc.message.startswith(start)), exc.message)


def _error(exc: EbillError, title: str, body: str) -> HTMLResponse:
    status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 400)
    resp = _page(title, body, status)
    if exc.retry_after_s:
        resp.headers["Retry-After"] = str(int(exc.retry_after_s))
    return resp


def _client_ip(request: Request) -> str:
    # The peer as the server sees it; a deployment behind a proxy has uvicorn
    # take X-Forwarded-For from trusted proxies only (--forwarded-allow-ips).
    return request.client.host if request.client else "unknown"


def routes(services: SelfServiceServices | SelfService) -> list[BaseRoute]:
    ss = services if isinstance(services, SelfService) else services.extra["selfservice"]
    assert isinstance(ss, SelfService)

    async def start(request: Request) -> Response:
        unit = request.path_params["unit_code"]
        try:
            name = await ss.unit_name(unit)
        except EbillError:
            return _page("查无此单位", "<p>二维码所指的单位不存在。</p>", 404)
        return _page(f"{name} 电子票据查询", _start_form(unit))

    async def code(request: Request) -> Response:
        unit = request.path_params["unit_code"]
        form = await request.form()
        try:
            name = await ss.unit_name(unit)
            kind, value = _kind(_field(form, "kind")), _field(form, "value")
            note = await ss.request_code(unit, kind, value, _client_ip(request))
        except EbillError as exc:
            return _error(exc, "电子票据查询", _start_form(unit, _text(exc)))
        return _page(f"{name} 电子票据查询", _code_form(unit, kind.value, value, note))

    async def verify(request: Request) -> Response:
        unit = request.path_params["unit_code"]
        form = await request.form()
        kind_text, value = str(form.get("kind", "")), str(form.get("value", ""))
        try:
            kind, value = _kind(_field(form, "kind")), _field(form, "value")
            token = await ss.verify(unit, kind, value, _field(form, "code"))
        except EbillError as exc:
            body = _code_form(unit, kind_text, value[:_MAX_FIELD], "", _text(exc))
            return _error(exc, "电子票据查询", body)
        resp = RedirectResponse(f"/selfservice/{unit}/bills", status_code=303)
        resp.set_cookie(
            COOKIE, token, max_age=int(ss.limits.session_ttl.total_seconds()),
            path="/selfservice", secure=True, httponly=True, samesite="strict",
        )  # fmt: skip
        return resp

    async def bills(request: Request) -> Response:
        unit = request.path_params["unit_code"]
        try:
            name = await ss.unit_name(unit)
            found = await ss.bills(unit, request.cookies.get(COOKIE, ""))
        except EbillError as exc:
            return _error(exc, "电子票据查询", _start_form(unit, _text(exc)))
        if not found:
            return _page(f"{name} 我的票据", "<p id='none'>没有找到您的电子票据。</p>")
        # Dated as the bills are, in China Standard Time days (a UTC date is a
        # day behind there before 08:00).
        items = "".join(
            f"<li class='bill'><a href='{html.escape(b.url)}'>{b.bill_code}-{b.bill_no}</a>"
            f" {b.issued_at.astimezone(CST):%Y-%m-%d} ￥{format_fen(b.total_fen)}"
            f"{' （红字）' if b.red else ''}{' （已冲红）' if b.status == 'red_flushed' else ''}"
            "</li>"
            for b in found
        )
        return _page(f"{name} 我的票据", f"<ul id='bills'>{items}</ul>")

    return [
        Route("/selfservice/{unit_code:str}", start, methods=["GET"]),
        Route("/selfservice/{unit_code:str}/code", code, methods=["POST"]),
        Route("/selfservice/{unit_code:str}/verify", verify, methods=["POST"]),
        Route("/selfservice/{unit_code:str}/bills", bills, methods=["GET"]),
    ]
