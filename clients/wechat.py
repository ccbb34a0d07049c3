"""WeChat official account template messages (模板消息): the bill pushed to the
patient's openid.

The protocol of the real API: an access token fetched with the app id and secret
(``GET /cgi-bin/token``, valid ``expires_in`` seconds, cached and refreshed a
little early), then ``POST /cgi-bin/message/template/send?access_token=...`` with
the openid, the registered template id, a link and the template's fields. Errors
come as ``{"errcode": N, "errmsg": ...}``; an expired or revoked token (40001,
42001) is fetched again once. ops/sandboxes/wechat.py speaks the same protocol.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import httpx

from clients._http import ChannelError, ProviderClient, transport_error

__all__ = ["WechatClient"]

# -1 system busy, 45009 call quota reached: try later. Others (40003 bad openid,
# 40037 bad template, 43004 not subscribed...) will not get better.
_RETRYABLE = {-1, 45009, 45047}
_TOKEN_INVALID = {40001, 40014, 42001}
# Refresh this long before the token's stated expiry.
_TOKEN_MARGIN_S = 300


class WechatClient(ProviderClient):
    def __init__(
        self, base_url: str, app_id: str, app_secret: str, *, ca_file: str = "",
        timeout_s: float = 10.0,
    ) -> None:  # fmt: skip
        self.app_id = app_id
        self._secret = app_secret
        super().__init__(base_url, ca_file, timeout_s)
        self._token = ""
        self._token_until = 0.0
        self._lock = asyncio.Lock()

    async def _call(self, method: str, url: str, **kw: Any) -> dict[str, Any]:
        try:
            resp = await self._http.request(method, url, **kw)
        except httpx.HTTPError as exc:
            raise transport_error(exc) from exc
        if resp.status_code != 200:
            raise ChannelError(f"http {resp.status_code}", resp.text[:200], retryable=True)
        try:
            body = resp.json()
        except ValueError as exc:
            raise ChannelError("bad answer", resp.text[:200], retryable=True) from exc
        if not isinstance(body, dict):
            raise ChannelError("bad answer", resp.text[:200], retryable=True)
        return body

    async def token(self, *, refresh: bool = False) -> str:
        """The cached access token; fetched when absent, near expiry or ``refresh``."""
        async with self._lock:
            if refresh or not self._token or time.monotonic() >= self._token_until:
                body = await self._call(
                    "GET",
                    "/cgi-bin/token",
                    params={
                        "grant_type": "client_credential",
                        "appid": self.app_id,
                        "secret": self._secret,
                    },
                )
                if "access_token" not in body:
                    code = int(body.get("errcode", -1))
                    raise ChannelError(
                        str(code), str(body.get("errmsg", "")), retryable=code in _RETRYABLE
                    )
                self._token = str(body["access_token"])
                life = float(body.get("expires_in", 7200))
                self._token_until = time.monotonic() + max(life - _TOKEN_MARGIN_S, life / 2)
            return self._token

    async def send_template(
        self, openid: str, template_id: str, fields: Mapping[str, str], url: str
    ) -> str:
        """Push one template message; returns its msgid. Raises ChannelError."""
        payload = {
            "touser": openid,
            "template_id": template_id,
            "url": url,
            "data": {k: {"value": v} for k, v in fields.items()},
        }
        for refresh in (False, True):
            token = await self.token(refresh=refresh)
            body = await self._call(
                "POST",
                "/cgi-bin/message/template/send",
                params={"access_token": token},
                json=payload,
            )
            code = int(body.get("errcode", 0))
            if code == 0:
                return str(body["msgid"])
            if code in _TOKEN_INVALID and not refresh:
                continue
            raise ChannelError(str(code), str(body.get("errmsg", "")), retryable=code in _RETRYABLE)
        raise AssertionError("unreachable")
