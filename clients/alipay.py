"""Alipay open platform: the bill pushed to the patient's Alipay user id as a
mini program template message (``alipay.open.app.mini.templatemessage.send``).

The protocol of the real gateway: form parameters (app_id, method, charset,
sign_type RSA2, timestamp, version, biz_content JSON) signed by the app's RSA
key, SHA256withRSA over the sorted ``k=v&...`` string of every non-empty
parameter but ``sign``; the answer ``{"<method>_response": {...}, "sign": ...}``
is signed by Alipay's key over the exact bytes of the response object, and is
verified here with Alipay's public key before it is believed. Code 10000 is
success; 20000 (service unavailable) and 40004 ``aop.ACQ.SYSTEM_ERROR`` are
worth another try. ops/sandboxes/alipay.py speaks the same protocol.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from clients._http import ChannelError, ProviderClient, transport_error
from engine.model import CST

__all__ = ["METHOD", "AlipayClient", "load_private", "load_public", "rsa2_sign", "rsa2_verify",
           "signing_string"]  # fmt: skip

METHOD = "alipay.open.app.mini.templatemessage.send"
_RETRYABLE_SUB = ("aop.ACQ.SYSTEM_ERROR", "isp.unknow-error", "aop.SYSTEM_ERROR")


def signing_string(params: Mapping[str, str]) -> str:
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign" and params[k])


def rsa2_sign(key: rsa.RSAPrivateKey, data: str) -> str:
    sig = key.sign(data.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(sig).decode()


def rsa2_verify(key: rsa.RSAPublicKey, data: str, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature), data.encode(), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def load_private(path: str | Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path}: not an RSA private key")
    return key


def load_public(path: str | Path) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"{path}: not an RSA public key")
    return key


class AlipayClient(ProviderClient):
    def __init__(
        self, base_url: str, app_id: str, app_key: rsa.RSAPrivateKey,
        alipay_public: rsa.RSAPublicKey, *, ca_file: str = "", timeout_s: float = 10.0,
    ) -> None:  # fmt: skip
        self.app_id = app_id
        self._key = app_key
        self._alipay = alipay_public
        super().__init__(base_url, ca_file, timeout_s)

    def signed_params(self, biz: Mapping[str, Any]) -> dict[str, str]:
        p = {
            "app_id": self.app_id,
            "method": METHOD,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": datetime.now(CST).strftime("%Y-%m-%d %H:%M:%S"),
            "version": "1.0",
            "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
        }
        p["sign"] = rsa2_sign(self._key, signing_string(p))
        return p

    async def send_template(
        self, user_id: str, template_id: str, fields: Mapping[str, str], page: str
    ) -> str:
        """Push one message; returns Alipay's trace id. Raises ChannelError."""
        biz = {
            "to_user_id": user_id,
            "user_template_id": template_id,
            "page": page,
            "data": json.dumps({k: {"value": v} for k, v in fields.items()}, ensure_ascii=False),
        }
        try:
            resp = await self._http.post("/gateway.do", data=self.signed_params(biz))
        except httpx.HTTPError as exc:
            raise transport_error(exc) from exc
        if resp.status_code != 200:
            raise ChannelError(f"http {resp.status_code}", resp.text[:200], retryable=True)
        name = METHOD.replace(".", "_") + "_response"
        # The signature covers the response object's bytes exactly as sent.
        m = re.search(r'"' + name + r'"\s*:\s*(\{.*?\})\s*,\s*"sign"\s*:\s*"([^"]+)"', resp.text)
        if m is None:
            raise ChannelError("bad answer", resp.text[:200], retryable=True)
        if not rsa2_verify(self._alipay, m.group(1), m.group(2)):
            raise ChannelError("bad answer signature", "not signed by Alipay", retryable=False)
        body = json.loads(m.group(1))
        code = str(body.get("code", ""))
        if code == "10000":
            return str(body.get("trace_id", ""))
        sub = str(body.get("sub_code", ""))
        retryable = code == "20000" or sub.startswith(_RETRYABLE_SUB)
        raise ChannelError(sub or code, str(body.get("sub_msg") or body.get("msg", "")),
                           retryable=retryable)  # fmt: skip
