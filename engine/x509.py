"""X.509 certificates with SM2 keys and SM2-with-SM3 signatures (GM/T 0015), built
and read as DER by hand: neither ``cryptography`` nor tongsuopy builds them.

Only what a unit signing certificate needs: version 3, serial, issuer and
subject names (CN, O, OU), validity, an SM2 public key, basic constraints and
key usage. :func:`tbs_certificate` gives the bytes the issuer signs (with Z_A
over the default ID, as every SM2 signature here), :func:`assemble` wraps them
with the signature, :func:`parse` reads a certificate back (and refuses one
that is not SM2). Independent checkers (gmssl in the tests, ``openssl x509``)
read the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "OID_SM2_CURVE",
    "OID_SM2_SM3",
    "Certificate",
    "Name",
    "assemble",
    "parse",
    "pop_message",
    "tbs_certificate",
]

OID_SM2_SM3 = "1.2.156.10197.1.501"
OID_SM2_CURVE = "1.2.156.10197.1.301"
_OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
_OID_CN, _OID_O, _OID_OU = "2.5.4.3", "2.5.4.10", "2.5.4.11"
_OID_BASIC_CONSTRAINTS, _OID_KEY_USAGE = "2.5.29.19", "2.5.29.15"


def pop_message(unit_code: str, public_key: bytes) -> bytes:
    """What a unit's key signs to prove to the CA that it holds it."""
    return f"ebill-ca-pop:{unit_code}:{public_key.hex()}".encode()


# -- DER ----------------------------------------------------------------------


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body


def _seq(*parts: bytes) -> bytes:
    return _tlv(0x30, b"".join(parts))


