"""SMS provider sandbox: a real HTTP(S) server speaking the SendSms protocol of
clients/sms.py and checking what the provider checks, in the provider's order:
the access key, the timestamp (15 minutes) and nonce (once), the HMAC-SHA1
signature, the sign name and template registered, every template parameter
present, the mainland mobile number. Accepted messages are rendered from the
registered template and recorded (``GET /sandbox/messages?to=<phone>``).

Run: ``python -m ops.sandboxes.sms --addr 127.0.0.1:50081`` with
EBILL_SMS_ACCESS_KEY_ID / _SECRET / EBILL_SMS_SIGN_NAME as the engine has them.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import hmac
import json
import logging
import os
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clients.sms import API_VERSION
from ops.sandboxes.http_common import Recorded, Recorder, serve_app, tls_for

__all__ = ["TEMPLATES", "SmsSandbox", "expected_signature", "main"]

# Templates registered with the provider (code -> text with ${var} fields).
TEMPLATES = {
    "SMS_EBILL": "【${unit}】您的电子票据${code}-${no}已开具，金额${amount}元，查看：${url}",
    "SMS_EBILL_RED": (
        "【${unit}】您的电子票据已冲红，红字票据${code}-${no}，金额${amount}元，查看：${url}"
    ),
    "SMS_SELFSERVICE_CODE": "您的验证码为${code}，${minutes}分钟内有效，请勿告诉他人。",
}
_VAR = re.compile(r"\$\{(\w+)\}")
_PHONE = re.compile(r"1[3-9]\d{9}")
_MAX_SKEW_S = 15 * 60


def expected_signature(secret: str, method: str, params: dict[str, str]) -> str:
    """The provider's own computation (written apart from clients/sms.py, so a
    mistake there is not mirrored here): RFC 3986 encoding of the sorted query."""
    enc = functools.partial(quote, safe="~")
    # urlencode hands quote_via its own "safe" positionally: ignore it.
    query = urlencode(sorted(params.items()), quote_via=lambda v, *_: enc(v))
    to_sign = "&".join((method, enc("/"), enc(query)))
    mac = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


class SmsSandbox:
    def __init__(self, keys: dict[str, str], sign_names: set[str]) -> None:
        self.keys = keys
        self.sign_names = sign_names
        self.recorder = Recorder()
        self._nonces: dict[str, float] = {}

    def _refuse(self, code: str, message: str, status: int = 400) -> Response:
        body = {"Code": code, "Message": message, "RequestId": uuid.uuid4().hex}
        return JSONResponse(body, status_code=status)

    async def send(self, request: Request) -> Response:
        fault = self.recorder.fault()
        if fault is not None:
            return fault
        form = {k: str(v) for k, v in (await request.form()).items()}
        secret = self.keys.get(form.get("AccessKeyId", ""))
        if secret is None:
            return self._refuse("InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        if form.get("Action") != "SendSms" or form.get("Version") != API_VERSION:
            return self._refuse("InvalidAction.NotFound", "unknown action or version", 404)
        try:
            at = datetime.strptime(form.get("Timestamp", ""), "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            return self._refuse("InvalidTimeStamp.Format", "bad Timestamp")
        if abs(at.replace(tzinfo=UTC).timestamp() - time.time()) > _MAX_SKEW_S:
            return self._refuse("InvalidTimeStamp.Expired", "Timestamp too far from now")
        if form.get("SignatureMethod") != "HMAC-SHA1" or form.get("SignatureVersion") != "1.0":
            return self._refuse("InvalidSignatureMethod", "HMAC-SHA1 1.0 only")
        given = form.pop("Signature", "")
        if not hmac.compare_digest(expected_signature(secret, request.method, form), given):
            return self._refuse("SignatureDoesNotMatch", "Specified signature is not matched")
        nonce = form.get("SignatureNonce", "")
        now = time.time()
        self._nonces = {n: t for n, t in self._nonces.items() if now - t < _MAX_SKEW_S}
        if not nonce or nonce in self._nonces:
            return self._refuse("SignatureNonceUsed", "Specified signature nonce was used already")
        self._nonces[nonce] = now
        if form.get("SignName") not in self.sign_names:
            return self._refuse("isv.SMS_SIGNATURE_ILLEGAL", "sign name not registered")
        text = TEMPLATES.get(form.get("TemplateCode", ""))
        if text is None:
            return self._refuse("isv.SMS_TEMPLATE_ILLEGAL", "template not registered")
        try:
            params = json.loads(form.get("TemplateParam", "{}"))
        except ValueError:
            return self._refuse("isv.INVALID_JSON_PARAM", "TemplateParam is not JSON")
        if not isinstance(params, dict):
            return self._refuse("isv.INVALID_JSON_PARAM", "TemplateParam is not an object")
        missing = [v for v in _VAR.findall(text) if not str(params.get(v, ""))]
        if missing:
            return self._refuse("isv.TEMPLATE_MISSING_PARAMETERS", f"missing {missing}")
        phones = form.get("PhoneNumbers", "").split(",")
        if not all(_PHONE.fullmatch(p) for p in phones):
            return self._refuse("isv.MOBILE_NUMBER_ILLEGAL", "illegal mobile number")
        rendered = _VAR.sub(lambda m: str(params[m.group(1)]), text)
        biz_id = f"{int(now * 1000)}^{uuid.uuid4().hex[:10]}"
        for phone in phones:
            self.recorder.add(
                Recorded(phone, form["TemplateCode"], {k: str(v) for k, v in params.items()},
                         rendered, biz_id, extra={"sign_name": form["SignName"]})
            )  # fmt: skip
        return JSONResponse(
            {"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": uuid.uuid4().hex}
        )

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/", self.send, methods=["POST"]), *self.recorder.routes()])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--addr", default=os.environ.get("EBILL_SMS_SANDBOX_ADDR", "127.0.0.1:50081")
    )
    parser.add_argument("--data-dir", default=os.environ.get("EBILL_DATA_DIR", "var"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sms %(message)s")
    key_id = os.environ.get("EBILL_SMS_ACCESS_KEY_ID", "")
    secret = os.environ.get("EBILL_SMS_ACCESS_KEY_SECRET", "")
    if not key_id or not secret:
        raise SystemExit("EBILL_SMS_ACCESS_KEY_ID and EBILL_SMS_ACCESS_KEY_SECRET are required")
    sandbox = SmsSandbox({key_id: secret}, {os.environ.get("EBILL_SMS_SIGN_NAME", "电子票据")})
    serve_app(sandbox.app(), args.addr, "sms", tls_for(Path(args.data_dir)))


if __name__ == "__main__":
    main()
