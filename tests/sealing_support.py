"""A sealer for tests of identity until the data key ring is at hand: AES-GCM
from cryptography (a real AEAD; only the key is fixed)."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["fixed_sealer"]

_KEY = bytes(range(32))


class _Sealer:
    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + AESGCM(_KEY).encrypt(nonce, plaintext, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        return AESGCM(_KEY).decrypt(blob[:12], blob[12:], aad)


def fixed_sealer() -> _Sealer:
    return _Sealer()
