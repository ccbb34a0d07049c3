"""One data key ring (engine.sealing, SM4-GCM) for the identity tests of a session."""

from __future__ import annotations

from engine.sealing import KeyRing

__all__ = ["fixed_sealer"]

_RING = KeyRing.generate()


def fixed_sealer() -> KeyRing:
    return _RING
