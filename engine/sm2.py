"""SM2 signatures with SM3 (GB/T 32918, GM/T 0003 / 0009).

The native backend is Tongsuo (through tongsuopy): ~0.4 ms a signature here, 20x
the pure-Python gmssl, which the tests use as the independent reference. Tongsuo
computes Z_A with the default ID ``1234567812345678``; :func:`z_a` and
:func:`digest` compute the same values in plain Python so the standard vectors pin
both sides.

Conventions (the interoperability traps): signatures are DER ``SEQUENCE{r, s}``;
public keys are uncompressed points ``04||x||y`` (65 bytes); Z_A is always used,
with the default ID unless another is given.
"""

from __future__ import annotations

import hashlib

from tongsuopy.crypto import hashes, serialization
from tongsuopy.crypto.asymciphers import ec
from tongsuopy.crypto.exceptions import InvalidSignature

__all__ = [
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

_ALG = ec.ECDSA(hashes.SM3())


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
        try:
            self._key.verify(signature, message, _ALG)
        except (InvalidSignature, ValueError):
            return False
        except Exception:
            # Tongsuo raises assertion-style errors on malformed DER.
            return False
        return True


class SigningKey:
    """An SM2 private key held by a signer (the HSM sandbox, the fiscal sandbox)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key
        nums = key.public_key().public_numbers()
        self.public = VerifyingKey(
            b"\x04" + nums.x.to_bytes(32, "big") + nums.y.to_bytes(32, "big")
        )

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(ec.generate_private_key(ec.SM2()))

    @classmethod
    def from_secret(cls, d: int) -> SigningKey:
        return cls(ec.derive_private_key(d, ec.SM2()))

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("not an SM2 private key")
        return cls(key)

    def to_pem(self) -> bytes:
        pem: bytes = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return pem

    @property
    def secret(self) -> int:
        return int(self._key.private_numbers().private_value)

    def sign(self, message: bytes) -> bytes:
        """DER signature over SM3(Z_A || message), default ID."""
        signature: bytes = self._key.sign(message, _ALG)
        return signature
