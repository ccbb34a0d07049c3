"""The vendor interface's envelope: parsing, signing, and the exact JSON it carries.

A request is ``{appid, data, noise, version, sign}``: ``data`` is the base64 of
the UTF-8 business JSON, ``sign`` the upper-case MD5 of
``appid=<appid>&data=<data>&noise=<noise>&key=<secret>&version=<version>`` in that
fixed order (the specification's 2.4, and the HIS client in the field builds
exactly this string). An answer is ``{data, noise, sign}`` signed the same way
with the caller's appid, its ``data`` the base64 of ``{"result", "message"}``
and ``message`` itself the base64 of the business JSON (or of the error text).

MD5 is the vendor's choice, kept so that HIS systems need no change; it
authenticates the caller to the engine only as well as the shared secret stays
secret, which is why the HTTP port is TLS-only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

__all__ = [
    "VERSION",
    "Envelope",
    "EnvelopeError",
    "answer",
    "decode_data",
    "dumps",
    "encode_data",
    "parse_envelope",
    "sign",
    "signature_ok",
    "vendor_key",
]

VERSION = "1.0"

# Bounds before anything is decoded: an envelope field is short except data.
_MAX_FIELD = 128
_NOISE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class EnvelopeError(Exception):
    """The envelope or its data cannot be read; ``what`` names the part."""

    def __init__(self, what: str, message: str) -> None:
        super().__init__(message)
        self.what = what
        self.message = message


@dataclass(frozen=True, slots=True)
class Envelope:
    appid: str
    data: str
    noise: str
    version: str
    sign: str


def vendor_key(secret: bytes) -> str:
    """The text the vendor's sign string carries as ``key`` for an app secret.

    The vendor hands out its keys as text and HIS systems type them into their
    configuration: a secret of printable ASCII is that text itself; any other
    secret (random bytes) is used as its lower-case hex, which is how it is
    shown to the operator who registers the app."""
    if secret and all(0x21 <= b <= 0x7E for b in secret):
        return secret.decode("ascii")
    return secret.hex()


def sign(appid: str, data: str, noise: str, key: str, version: str = VERSION) -> str:
    text = f"appid={appid}&data={data}&noise={noise}&key={key}&version={version}"
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest().upper()


def signature_ok(env: Envelope, key: str) -> bool:
    """Constant-time comparison; the sign is compared upper-case as the spec sends it."""
    expected = sign(env.appid, env.data, env.noise, key, env.version)
    return hmac.compare_digest(expected.encode(), env.sign.strip().upper().encode())


def parse_envelope(body: bytes) -> Envelope:
    """The request envelope, or EnvelopeError naming what is wrong."""
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise EnvelopeError("body", "the request body is not a JSON object") from None
    if not isinstance(obj, dict):
        raise EnvelopeError("body", "the request body is not a JSON object")
    values: dict[str, str] = {}
    for name in ("appid", "data", "noise", "sign"):
        value = obj.get(name)
        if not isinstance(value, str) or not value:
            raise EnvelopeError(name, f"{name}: is required (a string)")
        if name != "data" and len(value) > _MAX_FIELD:
            raise EnvelopeError(name, f"{name}: at most {_MAX_FIELD} characters")
        values[name] = value
    version = obj.get("version", VERSION)
    if version != VERSION:
        raise EnvelopeError("version", f"version: only {VERSION} is served")
    if not _NOISE.match(values["noise"]):
        raise EnvelopeError("noise", "noise: 1-128 letters, digits or _.:-")
    return Envelope(values["appid"], values["data"], values["noise"], version, values["sign"])


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def decode_data(data: str) -> dict[str, Any]:
    """The business JSON of ``data``. Numbers with a fraction or exponent become
    Decimal (json's parse_float), never float: amounts stay exact."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError("data", "data: not base64") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise EnvelopeError("data", "data: the decoded bytes are not UTF-8") from None
    try:
        obj = json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise EnvelopeError("data", f"data: not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise EnvelopeError("data", "data: the business JSON must be an object")
    return obj


def dumps(obj: Any) -> str:
    """JSON with Decimal written as a number exactly as it is (json.dumps cannot:
    it would need a float). Compact, UTF-8 characters kept."""
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            raise ValueError("a non-finite Decimal has no JSON form")
        return format(obj, "f")
    if obj is None or isinstance(obj, bool | int | str):
        return json.dumps(obj, ensure_ascii=False)
    if isinstance(obj, Mapping):
        items = (f"{json.dumps(str(k), ensure_ascii=False)}:{dumps(v)}" for k, v in obj.items())
        return "{" + ",".join(items) + "}"
    if isinstance(obj, Sequence):
        return "[" + ",".join(dumps(v) for v in obj) + "]"
    raise TypeError(f"{type(obj).__name__} has no JSON form here")


def encode_data(obj: Any) -> str:
    return base64.b64encode(dumps(obj).encode("utf-8")).decode("ascii")


def answer(appid: str, key: str, result: str, message: Any) -> dict[str, str]:
    """The response envelope: ``message`` (business JSON, or an error text) is
    base64'd into ``{result, message}``, that into ``data``; signed with the
    caller's key. ``key`` empty (the caller is not known): sign is empty too."""
    body = message if isinstance(message, str) else dumps(message)
    inner = {"result": result, "message": base64.b64encode(body.encode("utf-8")).decode("ascii")}
    data = encode_data(inner)
    noise = uuid.uuid4().hex
    return {"data": data, "noise": noise, "sign": sign(appid, data, noise, key) if key else ""}
