"""The fiscal platform's base-data and certificate calls, and its CA.

Split from clients/fiscal.py (issuance and stock) to keep each module small; both
speak fiscal.v1 through the same channel machinery (clients/_grpc.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from clients._grpc import DEFAULT_RETRY, GrpcClient, RetryPolicy, call
from config import tuning
from config.tls import TlsFiles
from engine.catalog import BillCodeEntry, ItemEntry
from protos.fiscal.v1 import fiscal_pb2, fiscal_pb2_grpc

__all__ = ["CaClient", "FiscalCatalogClient", "PlatformBaseData"]


@dataclass(frozen=True, slots=True)
class PlatformBaseData:
    """A unit's catalogue as the platform publishes it, at its version."""

    unit_code: str
    unit_name: str
    version: int
    items: tuple[ItemEntry, ...]
    bill_codes: tuple[BillCodeEntry, ...]


def _day(text: str) -> date | None:
    return datetime.strptime(text, "%Y%m%d").date() if text else None


def _day_text(d: date | None) -> str:
    return d.strftime("%Y%m%d") if d else ""


def _base_from_pb(m: fiscal_pb2.BaseData) -> PlatformBaseData:
    return PlatformBaseData(
        unit_code=m.unit_code,
        unit_name=m.unit_name,
        version=m.version,
        items=tuple(
            ItemEntry(
                i.charge_code, i.charge_name, _day(i.valid_from), _day(i.valid_to), "platform"
            )
            for i in m.items
        ),
        bill_codes=tuple(
            BillCodeEntry(b.bus_type, b.bill_code, b.bill_name, True, "platform")
            for b in m.bill_codes
        ),
    )


class FiscalCatalogClient(GrpcClient[fiscal_pb2_grpc.FiscalPlatformStub]):
    def __init__(
        self,
        addr: str,
        timeout_s: float = tuning.FISCAL_ADMIN_TIMEOUT_S,
        *,
        tls: TlsFiles | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        super().__init__(addr, fiscal_pb2_grpc.FiscalPlatformStub, tls=tls, retry=retry)
        self.timeout_s = timeout_s

    async def base_data(self, unit_code: str) -> PlatformBaseData:
        """The unit's charge item catalogue and bill codes (单位基础信息下载)."""
        resp = await call(
            self.stub().GetBaseData,
            fiscal_pb2.GetBaseDataRequest(unit_code=unit_code),
            what="fiscal platform GetBaseData",
            timeout_s=self.timeout_s,
            idempotent=True,
            retry=self._retry,
        )
        return _base_from_pb(resp)

    async def publish_base_data(
        self,
        unit_code: str,
        *,
        items: Sequence[tuple[str, str]] = (),
        withdraw: Sequence[str] = (),
        withdraw_on: date | None = None,
    ) -> PlatformBaseData:
        """The finance bureau's side (sandbox, tests): add or rename items, withdraw some."""
        resp = await call(
            self.stub().PublishBaseData,
            fiscal_pb2.PublishBaseDataRequest(
                unit_code=unit_code,
                items=[fiscal_pb2.BaseItem(charge_code=c, charge_name=n) for c, n in items],
                withdraw=list(withdraw),
                withdraw_on=_day_text(withdraw_on),
            ),
            what="fiscal platform PublishBaseData",
            timeout_s=self.timeout_s,
            idempotent=True,
            retry=self._retry,
        )
        return _base_from_pb(resp)

    async def register_certificate(self, unit_code: str, der: bytes) -> str:
        """Register a unit signing certificate; its serial (hex)."""
        resp = await call(
            self.stub().RegisterCertificate,
            fiscal_pb2.RegisterCertificateRequest(unit_code=unit_code, certificate=der),
            what="fiscal platform RegisterCertificate",
            timeout_s=self.timeout_s,
            idempotent=True,
            retry=self._retry,
        )
        return str(resp.serial)


class CaClient(GrpcClient[fiscal_pb2_grpc.CertificateAuthorityStub]):
    """The certificate authority units get their signing certificates from."""

    def __init__(
        self,
        addr: str,
        timeout_s: float = tuning.FISCAL_ADMIN_TIMEOUT_S,
        *,
        tls: TlsFiles | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        super().__init__(addr, fiscal_pb2_grpc.CertificateAuthorityStub, tls=tls, retry=retry)
        self.timeout_s = timeout_s

    async def issue(
        self,
        *,
        unit_code: str,
        unit_name: str,
        public_key: bytes,
        proof: bytes,
        valid_days: int,
        not_before: datetime | None = None,
    ) -> bytes:
        """A certificate (DER) for ``public_key``; ``proof`` is the key's signature
        over engine.x509.pop_message."""
        resp = await call(
            self.stub().IssueCertificate,
            fiscal_pb2.IssueCertificateRequest(
                unit_code=unit_code,
                unit_name=unit_name,
                public_key=public_key,
                valid_days=valid_days,
                proof=proof,
                not_before=not_before.isoformat() if not_before else "",
            ),
            what="CA IssueCertificate",
            timeout_s=self.timeout_s,
            idempotent=False,
            retry=self._retry,
        )
        return bytes(resp.certificate)

    async def root(self) -> bytes:
        resp = await call(
            self.stub().GetCaCertificate,
            fiscal_pb2.GetCaCertificateRequest(),
            what="CA GetCaCertificate",
            timeout_s=self.timeout_s,
            idempotent=True,
            retry=self._retry,
        )
        return bytes(resp.certificate)
