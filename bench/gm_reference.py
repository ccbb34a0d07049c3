"""Independent SM2 verification for tests and the chaos checker: gmssl (pure
Python) over the documented canonical bytes, with DER decoded by `cryptography`, not by engine code.

gmssl 3.2.2 crashes (TypeError inside its Jacobian point arithmetic) on roughly
one valid signature in a few thousand. Where it crashes, and only there, the
check falls back to a textbook GB/T 32918 verification in affine coordinates
below, which shares no code with the engine either. A False from gmssl is final.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from gmssl import sm2

__all__ = ["gm_verify", "textbook_verify"]

P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = P - 3
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
G = (
    0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
)
ID = b"1234567812345678"

Point = tuple[int, int] | None


def _add(p1: Point, p2: Point) -> Point:
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2 and (y1 + y2) % P == 0:
        return None
    if p1 == p2:
        lam = (3 * x1 * x1 + A) * pow(2 * y1, -1, P) % P
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, P) % P
    x3 = (lam * lam - x1 - x2) % P
    return x3, (lam * (x1 - x3) - y1) % P


def _mul(k: int, pt: Point) -> Point:
    acc: Point = None
    while k:
        if k & 1:
            acc = _add(acc, pt)
        pt = _add(pt, pt)
        k >>= 1
    return acc


def textbook_verify(public_key: bytes, message: bytes, r: int, s: int) -> bool:
    if not (0 < r < N and 0 < s < N):
        return False
    xa, ya = int.from_bytes(public_key[1:33], "big"), int.from_bytes(public_key[33:], "big")
    z = hashlib.new(
        "sm3",
        len(ID * 8).to_bytes(2, "big")
        + ID
        + b"".join(v.to_bytes(32, "big") for v in (A, B, G[0], G[1], xa, ya)),
    ).digest()
    e = int.from_bytes(hashlib.new("sm3", z + message).digest(), "big")
    t = (r + s) % N
    if t == 0:
        return False
    pt = _add(_mul(s, G), _mul(t, (xa, ya)))
    return pt is not None and (e + pt[0]) % N == r


def gm_verify(public_key: bytes, message: bytes, der_signature: bytes) -> bool:
    """SM2 verify with SM3 and Z_A (default ID), as GB/T 32918 specifies."""
    assert len(public_key) == 65 and public_key[0] == 4
    r, s = decode_dss_signature(der_signature)
    crypt = sm2.CryptSM2(private_key="", public_key=public_key[1:].hex())
    try:
        return bool(crypt.verify_with_sm3(f"{r:064x}{s:064x}", message))
    except TypeError:
        return textbook_verify(public_key, message, r, s)
