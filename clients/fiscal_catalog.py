"""The fiscal platform's base-data and certificate calls (单位基础信息, 证书登记).

Not a client of its own: :class:`CatalogueCalls` is the base clients/fiscal.py's
FiscalClient builds on, so the engine holds one client, one channel, for the
platform (kept in its own module so each module stays small). The CA the units
get their certificates from is a service of its own: clients/ca.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from clients._grpc import GrpcClient, call
from config import tuning
from engine.catalog import BillCodeEntry, ItemEntry
from protos.fiscal.v1 import fiscal_pb2, fiscal_pb2_grpc

__all__ = ["CatalogueCalls", "PlatformBaseData"]


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


class CatalogueCalls(GrpcClient[fiscal_pb2_grpc.FiscalPlatformStub]):
    """The platform's catalogue and certificate registration calls, bounded by the
    client's administrative timeout (``timeout_s``)."""

    stub_class = fiscal_pb2_grpc.FiscalPlatformStub
    default_timeout_s = tuning.FISCAL_ADMIN_TIMEOUT_S

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
