"""Alipay open platform sandbox: a real HTTP(S) gateway (``POST /gateway.do``)
for the mini program template message of clients/alipay.py, checking what
Alipay checks: the app id (40002 isv.invalid-app-id), the RSA2 signature with
the app's registered public key (isv.invalid-signature), the timestamp (30
minutes), the method, the user id's shape (2088 + 12 digits), the template
registered and its fields present. Its answers are signed with the platform's
own key, as Alipay's are. Accepted messages are recorded
(``GET /sandbox/messages?to=<user id>``).

Keys: ``<data-dir>/alipay/{app,alipay}.{key,pub}`` (RSA 2048, made on first use
by :func:`ensure_keys`): the app's pair (the engine signs with app.key; in real
life the merchant makes it and uploads app.pub) and the platform's pair (the
engine verifies answers with alipay.pub).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import logging
import os
import re
import secrets
import time
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from clients.alipay import METHOD
from engine.model import CST
from ops.sandboxes.http_common import Recorded, Recorder, serve_app, tls_for

__all__ = ["TEMPLATES", "AlipaySandbox", "ensure_keys", "main"]

TEMPLATES = {
    "EBILL_CARD": ("unit", "payer", "code", "no", "amount"),
    "EBILL_CARD_RED": ("unit", "payer", "code", "no", "amount"),
}
_USER_ID = re.compile(r"2088\d{12}")
_MAX_SKEW_S = 30 * 60


def ensure_keys(directory: Path) -> Path:
    """The app's and the platform's RSA key pairs under ``directory``, made once."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("app", "alipay"):
        key_file, pub_file = directory / f"{name}.key", directory / f"{name}.pub"
        if key_file.exists() and pub_file.exists():
            continue
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))  # fmt: skip
        pub_file.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return directory


def _verify(key: rsa.RSAPublicKey, form: dict[str, str]) -> bool:
    """Alipay's check of a request (written apart from clients/alipay.py): the
    sorted ``k=v`` of every non-empty parameter but ``sign`` (the open API signs
    sign_type too), SHA256withRSA with the app's registered public key."""
    text = "&".join(f"{k}={v}" for k, v in sorted(form.items()) if k != "sign" and v != "")
    try:
        sig = base64.b64decode(form.get("sign", ""), validate=True)
        key.verify(sig, text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def _sign(key: rsa.RSAPrivateKey, text: str) -> str:
    return base64.b64encode(key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


class AlipaySandbox:
    def __init__(self, app_id: str, keys: Path) -> None:
        self.app_id = app_id
        app_public = serialization.load_pem_public_key((keys / "app.pub").read_bytes())
        platform = serialization.load_pem_private_key((keys / "alipay.key").read_bytes(), None)
        assert isinstance(app_public, rsa.RSAPublicKey)
        assert isinstance(platform, rsa.RSAPrivateKey)
        self.app_public = app_public
        self.platform_key = platform
        self.recorder = Recorder()

    def _answer(self, body: dict[str, str]) -> Response:
        name = METHOD.replace(".", "_") + "_response"
        inner = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        sig = _sign(self.platform_key, inner)
        text = '{"' + name + '":' + inner + ',"sign":"' + sig + '"}'
        return Response(text, media_type="application/json;charset=utf-8")

    def _refuse(self, code: str, msg: str, sub_code: str, sub_msg: str) -> Response:
        return self._answer({"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg})

    async def gateway(self, request: Request) -> Response:
        fault = self.recorder.fault()
        if fault is not None:
            return fault
        form = {k: str(v) for k, v in (await request.form()).items()}
        if form.get("app_id") != self.app_id:
            return self._refuse(
                "40002", "Invalid Arguments", "isv.invalid-app-id", "无效的AppID参数"
            )
        if form.get("sign_type") != "RSA2":
            return self._refuse("40002", "Invalid Arguments", "isv.invalid-signature-type", "")
        if not _verify(self.app_public, form):
            return self._refuse("40002", "Invalid Arguments", "isv.invalid-signature", "验签出错")
        try:
            at = datetime.strptime(form.get("timestamp", ""), "%Y-%m-%d %H:%M:%S")
        except ValueError:
            return self._refuse("40002", "Invalid Arguments", "isv.invalid-timestamp", "")
        if abs(at.replace(tzinfo=CST).timestamp() - time.time()) > _MAX_SKEW_S:
            return self._refuse("40002", "Invalid Arguments", "isv.invalid-timestamp", "")
        if form.get("method") != METHOD:
            return self._refuse("40002", "Invalid Arguments", "isv.invalid-method", "")
        try:
            biz = json.loads(form.get("biz_content", ""))
            data = json.loads(biz.get("data", "{}"))
        except (ValueError, AttributeError):
            return self._refuse("40002", "Invalid Arguments", "isv.invalid-biz-content", "")
        user = str(biz.get("to_user_id", ""))
        if not _USER_ID.fullmatch(user):
            return self._refuse("40004", "Business Failed", "USER_ID_INVALID", "用户ID不合法")
        fields = TEMPLATES.get(str(biz.get("user_template_id", "")))
        if fields is None:
            return self._refuse("40004", "Business Failed", "USER_TEMPLATE_ILLEGAL", "模板不存在")
        values = {k: str(v.get("value", "")) for k, v in data.items() if isinstance(v, dict)}
        if any(not values.get(f) for f in fields):
            return self._refuse("40004", "Business Failed", "TEMPLATE_DATA_MISSING", "模板参数缺失")
        trace = secrets.token_hex(12)
        text = " ".join(f"{f}:{values[f]}" for f in fields)
        self.recorder.add(Recorded(user, str(biz["user_template_id"]), values, text, trace,
                                   extra={"page": str(biz.get("page", ""))}))  # fmt: skip
        return self._answer({"code": "10000", "msg": "Success", "trace_id": trace})

    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/gateway.do", self.gateway, methods=["POST"]), *self.recorder.routes()]
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--addr", default=os.environ.get("EBILL_ALIPAY_SANDBOX_ADDR", "127.0.0.1:50083")
    )
    parser.add_argument("--data-dir", default=os.environ.get("EBILL_DATA_DIR", "var"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s alipay %(message)s")
    app_id = os.environ.get("EBILL_ALIPAY_APP_ID", "")
    if not app_id:
        raise SystemExit("EBILL_ALIPAY_APP_ID is required")
    keys = ensure_keys(Path(args.data_dir) / "alipay")
    serve_app(AlipaySandbox(app_id, keys).app(), args.addr, "alipay", tls_for(Path(args.data_dir)))


if __name__ == "__main__":
    main()
