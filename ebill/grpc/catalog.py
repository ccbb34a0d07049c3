"""CatalogService over gRPC: read the request, call the catalogue (or
certificates) use case, map the answer back. Nothing else happens here.

Catalogue calls are the bill office's (an Operator without place_code).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeAlias

import grpc

from engine.catalog import ChangeReport
from engine.errors import InvalidArgument
from protos.ebill.v1 import catalog_pb2, catalog_pb2_grpc, stock_pb2
from storage.catalog.certs import StoredCertificate
from usecases.catalog import Catalogue
from usecases.certificates import Certificates
from wire.catalog import (
    change_to_pb,
    entry_from_pb,
    entry_to_pb,
    kind_of,
    optional_day,
    report_to_pb,
)
from wire.requests import operator_any, operator_office

__all__ = ["CatalogServicer"]

Ctx: TypeAlias = grpc.aio.ServicerContext
MAX_ENTRIES = 10_000


def _cert_pb(c: StoredCertificate, now: datetime) -> catalog_pb2.UnitCertificate:
    return catalog_pb2.UnitCertificate(
        serial=c.serial,
        key_id=c.key_id,
        subject=c.subject,
        not_before=c.not_before.isoformat(),
        not_after=c.not_after.isoformat(),
        active=c.active,
        registered=c.registered,
        der=c.der,
        days_left=int((c.not_after - now).total_seconds() // 86400),
    )


def _key_id(text: str) -> str:
    if not text or not text.replace("-", "").replace("_", "").isalnum():
        raise InvalidArgument("key_id: letters, digits, '-' or '_'", field="key_id")
    return text


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, catalogue: Catalogue, certificates: Certificates) -> None:
        self._catalogue = catalogue
        self._certs = certificates

    async def ListEntries(
        self, request: catalog_pb2.ListEntriesRequest, context: Ctx
    ) -> catalog_pb2.CatalogEntries:
        unit, _ = operator_any(request.operator)
        entries = await self._catalogue.entries(unit, kind_of(request.kind))
        return catalog_pb2.CatalogEntries(entries=[entry_to_pb(e) for e in entries])

    async def UpsertEntries(
        self, request: catalog_pb2.UpsertEntriesRequest, context: Ctx
    ) -> catalog_pb2.CatalogChangeReport:
        unit, who = operator_office(request.operator)
        if len(request.entries) > MAX_ENTRIES:
            raise InvalidArgument(f"entries: at most {MAX_ENTRIES}", field="entries")
        entries = [entry_from_pb(e, unit, f"entries[{i}]") for i, e in enumerate(request.entries)]
        return report_to_pb(await self._catalogue.upsert(unit, entries, who))

    async def WithdrawEntry(
        self, request: catalog_pb2.WithdrawEntryRequest, context: Ctx
    ) -> catalog_pb2.CatalogChangeReport:
        unit, who = operator_office(request.operator)
        change = await self._catalogue.withdraw(
            unit,
            kind_of(request.kind),
            request.key,
            who,
            on=optional_day(request.on, "on"),
        )
        report = (
            ChangeReport(unchanged=1)
            if change is None
            else ChangeReport(withdrawn=1, changes=(change,))
        )
        return report_to_pb(report)

    async def ListChanges(
        self, request: catalog_pb2.ListChangesRequest, context: Ctx
    ) -> catalog_pb2.CatalogChangeReport:
        unit, _ = operator_any(request.operator)
        rows = await self._catalogue.changes(
            unit, after_id=request.after_id, limit=request.limit or 100
        )
        return catalog_pb2.CatalogChangeReport(changes=[change_to_pb(c, i) for i, c in rows])

    async def SyncCatalog(
        self, request: stock_pb2.OperatorOnly, context: Ctx
    ) -> catalog_pb2.CatalogSyncReport:
        unit, who = operator_office(request.operator)
        sync = await self._catalogue.sync(unit, who)
        return catalog_pb2.CatalogSyncReport(
            from_version=sync.from_version,
            to_version=sync.to_version,
            report=report_to_pb(sync.report),
        )

    async def IssueCertificate(
        self, request: catalog_pb2.IssueCertificateRequest, context: Ctx
    ) -> catalog_pb2.UnitCertificate:
        unit, who = operator_office(request.operator)
        cert = await self._certs.issue(
            unit, _key_id(request.key_id), who, valid_days=request.valid_days or 365
        )
        return _cert_pb(cert, datetime.now(UTC))

    async def ImportCertificate(
        self, request: catalog_pb2.ImportCertificateRequest, context: Ctx
    ) -> catalog_pb2.UnitCertificate:
        unit, who = operator_office(request.operator)
        cert = await self._certs.import_(unit, _key_id(request.key_id), request.certificate, who)
        return _cert_pb(cert, datetime.now(UTC))

    async def ActivateCertificate(
        self, request: catalog_pb2.CertificateRef, context: Ctx
    ) -> catalog_pb2.UnitCertificate:
        unit, who = operator_office(request.operator)
        return _cert_pb(await self._certs.activate(unit, request.serial, who), datetime.now(UTC))

    async def ListCertificates(
        self, request: stock_pb2.OperatorOnly, context: Ctx
    ) -> catalog_pb2.UnitCertificates:
        unit, _ = operator_any(request.operator)
        now = datetime.now(UTC)
        return catalog_pb2.UnitCertificates(
            certificates=[_cert_pb(c, now) for c in await self._certs.of_unit(unit)]
        )
