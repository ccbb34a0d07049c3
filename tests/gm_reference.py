"""Independent SM2 verification for tests: gmssl (pure Python) over the documented
canonical bytes, with DER decoded by `cryptography`, not by engine code."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from gmssl import sm2


def gm_verify(public_key: bytes, message: bytes, der_signature: bytes) -> bool:
    """SM2 verify with SM3 and Z_A (default ID), as GB/T 32918 specifies."""
    assert len(public_key) == 65 and public_key[0] == 4
    r, s = decode_dss_signature(der_signature)
    crypt = sm2.CryptSM2(private_key="", public_key=public_key[1:].hex())
    return bool(crypt.verify_with_sm3(f"{r:064x}{s:064x}", message))