def _int(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _oid(dotted: str) -> bytes:
    nums = [int(x) for x in dotted.split(".")]
    body = bytearray([40 * nums[0] + nums[1]])
    for n in nums[2:]:
        chunk = [n & 0x7F]
        n >>= 7
        while n:
            chunk.append(0x80 | (n & 0x7F))
            n >>= 7
        body.extend(reversed(chunk))
    return _tlv(0x06, bytes(body))


def _time(t: datetime) -> bytes:
    t = t.astimezone(UTC)
    if 1950 <= t.year < 2050:
        return _tlv(0x17, t.strftime("%y%m%d%H%M%SZ").encode())
    return _tlv(0x18, t.strftime("%Y%m%d%H%M%SZ").encode())


def _read(data: bytes, i: int) -> tuple[int, bytes, int]:
    """(tag, body, index after) of the TLV at ``i``."""
    tag, n = data[i], data[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[i : i + k], "big")
        i += k
    if i + n > len(data):
        raise ValueError("truncated DER")
    return tag, data[i : i + n], i + n


def _items(body: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i < len(body):
        tag, inner, i = _read(body, i)
        out.append((tag, inner))
    return out


def _oid_text(body: bytes) -> str:
    nums = [body[0] // 40, body[0] % 40]
    n = 0
    for b in body[1:]:
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            nums.append(n)
            n = 0
    return ".".join(map(str, nums))


def _time_of(tag: int, body: bytes) -> datetime:
    fmt = "%y%m%d%H%M%SZ" if tag == 0x17 else "%Y%m%d%H%M%SZ"
    return datetime.strptime(body.decode(), fmt).replace(tzinfo=UTC)


# -- certificates ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Name:
    common_name: str
    organization: str = ""
    unit: str = ""

    def der(self) -> bytes:
        rdns = [(_OID_CN, self.common_name), (_OID_O, self.organization), (_OID_OU, self.unit)]
        return _seq(
            *(
                _tlv(0x31, _seq(_oid(oid), _tlv(0x0C, value.encode())))
                for oid, value in rdns
                if value
            )
        )

    def __str__(self) -> str:
        parts = [("CN", self.common_name), ("O", self.organization), ("OU", self.unit)]
        return ",".join(f"{k}={v}" for k, v in parts if v)


@dataclass(frozen=True, slots=True)
class Certificate:
    der: bytes
    tbs: bytes
    serial: int
    issuer: Name
    subject: Name
    not_before: datetime
    not_after: datetime
    public_key: bytes
    signature: bytes

    @property
    def serial_hex(self) -> str:
        return f"{self.serial:x}"

    def valid_at(self, t: datetime) -> bool:
        return self.not_before <= t < self.not_after


def _alg() -> bytes:
    return _seq(_oid(OID_SM2_SM3))


def tbs_certificate(
    *,
    serial: int,
    issuer: Name,
    subject: Name,
    not_before: datetime,
    not_after: datetime,
    public_key: bytes,
    ca: bool = False,
) -> bytes:
    """The TBSCertificate DER the issuer signs."""
    if len(public_key) != 65 or public_key[0] != 4:
        raise ValueError("public key must be an uncompressed SM2 point")
    spki = _seq(
        _seq(_oid(_OID_EC_PUBLIC_KEY), _oid(OID_SM2_CURVE)), _tlv(0x03, b"\x00" + public_key)
    )
    basic = _seq(_tlv(0x01, b"\xff")) if ca else _seq()
    # digitalSignature + nonRepudiation for a unit; keyCertSign + cRLSign for a CA.
    usage = _tlv(0x03, b"\x01\x06") if ca else _tlv(0x03, b"\x06\xc0")
    extensions = _tlv(
        0xA3,
        _seq(
            _seq(_oid(_OID_BASIC_CONSTRAINTS), _tlv(0x01, b"\xff"), _tlv(0x04, basic)),
            _seq(_oid(_OID_KEY_USAGE), _tlv(0x01, b"\xff"), _tlv(0x04, usage)),
        ),
    )
    return _seq(
        _tlv(0xA0, _int(2)),
        _int(serial),
        _alg(),
        issuer.der(),
        _seq(_time(not_before), _time(not_after)),
        subject.der(),
        spki,
        extensions,
    )


def assemble(tbs: bytes, signature: bytes) -> bytes:
    """The Certificate DER: the TBS, the algorithm, the DER SM2 signature."""
    return _seq(tbs, _alg(), _tlv(0x03, b"\x00" + signature))


def _name(body: bytes) -> Name:
    got: dict[str, str] = {}
    for _, rdn in _items(body):
        for _, atv in _items(rdn):
            (_, oid), (_, value) = _items(atv)[:2]
            got[_oid_text(oid)] = value.decode()
    return Name(got.get(_OID_CN, ""), got.get(_OID_O, ""), got.get(_OID_OU, ""))


def parse(der: bytes) -> Certificate:
    """Read a certificate; ValueError when it is not an SM2 certificate in DER."""
    try:
        tag, body, end = _read(der, 0)
        if tag != 0x30 or end != len(der):
            raise ValueError("not a DER SEQUENCE")
        parts = _items(body)
        (_, tbs_body), (_, alg), (_, sig) = parts[:3]
        tbs = _tlv(0x30, tbs_body)
        if _oid_text(_items(alg)[0][1]) != OID_SM2_SM3:
            raise ValueError("not signed with SM2-with-SM3")
        f = _items(tbs_body)
        if f[0][0] == 0xA0:
            f = f[1:]
        serial = int.from_bytes(f[0][1], "big")
        issuer, (_, validity), subject, (_, spki) = _name(f[2][1]), f[3], _name(f[4][1]), f[5]
        (tb, b), (ta, a) = _items(validity)
        (_, key_alg), (_, bits) = _items(spki)
        if _oid_text(_items(key_alg)[1][1]) != OID_SM2_CURVE:
            raise ValueError("the key is not on the SM2 curve")
        return Certificate(
            der=bytes(der),
            tbs=tbs,
            serial=serial,
            issuer=issuer,
            subject=subject,
            not_before=_time_of(tb, b),
            not_after=_time_of(ta, a),
            public_key=bits[1:],
            signature=sig[1:],
        )
    except (IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed certificate: {exc}") from exc
