"""Check codes (校验码): 6 random characters printed on the bill for verification."""

from __future__ import annotations

import secrets

__all__ = ["ALPHABET", "LENGTH", "new_check_code"]

# Lower-case hex, as fiscal platforms print it: unambiguous when read aloud.
ALPHABET = "0123456789abcdef"
LENGTH = 6


def new_check_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
