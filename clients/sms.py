"""SMS through a provider's HTTP API, shaped like Aliyun's SendSms (RPC style,
signature version 1.0): form-encoded parameters signed with HMAC-SHA1 over the
sorted, percent-encoded query, a registered sign name (签名) and a registered
template code filled with JSON parameters. The provider answers
``{"Code": "OK", "BizId": ...}`` or a code such as ``isv.MOBILE_NUMBER_ILLEGAL``.

ops/sandboxes/sms.py is a server speaking the same protocol and checking what the
provider checks (key, signature, timestamp, nonce, sign name, template, number).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote

import httpx

from clients._http import ChannelError, ProviderClient, transport_error

__all__ = ["API_VERSION", "SmsClient", "percent_encode", "sign"]

API_VERSION = "2017-05-25"

# Provider codes worth another try: throttling and the provider's own trouble.
_RETRYABLE = ("isv.BUSINESS_LIMIT_CONTROL", "Throttling", "ServiceUnavailable", "InternalError")


def percent_encode(text: str) -> str:
    """RFC 3986 encoding as the provider signs it (space %20, ``~`` kept)."""
    return quote(text, safe="~")


def sign(secret: str, method: str, params: Mapping[str, str]) -> str:
    """The request signature: base64(HMAC-SHA1(secret + "&", string to sign))."""
    query = "&".join(f"{percent_encode(k)}={percent_encode(params[k])}" for k in sorted(params))
    to_sign = f"{method}&{percent_encode('/')}&{percent_encode(query)}"
    digest = hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class SmsClient(ProviderClient):
    """Sends template SMS through ``base_url`` with an access key and a sign name."""

    def __init__(
        self,
        base_url: str,
        access_key_id: str,
        access_key_secret: str,
        sign_name: str,
        *,
        ca_file: str = "",
        timeout_s: float = 10.0,
    ) -> None:
        self.access_key_id = access_key_id
        self._secret = access_key_secret
        self.sign_name = sign_name
        super().__init__(base_url, ca_file, timeout_s)

    def signed_params(
        self, phone: str, template_code: str, params: Mapping[str, str]
    ) -> dict[str, str]:
        p = {
            "AccessKeyId": self.access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "PhoneNumbers": phone,
            "RegionId": "cn-hangzhou",
            "SignName": self.sign_name,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "TemplateCode": template_code,
            "TemplateParam": json.dumps(dict(params), ensure_ascii=False, sort_keys=True),
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": API_VERSION,
        }
        p["Signature"] = sign(self._secret, "POST", p)
        return p

    async def send(self, phone: str, template_code: str, params: Mapping[str, str]) -> str:
        """Send one message; returns the provider's message id (BizId). Raises
        :class:`ChannelError` (``retryable`` says whether to try again later)."""
        try:
            resp = await self._http.post("/", data=self.signed_params(phone, template_code, params))
        except httpx.HTTPError as exc:
            raise transport_error(exc) from exc
        try:
            body = resp.json()
        except ValueError:
            body = {}
        code = str(body.get("Code", "")) if isinstance(body, dict) else ""
        if resp.status_code == 200 and code == "OK":
            return str(body["BizId"])
        if not code:
            raise ChannelError(f"http {resp.status_code}", resp.text[:200], retryable=True)
        message = str(body.get("Message", ""))[:200]
        retryable = resp.status_code >= 500 or code.startswith(_RETRYABLE)
        raise ChannelError(code, message, retryable=retryable)
