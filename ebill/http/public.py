"""Public HTTP pages of a bill (no login): the H5 bill page, the PDF, the notice
slip picture, and verification (查验) as a page and a JSON API.

A bill's own pages need its check code (``?c=``), as printed on the bill and the
slip: the three codes are what a holder has, and a wrong one answers 404 like an
unknown bill. The edge only translates: the use cases are
usecases.rendering.Rendering and usecases.verification.Verification.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

import asyncpg
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from clients.fiscal import FiscalClient
from clients.signer import SignerClient
from config.settings import Settings, read_public_key
from ebill.http.errors import error_response
from engine.delivery import BILL_PATH, CHECK_PARAM, bill_path
from engine.errors import InvalidArgument, NotFound, ResourceExhausted, Unavailable
from engine.sealing import KeyRing
from engine.sm2 import VerifyingKey
from engine.verification import Verdict
from storage.ratelimit import PgCounter
from usecases.rendering import (
    ClientKeys,
    Rendering,
    StoredBills,
    render_verify_page,
    render_widget,
    widget_script,
)
from usecases.verification import Guard, Verification, VerificationResult, VerifyLimits

__all__ = ["Public", "PublicServices", "routes"]

_LABELS = {
    Verdict.VALID: "通过",
    Verdict.INVALID: "未通过（签名无效）",
    Verdict.ABSENT: "无签名",
    Verdict.UNKNOWN: "无法验证（缺少公钥）",
}
_FORM_FIELDS = ("bill_code", "bill_no", "check_code", "qr")
# An uploaded picture: a phone photo is 2-5 MB; larger is refused unread.
_MAX_PICTURE = 8 * 1024 * 1024


class PublicServices(Protocol):
    rendering: Rendering
    verification: Verification


@dataclass(frozen=True, slots=True)
class Public:
    """The use cases behind the public pages, as the engine process builds them
    (the gateway's app passes this, or any object with the same two members,
    to :func:`routes`)."""

    rendering: Rendering
    verification: Verification
    # Who may frame the app widget (CSP frame-ancestors; EBILL_WIDGET_FRAME_ANCESTORS).
    frame_ancestors: str = "*"

    @classmethod
    def create(
        cls,
        pool: asyncpg.Pool,
        fiscal: FiscalClient,
        signer: SignerClient,
        settings: Settings,
        ring: KeyRing,
    ) -> Public:
        pinned = (
            VerifyingKey(read_public_key(settings.fiscal_public_key_file))
            if settings.fiscal_public_key_file
            else None
        )
        rendering = Rendering(
            StoredBills(pool, ring),
            ClientKeys(fiscal, signer, pinned),
            public_url=settings.public_url,
            cache_size=settings.render_cache,
        )
        limits = VerifyLimits(
            per_address=settings.verify_per_minute,
            misses_per_bill=settings.verify_misses_per_hour,
        )
        verification = Verification(rendering, Guard(PgCounter(pool), limits))
        return cls(rendering, verification, settings.widget_frame_ancestors)


def _not_found() -> Response:
    return HTMLResponse("<h1>查无此票</h1><p>票据代码、号码或校验码不符。</p>", status_code=404)


def _wait(exc: ResourceExhausted | Unavailable) -> int:
    # Retry-After takes whole seconds.
    return max(1, round(exc.retry_after_s or 1))


def _refused(exc: ResourceExhausted) -> str:
    return f"查验过于频繁，请 {_wait(exc)} 秒后再试。"


def _too_many(exc: ResourceExhausted) -> Response:
    return HTMLResponse(
        f"<h1>请稍后再试</h1><p id='refused'>{_refused(exc)}</p>",
        status_code=429,
        headers={"Retry-After": str(_wait(exc))},
    )


def _frame_ancestors(services: object) -> str:
    # The engine's Services carry its settings, Public the setting itself; the
    # routes built from in-memory services (tests) let any site frame the widget.
    settings = getattr(services, "settings", None)
    if isinstance(settings, Settings):
        return settings.widget_frame_ancestors
    return str(getattr(services, "frame_ancestors", "*"))


def _client(request: Request) -> str:
    # The peer as the server sees it; behind a proxy uvicorn takes
    # X-Forwarded-For from trusted proxies only (--forwarded-allow-ips).
    return request.client.host if request.client else "unknown"


def routes(services: PublicServices) -> list[BaseRoute]:
    rendering, verification = services.rendering, services.verification
    guard = verification.guard
    ancestors = _frame_ancestors(services)

    def key(request: Request) -> tuple[str, str, str]:
        p = request.path_params
        return p["bill_code"], p["bill_no"], request.query_params.get(CHECK_PARAM, "")

    # A bill's own pages answer a wrong check code like verification does, so
    # their misses count against the bill too (guard.lookup).
    async def bill_page(request: Request) -> Response:
        code, no, check = key(request)
        try:
            return HTMLResponse(await guard.lookup(code, no, lambda: rendering.h5(code, no, check)))
        except NotFound:
            return _not_found()
        except ResourceExhausted as exc:
            return _too_many(exc)

    async def bill_pdf(request: Request) -> Response:
        code, no, check = key(request)
        try:
            pdf = await guard.lookup(code, no, lambda: rendering.pdf(code, no, check))
        except NotFound:
            return _not_found()
        except ResourceExhausted as exc:
            return _too_many(exc)
        return Response(
            pdf,
            media_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="ebill-{code}-{no}.pdf"'},
        )

    async def notice(request: Request) -> Response:
        code, no, check = key(request)
        try:
            png = await guard.lookup(code, no, lambda: rendering.notice(code, no, check))
        except NotFound:
            return _not_found()
        except ResourceExhausted as exc:
            return _too_many(exc)
        return Response(png, media_type="image/png")

    async def check(request: Request, form: dict[str, str]) -> VerificationResult | None:
        """Raises ResourceExhausted past a rate limit (Guard)."""
        if form.get("qr"):
            await guard.address(_client(request))
            return await verification.by_qr(form["qr"])
        if form.get("bill_code") or form.get("bill_no"):
            await guard.address(_client(request))
            return await verification.by_number(
                form.get("bill_code", ""), form.get("bill_no", ""), form.get("check_code", "")
            )
        return None

    def form_of(request: Request) -> dict[str, str]:
        return {k: request.query_params.get(k, "")[:400] for k in _FORM_FIELDS}

    async def verify_page(request: Request) -> Response:
        form = form_of(request)
        try:
            result = await check(request, form)
        except ResourceExhausted as exc:
            html = render_verify_page(
                form=form, result=None, labels=_LABELS, action="verify", problem=_refused(exc)
            )
            return HTMLResponse(html, status_code=429, headers={"Retry-After": str(_wait(exc))})
        html = render_verify_page(form=form, result=result, labels=_LABELS, action="verify")
        return HTMLResponse(html, status_code=200)

    def problem_page(text: str, status: int, retry_after: int | None = None) -> Response:
        html = render_verify_page(form={}, result=None, labels=_LABELS, action="verify",
                                  problem=text)  # fmt: skip
        headers = {"Retry-After": str(retry_after)} if retry_after else None
        return HTMLResponse(html, status_code=status, headers=headers)

    async def verify_picture(request: Request) -> Response:
        """The verification page's upload: a picture holding the bill's QR."""
        size = request.headers.get("content-length", "")
        if not size.isdigit():
            return problem_page("上传失败：缺少长度", 411)
        if int(size) > _MAX_PICTURE:
            return problem_page("图片太大：请上传 8 MB 以内的图片", 413)
        try:
            await guard.address(_client(request))
            async with request.form(max_files=1, max_fields=4) as form:
                upload = form.get("picture")
                if not isinstance(upload, UploadFile):
                    return problem_page("请选择一张二维码图片", 400)
                data = await upload.read(_MAX_PICTURE + 1)
            if len(data) > _MAX_PICTURE:
                return problem_page("图片太大：请上传 8 MB 以内的图片", 413)
            result = await verification.by_picture(data)
        except ResourceExhausted as exc:
            return problem_page(_refused(exc), 429, _wait(exc))
        except InvalidArgument:
            return problem_page("无法读取图片：请上传 PNG 或 JPEG 图片", 400)
        except Unavailable as exc:
            return problem_page("暂时无法识别图片，请稍后再试，或输入票据代码、号码和校验码", 503,
                                _wait(exc))  # fmt: skip
        html = render_verify_page(form={}, result=result, labels=_LABELS, action="verify")
        return HTMLResponse(html, status_code=200)

    async def widget(request: Request) -> Response:
        """The H5 widget for apps: the bill's card, verified, to be framed by an
        app's page (widget.js). Wrong check codes count as on the bill's pages."""
        code, no, check = key(request)
        headers = {
            "Content-Security-Policy": f"frame-ancestors {ancestors}",
            "Cache-Control": "no-store",
        }
        try:
            result = await verification.by_number(code, no, check)
        except ResourceExhausted as exc:
            headers["Retry-After"] = str(_wait(exc))
            return HTMLResponse(render_widget(result=None, problem=_refused(exc)), 429, headers)
        if not result.found or result.view is None:
            return HTMLResponse(render_widget(result=None), 404, headers)
        v = result.view
        path = bill_path(v.bill_code, v.bill_no)
        c = f"{CHECK_PARAM}={quote(v.check_code, safe='')}"
        html = render_widget(result=result, page_url=f"{path}?{c}", pdf_url=f"{path}.pdf?{c}")
        return HTMLResponse(html, 200, headers)

    async def widget_js(request: Request) -> Response:
        return Response(
            widget_script(),
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    async def verify_api(request: Request) -> Response:
        if request.method == "POST":
            try:
                body = await request.json()
            except ValueError:
                return JSONResponse({"error": "body: must be a JSON object"}, status_code=400)
            if not isinstance(body, dict):
                return JSONResponse({"error": "body: must be a JSON object"}, status_code=400)
            form = {k: str(body.get(k, ""))[:400] for k in _FORM_FIELDS}
        else:
            form = form_of(request)
        try:
            result = await check(request, form)
        except ResourceExhausted as exc:
            return error_response(exc)  # 429 with Retry-After
        if result is None:
            return JSONResponse(
                {"error": "bill_code, bill_no and check_code, or qr, are required"},
                status_code=400,
            )
        return JSONResponse(result.to_json(), status_code=200 if result.found else 404)

    return [
        # The H5 page's path is engine.delivery.BILL_PATH, the one bill_url links to.
        Route(f"{BILL_PATH}.pdf", bill_pdf, methods=["GET"]),
        Route(f"{BILL_PATH}/notice.png", notice, methods=["GET"]),
        Route(BILL_PATH, bill_page, methods=["GET"]),
        Route("/verify", verify_page, methods=["GET"]),
        Route("/verify", verify_picture, methods=["POST"]),
        Route("/api/verify", verify_api, methods=["GET", "POST"]),
        Route("/widget/bill/{bill_code:str}/{bill_no:str}", widget, methods=["GET"]),
        Route("/widget.js", widget_js, methods=["GET"]),
    ]
