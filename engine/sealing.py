"""Sealing of personal data at rest: SM4-GCM under a key ring, HMAC-SM3 search index.

A :class:`KeyRing` holds numbered SM4 keys (16 bytes) and one index key. The
*active* key seals; every key of the ring opens, so blobs sealed before a rotation
still open after it (docs/personal-data.md says how to rotate and re-seal).

Blob layout (bytes)::

    version (1) = 0x01 | key id (2, big-endian) | nonce (12) | ciphertext | tag (16)

The header (version and key id) is part of the authenticated data, so a blob
whose key id was changed does not open under another key. The caller's ``aad``
binds a blob to where it belongs (a table, a column and the row's natural key):
a sealed ID card number copied into another bill's row is refused, not shown.

:meth:`KeyRing.index` is a keyed hash (HMAC-SM3 under the index key, separate from
the sealing keys) of a normalised value, for exact-match search without
decrypting: equal values give equal digests, and without the key a digest cannot
be tested against guessed ID card numbers (an unkeyed hash of an 18-character ID
number falls to enumeration of birthdays and sequence numbers).

Pure: no I/O. config/keys.py reads the ring from a file.
"""

from __future__ import annotations

import hmac
import os
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from engine.errors import DataLoss

__all__ = [
    "INDEX_KEY_SIZE",
    "KEY_SIZE",
    "OVERHEAD",
    "KeyRing",
    "normalise",
]

VERSION = 1
KEY_SIZE = 16  # SM4 is a 128-bit block cipher with 128-bit keys
INDEX_KEY_SIZE = 32
NONCE_SIZE = 12  # the GCM nonce length that needs no GHASH derivation
TAG_SIZE = 16
HEADER_SIZE = 3
# Bytes a sealed value takes beyond its plaintext.
OVERHEAD = HEADER_SIZE + NONCE_SIZE + TAG_SIZE
MAX_KEY_ID = 0xFFFF

# Characters that people and systems put inside IDs and phone numbers without
# changing what they name ("110101 19900307 123x", "138-0013-8000").
_SEPARATORS = str.maketrans("", "", " \t-")


def normalise(value: str) -> str:
    """The form a value is indexed in: NFKC (full-width digits and letters to
    ASCII), separators removed, upper case (the check character of an ID card
    number is X in either case; e-mail addresses compare case-insensitively)."""
    return unicodedata.normalize("NFKC", value).translate(_SEPARATORS).upper()


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Numbered SM4 keys, the id of the one that seals, and the index key."""

    keys: Mapping[int, bytes]
    active: int
    index_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a key ring needs at least one sealing key")
        for key_id, key in self.keys.items():
            if not 1 <= key_id <= MAX_KEY_ID:
                raise ValueError(f"key id {key_id} outside 1..{MAX_KEY_ID}")
            if len(key) != KEY_SIZE:
                raise ValueError(f"key {key_id}: SM4 keys are {KEY_SIZE} bytes, got {len(key)}")
        if self.active not in self.keys:
            raise ValueError(f"active key {self.active} is not in the ring")
        if len(self.index_key) < 16:
            raise ValueError("the index key must be at least 16 bytes")

    def __repr__(self) -> str:  # never print key material
        return f"KeyRing(keys={sorted(self.keys)}, active={self.active})"

    @classmethod
    def generate(cls) -> KeyRing:
        """A fresh ring: key 1 active and an index key, from the OS CSPRNG."""
        return cls({1: os.urandom(KEY_SIZE)}, 1, os.urandom(INDEX_KEY_SIZE))

    def rotated(self) -> KeyRing:
        """This ring with a new key (the next id) that seals from now on; the
        old keys stay so that what they sealed still opens."""
        new_id = max(self.keys) + 1
        if new_id > MAX_KEY_ID:
            raise ValueError("no key id left")
        return KeyRing({**self.keys, new_id: os.urandom(KEY_SIZE)}, new_id, self.index_key)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """SM4-GCM under the active key with a random nonce."""
        return self._seal_with(self.active, os.urandom(NONCE_SIZE), plaintext, aad)

    def _seal_with(self, key_id: int, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        header = bytes([VERSION]) + key_id.to_bytes(2, "big")
        enc = Cipher(algorithms.SM4(self.keys[key_id]), modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(header + aad)
        body = enc.update(plaintext) + enc.finalize()
        return header + nonce + body + enc.tag

    def open(self, blob: bytes, aad: bytes) -> bytes:
        """The plaintext of ``blob``; :class:`DataLoss` when it was altered, sealed
        for other ``aad``, or under a key this ring does not hold."""
        key_id = self.key_id(blob)
        if key_id not in self.keys:
            raise DataLoss(f"sealed with key {key_id}, which the key ring does not hold")
        header = blob[:HEADER_SIZE]
        nonce = blob[HEADER_SIZE : HEADER_SIZE + NONCE_SIZE]
        body, tag = blob[HEADER_SIZE + NONCE_SIZE : -TAG_SIZE], blob[-TAG_SIZE:]
        dec = Cipher(algorithms.SM4(self.keys[key_id]), modes.GCM(nonce, tag)).decryptor()
        dec.authenticate_additional_data(header + aad)
        try:
            return dec.update(body) + dec.finalize()
        except InvalidTag:
            raise DataLoss("sealed data failed its integrity check") from None

    @staticmethod
    def key_id(blob: bytes) -> int:
        """The id of the key ``blob`` was sealed with (re-sealing finds the rows
        still under an old key by it); :class:`DataLoss` when it is no blob."""
        if len(blob) < OVERHEAD or blob[0] != VERSION:
            raise DataLoss("not a sealed value")
        return int.from_bytes(blob[1:HEADER_SIZE], "big")

    def seal_text(self, value: str, aad: bytes) -> bytes | None:
        """A text field sealed; None for an empty one (nothing to protect, and
        NULL keeps "no phone given" distinguishable without a key)."""
        return self.seal(value.encode(), aad) if value else None

    def open_text(self, blob: bytes | None, aad: bytes) -> str:
        return self.open(blob, aad).decode() if blob is not None else ""

    def index(self, value: str, purpose: str = "") -> bytes | None:
        """HMAC-SM3 of the normalised value under the index key (32 bytes), for
        exact-match search; None for an empty value. ``purpose`` ("id_card",
        "phone") keeps digests of different fields apart, so equal strings in
        two columns do not reveal that they are equal."""
        norm = normalise(value)
        if not norm:
            return None
        message = purpose.encode() + b"\x00" + norm.encode()
        return hmac.new(self.index_key, message, "sm3").digest()
