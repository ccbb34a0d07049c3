"""A client of the vendor interface written the way a HIS vendor writes one: an
HTTP library, hashlib's MD5 and base64, nothing of this project. It is what
drives the gateway in tests/e2e/test_gateway*.py, so the gateway is checked
against the specification's wire format rather than against its own code.

Per the specification (its 2.3-2.5, and the VB client in the field): POST
``<base>/api/medical/<method>`` with ``{appid, data, noise, version, sign}``;
``data`` the base64 of the UTF-8 business JSON; ``sign`` the upper-case MD5 of
``appid=..&data=..&noise=..&key=<secret>&version=1.0``; the answer
``{data, noise, sign}`` is verified the same way, its data decoded to
``{result, message}`` and message decoded from base64 again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

__all__ = ["HisClient", "Reply", "sign"]


def sign(appid: str, data: str, noise: str, key: str, version: str = "1.0") -> str:
    text = f"appid={appid}&data={data}&noise={noise}&key={key}&version={version}"
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


@dataclass
class Reply:
    result: str
    message: Any  # dict for business JSON, str for a text
    raw: dict[str, str]  # the response envelope as received
    signed_ok: bool

    @property
    def ok(self) -> bool:
        return self.result == "S0000"


class HisClient:
    def __init__(self, base_url: str, appid: str, key: str, *, verify: Any = True) -> None:
        self.base_url = base_url.rstrip("/")
        self.appid = appid
        self.key = key
        self.http = httpx.Client(timeout=60, verify=verify)

    def envelope(
        self, business: dict[str, Any] | str, *, noise: str | None = None
    ) -> dict[str, str]:
        text = business if isinstance(business, str) else json.dumps(business, ensure_ascii=False)
        data = base64.b64encode(text.encode("utf-8")).decode("ascii")
        noise = noise or uuid.uuid4().hex
        return {
            "appid": self.appid,
            "data": data,
            "noise": noise,
            "version": "1.0",
            "sign": sign(self.appid, data, noise, self.key),
        }

    def post(self, method: str, body: dict[str, Any] | bytes) -> Reply:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        resp = self.http.post(
            f"{self.base_url}/api/medical/{method}",
            content=content,
            headers={"Content-Type": "application/json"},
        )
        resp.raise_for_status()
        return self.read(resp.json())

    def call(self, method: str, business: dict[str, Any], *, noise: str | None = None) -> Reply:
        return self.post(method, self.envelope(business, noise=noise))

    def read(self, env: dict[str, str]) -> Reply:
        signed_ok = env.get("sign") == sign(self.appid, env["data"], env["noise"], self.key)
        inner = json.loads(base64.b64decode(env["data"]).decode("utf-8"))
        text = base64.b64decode(inner["message"]).decode("utf-8")
        try:
            message: Any = json.loads(text, parse_float=Decimal)
        except ValueError:
            message = text
        return Reply(inner["result"], message, env, signed_ok)

    def close(self) -> None:
        self.http.close()
