"""The public keys rendering and verification print and check with: the
platform's (supervision seal, countersignature, QR) and the unit's (unit seal,
unit signature)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from clients.fiscal import FiscalClient
from clients.signer import SignerClient
from engine.errors import EbillError
from engine.sm2 import VerifyingKey

__all__ = ["ClientKeys", "Keys", "StaticKeys"]

log = logging.getLogger(__name__)


class Keys(Protocol):
    async def fiscal(self) -> VerifyingKey | None: ...

    async def unit(self, unit_code: str) -> VerifyingKey | None: ...


@dataclass(frozen=True, slots=True)
class StaticKeys:
    """Keys known in advance (tests, benchmarks, an offline check)."""

    fiscal_key: VerifyingKey | None
    unit_keys: dict[str, VerifyingKey] = field(default_factory=dict)

    async def fiscal(self) -> VerifyingKey | None:
        return self.fiscal_key

    async def unit(self, unit_code: str) -> VerifyingKey | None:
        return self.unit_keys.get(unit_code)


class ClientKeys:
    """Keys from the systems themselves: the platform's, pinned when configured
    (EBILL_FISCAL_PUBLIC_KEY_FILE; a platform offering another is not believed),
    and the engine's signing key, which signs for every unit it serves."""

    def __init__(
        self, fiscal: FiscalClient, signer: SignerClient, pinned: VerifyingKey | None = None
    ) -> None:
        self._fiscal, self._signer, self._pinned = fiscal, signer, pinned

    async def fiscal(self) -> VerifyingKey | None:
        if self._pinned is not None:
            return self._pinned
        try:
            return await self._fiscal.public_key()
        except EbillError as exc:
            log.warning("fiscal key unavailable: %s", exc)
            return None

    async def unit(self, unit_code: str) -> VerifyingKey | None:
        try:
            return await self._signer.public_key()
        except EbillError as exc:
            log.warning("unit key unavailable: %s", exc)
            return None
