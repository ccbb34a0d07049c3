"""A unit signature the platform hands back for a resumed bill is checked against
the unit's certificate keys, old and new (rotation), not only the default key."""

from __future__ import annotations

from actors.stages import _cert_key
from engine.sm2 import SigningKey


def test_the_certificate_key_that_verifies_is_chosen() -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    doc = b'{"bill":"x"}'
    sig = old.sign(doc)
    assert _cert_key((new.public, old.public), doc, sig) == old.public
    # None verifies: the first key, so that the check refuses the signature.
    assert _cert_key((new.public,), doc, sig) == new.public
    assert _cert_key((), doc, sig) is None
