"""SM2 in plain Python: the fallback of engine.sm2 where tongsuopy has no wheel
(Linux ARM64, the domestic servers many hospitals run).

Jacobian coordinates on sm2p256v1 (GB/T 32918.5), Python integers. Correct and
interoperable (the tests check it against Tongsuo and gmssl both ways) but about
12 times slower than Tongsuo: 3.0 ms a signature and 4.4 ms a verification
against 0.24 and 0.40 ms, measured alternating in one run on the 2-core box.
Not constant-time: it is for servers whose keys live in the HSM (the signing
server signs bills); what signs here is sandboxes and tests.
"""

from __future__ import annotations

import base64
import secrets

__all__ = [
    "N",
    "generate_secret",
    "pem_from_secret",
    "public_point",
    "secret_from_pem",
    "sign_digest",
    "verify_digest",
]

P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

_Jacobian = tuple[int, int, int]
_INFINITY: _Jacobian = (1, 1, 0)


def _double(p: _Jacobian) -> _Jacobian:
    x, y, z = p
    if z == 0 or y == 0:
        return _INFINITY
    yy = y * y % P
    s = 4 * x * yy % P
    zz = z * z % P
    m = (3 * x * x + A * zz * zz) % P
    x3 = (m * m - 2 * s) % P
    y3 = (m * (s - x3) - 8 * yy * yy) % P
    z3 = 2 * y * z % P
    return x3, y3, z3


def _add(p: _Jacobian, q: _Jacobian) -> _Jacobian:
    if p[2] == 0:
        return q
    if q[2] == 0:
        return p
    x1, y1, z1 = p
    x2, y2, z2 = q
    z1z1 = z1 * z1 % P
    z2z2 = z2 * z2 % P
    u1 = x1 * z2z2 % P
    u2 = x2 * z1z1 % P
    s1 = y1 * z2 * z2z2 % P
    s2 = y2 * z1 * z1z1 % P
    if u1 == u2:
        return _double(p) if s1 == s2 else _INFINITY
    h = (u2 - u1) % P
    r = (s2 - s1) % P
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - s1 * hhh) % P
    z3 = h * z1 * z2 % P
    return x3, y3, z3


def _multiply(k: int, point: _Jacobian) -> _Jacobian:
    result = _INFINITY
    addend = point
    while k:
        if k & 1:
            result = _add(result, addend)
        addend = _double(addend)
        k >>= 1
    return result


def _affine(p: _Jacobian) -> tuple[int, int]:
    x, y, z = p
    if z == 0:
        raise ValueError("point at infinity")
    zi = pow(z, -1, P)
    zi2 = zi * zi % P
    return x * zi2 % P, y * zi2 * zi % P


def _point(encoded: bytes) -> _Jacobian:
    if len(encoded) != 65 or encoded[0] != 4:
        raise ValueError("public key must be an uncompressed point 04||x||y")
    x = int.from_bytes(encoded[1:33], "big")
    y = int.from_bytes(encoded[33:], "big")
    if not (x < P and y < P) or (y * y - x * x * x - A * x - B) % P:
        raise ValueError("the point is not on the SM2 curve")
    return x, y, 1


def generate_secret() -> int:
    return secrets.randbelow(N - 2) + 1


def public_point(d: int) -> bytes:
    x, y = _affine(_multiply(d, (GX, GY, 1)))
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


def sign_digest(d: int, e: int) -> tuple[int, int]:
    """(r, s) over e = SM3(Z_A || M) as an integer (GB/T 32918.2, 6.1)."""
    while True:
        k = secrets.randbelow(N - 1) + 1
        x1, _ = _affine(_multiply(k, (GX, GY, 1)))
        r = (e + x1) % N
        if r == 0 or r + k == N:
            continue
        s = pow(1 + d, -1, N) * (k - r * d) % N
        if s:
            return r, s


def verify_digest(point: bytes, e: int, r: int, s: int) -> bool:
    """GB/T 32918.2, 7.1."""
    if not (0 < r < N and 0 < s < N):
        return False
    t = (r + s) % N
    if t == 0:
        return False
    try:
        q = _point(point)
        x1, _ = _affine(_add(_multiply(s, (GX, GY, 1)), _multiply(t, q)))
    except ValueError:
        return False
    return (e + x1) % N == r


# PKCS#8 around an ECPrivateKey on the SM2 curve (what Tongsuo writes): the
# fixed DER before the 32-byte secret, and between it and the public point.
_PKCS8_HEAD = bytes.fromhex(
    "308187020100301306072a8648ce3d020106082a811ccf5501822d046d306b0201010420"
)
_PKCS8_MID = bytes.fromhex("a144034200")
_PEM = "PRIVATE KEY"


def pem_from_secret(d: int) -> bytes:
    der = _PKCS8_HEAD + d.to_bytes(32, "big") + _PKCS8_MID + public_point(d)
    body = base64.encodebytes(der).decode("ascii").replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (f"-----BEGIN {_PEM}-----\n" + "\n".join(lines) + f"\n-----END {_PEM}-----\n").encode()


def secret_from_pem(pem: bytes) -> int:
    """The secret of a PKCS#8 SM2 key (ours or Tongsuo's; ECPrivateKey version 1)."""
    text = pem.decode("ascii")
    body = "".join(line for line in text.splitlines() if not line.startswith("-----"))
    der = base64.b64decode(body)
    marker = b"\x02\x01\x01\x04\x20"
    at = der.find(marker)
    if b"\x2a\x81\x1c\xcf\x55\x01\x82\x2d" not in der or at < 0:
        raise ValueError("not an SM2 private key")
    d = int.from_bytes(der[at + len(marker) : at + len(marker) + 32], "big")
    if not 0 < d < N - 1:
        raise ValueError("SM2 private key out of range")
    return d
