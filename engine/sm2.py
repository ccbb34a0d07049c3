"""SM2 signatures with SM3 (GB/T 32918, GM/T 0003 / 0009).

The native backend is Tongsuo (through tongsuopy): ~0.4 ms a signature here, 20x
the pure-Python gmssl, which the tests use as the independent reference. Tongsuo
computes Z_A with the default ID ``1234567812345678``; :func:`z_a` and
:func:`digest` compute the same values in plain Python so the standard vectors pin
both sides.

Conventions (the interoperability traps): signatures are DER ``SEQUENCE{r, s}``;
public keys are uncompressed points ``04||x||y`` (65 bytes); Z_A is always used,
with the default ID unless another is given.

Where tongsuopy has no wheel (Linux ARM64) or EBILL_SM2_BACKEND=python asks, SM2
runs in plain Python (engine.sm2_python), same keys, same signatures, about 12x
slower; a warning says so once per process. The variable is read here, not
through config.settings, because every process that signs or verifies (the
engine, its Ray workers, the sandboxes, the CLI) imports this module and
inherits the environment.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any

from engine import sm2_python

__all__ = [
    "BACKEND",
    "DEFAULT_ID",
    "SigningKey",
    "VerifyingKey",
    "decode_signature",
    "digest",
    "encode_signature",
    "sm3",
    "z_a",
]

DEFAULT_ID = b"1234567812345678"

# sm2p256v1 curve parameters (GB/T 32918.5).
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

log = logging.getLogger(__name__)

_WANTED = os.environ.get("EBILL_SM2_BACKEND", "auto").strip().lower() or "auto"
_tongsuo: Any = None
if _WANTED not in ("auto", "tongsuo", "python"):
    raise SystemExit(f"EBILL_SM2_BACKEND: must be auto, tongsuo or python, got {_WANTED!r}")
if _WANTED != "python":
    try:
        from tongsuopy.crypto import hashes as _hashes
        from tongsuopy.crypto import serialization as _serialization
        from tongsuopy.crypto.asymciphers import ec as _ec
        from tongsuopy.crypto.exceptions import InvalidSignature as _InvalidSignature
    except ImportError as exc:
        if _WANTED == "tongsuo":
            raise
        log.warning(
            "SM2: tongsuopy is not available (%s): signing and verifying in plain Python, "
            "about 12x slower (measured 3.0 ms a signature, 4.4 ms a verification, against "
            "0.24 and 0.40 ms): issuance throughput "
            "falls accordingly; install tongsuopy where it has a wheel",
            exc,
        )
    else:
        _tongsuo = (_hashes, _serialization, _ec, _InvalidSignature)
elif _WANTED == "python":
    log.warning(
        "SM2: EBILL_SM2_BACKEND=python: signing and verifying in plain Python, about 12x "
        "slower than Tongsuo"
    )

# "tongsuo" or "python": which implementation this process signs and verifies with.
BACKEND = "tongsuo" if _tongsuo is not None else "python"
_ALG = _tongsuo[2].ECDSA(_tongsuo[0].SM3()) if _tongsuo is not None else None


def sm3(data: bytes) -> bytes:
    return hashlib.new("sm3", data).digest()


def z_a(public_key: bytes, user_id: bytes = DEFAULT_ID) -> bytes:
    """Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A)."""
    if len(public_key) != 65 or public_key[0] != 4:
        raise ValueError("public key must be an uncompressed point 04||x||y")
    entl = (len(user_id) * 8).to_bytes(2, "big")
    parts = [entl, user_id, *(v.to_bytes(32, "big") for v in (A, B, GX, GY)), public_key[1:]]
    return sm3(b"".join(parts))


def digest(public_key: bytes, message: bytes, user_id: bytes = DEFAULT_ID) -> bytes:
    """e = SM3(Z_A || M), the value an SM2 signature actually signs."""
    return sm3(z_a(public_key, user_id) + message)


def _der_int(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return b"\x02" + bytes([len(body)]) + body


def encode_signature(r: int, s: int) -> bytes:
    """DER SEQUENCE{INTEGER r, INTEGER s} (GM/T 0009 SM2Signature)."""
    body = _der_int(r) + _der_int(s)
    return b"\x30" + bytes([len(body)]) + body


def decode_signature(der: bytes) -> tuple[int, int]:
    """Inverse of encode_signature; ValueError on anything else."""
    try:
        if der[0] != 0x30 or der[1] != len(der) - 2:
            raise ValueError("not a DER SEQUENCE")
        out: list[int] = []
        i = 2
        for _ in range(2):
            if der[i] != 0x02:
                raise ValueError("expected INTEGER")
            n = der[i + 1]
            out.append(int.from_bytes(der[i + 2 : i + 2 + n], "big"))
            i += 2 + n
        if i != len(der):
            raise ValueError("trailing bytes")
    except IndexError as exc:
        raise ValueError("truncated DER signature") from exc
    return out[0], out[1]


class VerifyingKey:
    """An SM2 public key (an uncompressed point), parsed once for many checks."""

    __slots__ = ("_key", "point")

    def __init__(self, point: bytes) -> None:
        point = bytes(point)
        if len(point) != 65 or point[0] != 4:
            raise ValueError("public key must be an uncompressed point 04||x||y")
        self.point = point
        # Parsing the point costs ~30 us; a key checks thousands of bills.
        self._key: Any = None
        if BACKEND == "tongsuo":
            ec = _tongsuo[2]
            self._key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SM2(), point)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifyingKey) and other.point == self.point

    def __hash__(self) -> int:
        return hash(self.point)

    def __repr__(self) -> str:
        return f"VerifyingKey({self.point.hex()})"

    def __reduce__(self) -> tuple[type[VerifyingKey], tuple[bytes]]:
        return VerifyingKey, (self.point,)

    def verify(self, message: bytes, signature: bytes) -> bool:
        if self._key is None:
            try:
                r, s = decode_signature(signature)
            except ValueError:
                return False
            e = int.from_bytes(digest(self.point, message), "big")
            return sm2_python.verify_digest(self.point, e, r, s)
        try:
            self._key.verify(signature, message, _ALG)
        except (_tongsuo[3], ValueError):
            return False
        except Exception:
            # Tongsuo raises assertion-style errors on malformed DER.
            return False
        return True


class SigningKey:
    """An SM2 private key held by a signer (the HSM sandbox, the fiscal sandbox).

    Holds a Tongsuo key, or the secret itself under the Python backend."""

    def __init__(self, key: Any) -> None:
        self._key = key
        if isinstance(key, int):
            self.public = VerifyingKey(sm2_python.public_point(key))
            return
        nums = key.public_key().public_numbers()
        self.public = VerifyingKey(
            b"\x04" + nums.x.to_bytes(32, "big") + nums.y.to_bytes(32, "big")
        )

    @classmethod
    def generate(cls) -> SigningKey:
        if _tongsuo is None:
            return cls(sm2_python.generate_secret())
        ec = _tongsuo[2]
        return cls(ec.generate_private_key(ec.SM2()))

    @classmethod
    def from_secret(cls, d: int) -> SigningKey:
        if _tongsuo is None:
            return cls(d)
        ec = _tongsuo[2]
        return cls(ec.derive_private_key(d, ec.SM2()))

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        if _tongsuo is None:
            return cls(sm2_python.secret_from_pem(pem))
        key = _tongsuo[1].load_pem_private_key(pem, password=None)
        if not isinstance(key, _tongsuo[2].EllipticCurvePrivateKey):
            raise ValueError("not an SM2 private key")
        return cls(key)

    def to_pem(self) -> bytes:
        if isinstance(self._key, int):
            return sm2_python.pem_from_secret(self._key)
        serialization = _tongsuo[1]
        pem: bytes = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return pem

    @property
    def secret(self) -> int:
        if isinstance(self._key, int):
            return self._key
        return int(self._key.private_numbers().private_value)

    def sign(self, message: bytes) -> bytes:
        """DER signature over SM3(Z_A || message), default ID."""
        if isinstance(self._key, int):
            e = int.from_bytes(digest(self.public.point, message), "big")
            return encode_signature(*sm2_python.sign_digest(self._key, e))
        signature: bytes = self._key.sign(message, _ALG)
        return signature
