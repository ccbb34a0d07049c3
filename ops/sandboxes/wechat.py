"""WeChat official account sandbox: a real HTTP(S) server with the token and
template message endpoints of clients/wechat.py, checking what WeChat checks:
the app id and secret (40013, 40125), the access token (40001; tokens expire
after ``expires_in``), the openid's shape (40003), the template id registered
(40037) and its fields present (47003), the link (40039 when over 1024). Accepted
messages are recorded (``GET /sandbox/messages?to=<openid>``).

``POST /sandbox/expire-tokens`` revokes every token (the client must fetch a new
one and carry on).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ops.sandboxes.http_common import Recorded, Recorder, serve_app, tls_for

__all__ = ["TEMPLATES", "WechatSandbox", "main"]

# Registered template ids -> the fields their text uses.
TEMPLATES = {
    "EBILL_NOTICE": ("unit", "payer", "code", "no", "amount"),
    "EBILL_NOTICE_RED": ("unit", "payer", "code", "no", "amount"),
}
_OPENID = re.compile(r"[A-Za-z0-9_-]{28}")
TOKEN_LIFE_S = 7200


def _err(code: int, msg: str) -> Response:
    return JSONResponse({"errcode": code, "errmsg": msg})


class WechatSandbox:
    def __init__(self, app_id: str, app_secret: str) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.recorder = Recorder()
        self.tokens: dict[str, float] = {}
        self.token_fetches = 0

    async def token(self, request: Request) -> Response:
        fault = self.recorder.fault()
        if fault is not None:
            return fault
        q = request.query_params
        if q.get("grant_type") != "client_credential":
            return _err(40002, "invalid grant_type")
        if q.get("appid") != self.app_id:
            return _err(40013, "invalid appid")
        if not secrets.compare_digest(q.get("secret", ""), self.app_secret):
            return _err(40125, "invalid appsecret")
        token = secrets.token_urlsafe(48)
        self.tokens[token] = time.monotonic() + TOKEN_LIFE_S
        self.token_fetches += 1
        return JSONResponse({"access_token": token, "expires_in": TOKEN_LIFE_S})

    async def send(self, request: Request) -> Response:
        fault = self.recorder.fault()
        if fault is not None:
            return fault
        token = request.query_params.get("access_token", "")
        until = self.tokens.get(token)
        if until is None:
            return _err(40001, "invalid credential, access_token is invalid or not latest")
        if time.monotonic() > until:
            return _err(42001, "access_token expired")
        try:
            body: Any = await request.json()
        except ValueError:
            return _err(47001, "data format error")
        if not isinstance(body, dict):
            return _err(47001, "data format error")
        openid = str(body.get("touser", ""))
        if not _OPENID.fullmatch(openid):
            return _err(40003, "invalid openid")
        fields = TEMPLATES.get(str(body.get("template_id", "")))
        if fields is None:
            return _err(40037, "invalid template_id")
        data = body.get("data", {})
        if not isinstance(data, dict):
            return _err(47001, "data format error")
        values = {k: str(v.get("value", "")) for k, v in data.items() if isinstance(v, dict)}
        if any(not values.get(f) for f in fields):
            return _err(47003, "argument invalid! data.value empty")
        url = str(body.get("url", ""))
        if len(url) > 1024:
            return _err(40039, "invalid url size")
        msgid = secrets.randbits(62)
        text = " ".join(f"{f}:{values[f]}" for f in fields)
        self.recorder.add(Recorded(openid, str(body["template_id"]), values, text, str(msgid),
                                   extra={"url": url}))  # fmt: skip
        return JSONResponse({"errcode": 0, "errmsg": "ok", "msgid": msgid})

    async def expire(self, request: Request) -> Response:
        self.tokens.clear()
        return JSONResponse({"ok": True})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/cgi-bin/token", self.token, methods=["GET"]),
                Route("/cgi-bin/message/template/send", self.send, methods=["POST"]),
                Route("/sandbox/expire-tokens", self.expire, methods=["POST"]),
                *self.recorder.routes(),
            ]
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--addr", default=os.environ.get("EBILL_WECHAT_SANDBOX_ADDR", "127.0.0.1:50082")
    )
    parser.add_argument("--data-dir", default=os.environ.get("EBILL_DATA_DIR", "var"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s wechat %(message)s")
    app_id = os.environ.get("EBILL_WECHAT_APP_ID", "")
    secret = os.environ.get("EBILL_WECHAT_APP_SECRET", "")
    if not app_id or not secret:
        raise SystemExit("EBILL_WECHAT_APP_ID and EBILL_WECHAT_APP_SECRET are required")
    serve_app(
        WechatSandbox(app_id, secret).app(), args.addr, "wechat", tls_for(Path(args.data_dir))
    )


if __name__ == "__main__":
    main()
