"""The provincial fiscal e-bill platform (财政电子票据系统): one method per RPC the
engine uses, plain values in, frozen dataclasses out (callers never see protos).

Idempotency, which decides whether a call is retried on UNAVAILABLE:

* reads: VerifyBill, GetPublicKey, GetGrantApplications, GetBaseData;
* by design: RegisterUnit (an upsert of the unit's key), CountersignBatch (a bill
  already countersigned is answered with the stored countersignature),
  SubmitGrantApplication and ReturnSegment (the unit's ``ref`` is the key),
  PublishBaseData and RegisterCertificate (clients/fiscal_catalog.py);
* NOT idempotent, never retried: GrantSegment (each call grants a new segment),
  SubmitWriteOff and SubmitAuditReport (each call files a new declaration/report).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from clients._grpc import call
from clients.fiscal_catalog import CatalogueCalls
from config import tuning
from engine.numbers import BillNo, NumberRange
from engine.pipeline import Work
from engine.sm2 import VerifyingKey
from engine.statuses import Medium
from protos.fiscal.v1 import fiscal_pb2

__all__ = [
    "AuditLine",
    "AuditReceipt",
    "BillVerification",
    "CountersignResult",
    "FiscalClient",
    "Grant",
    "GrantDecision",
    "WriteOffDeclaration",
    "WriteOffFigures",
    "WriteOffReceipt",
    "countersign_item",
]


@dataclass(frozen=True, slots=True)
class Grant:
    """A segment the platform granted (赋码)."""

    grant_id: str
    bill_code: str
    numbers: NumberRange


@dataclass(frozen=True, slots=True)
class CountersignResult:
    """The platform's answer for one bill of a countersign batch."""

    bill_code: str
    bill_no: str
    ok: bool
    fiscal_signature: bytes
    countersigned_at: str
    # The unit signature the countersignature covers: on a repeat, the one stored
    # the first time (SM2 signatures are randomised), else the one sent.
    unit_signature: bytes
    error_code: str = ""
    error_message: str = ""
    # The platform's signature over the bill's QR facts (engine.qr).
    qr_signature: bytes = b""


@dataclass(frozen=True, slots=True)
class BillVerification:
    """What the platform knows of a bill (查验); ``found`` False: nothing."""

    found: bool
    total_fen: int = 0
    canonical_sm3: str = ""
    countersigned_at: str = ""
    unit_code: str = ""


@dataclass(frozen=True, slots=True)
class GrantDecision:
    """The platform's state of one grant application."""

    fiscal_ref: str
    # The platform's words: "pending", "granted" or "rejected".
    status: str
    grant_id: str
    bill_code: str
    # The granted numbers; None unless granted.
    numbers: NumberRange | None
    reason: str


@dataclass(frozen=True, slots=True)
class WriteOffFigures:
    """A period's figures as declared to the platform (amounts in fen)."""

    issued_count: int
    issued_fen: int
    red_count: int
    red_fen: int
    red_flushed_count: int
    voided_count: int
    printed_count: int
    used: tuple[NumberRange, ...] = ()
    voided: tuple[NumberRange, ...] = ()
    lost: tuple[NumberRange, ...] = ()

    @property
    def lost_count(self) -> int:
        return sum(r.count for r in self.lost)


@dataclass(frozen=True, slots=True)
class WriteOffDeclaration:
    """A write-off (核销) of one bill code (or paper code) over a period."""

    unit_code: str
    medium: Medium
    code: str
    period_from: date
    period_to: date
    figures: WriteOffFigures
    ref: str


@dataclass(frozen=True, slots=True)
class WriteOffReceipt:
    accepted: bool
    reason: str
    fiscal_ref: str


@dataclass(frozen=True, slots=True)
class AuditLine:
    """Count and total of one bill code over an audit period."""

    bill_code: str
    count: int
    total_fen: int


@dataclass(frozen=True, slots=True)
class AuditReceipt:
    fiscal_ref: str
    # What the platform itself countersigned in the period, per bill code.
    platform: tuple[AuditLine, ...]


def countersign_item(w: Work) -> fiscal_pb2.CountersignItem:
    """What the fiscal platform is asked to countersign for one unit-signed bill."""
    return fiscal_pb2.CountersignItem(
        unit_code=w.unit_code,
        bill_code=w.bill_code,
        bill_no=w.bill_no,
        check_code=w.check_code,
        total_fen=w.total_fen,
        canonical=w.canonical,
        unit_signature=w.unit_signature,
    )


def _day(d: date) -> str:
    return d.strftime("%Y%m%d")


def _range_pb(r: NumberRange) -> fiscal_pb2.NumberRange:
    return fiscal_pb2.NumberRange(start_no=str(r.start), end_no=str(r.end))


class FiscalClient(CatalogueCalls):
    """The fiscal platform at ``addr``, the one client the engine holds for it:
    issuance and stock here, catalogue and certificate registration inherited from
    clients.fiscal_catalog.CatalogueCalls. ``timeout_s`` bounds the administrative
    calls; countersign_batch takes the inline wait of its caller."""

    # The platform's key, fetched on first use (public_key).
    _public_key: VerifyingKey | None = None

    def _t(self, timeout_s: float | None) -> float:
        return timeout_s or self.timeout_s

    async def register_unit(
        self,
        unit_code: str,
        unit_name: str,
        public_key: VerifyingKey,
        timeout_s: float | None = None,
    ) -> None:
        """Tell the platform which key the unit's signing server signs with."""
        await call(
            self.stub().RegisterUnit,
            fiscal_pb2.RegisterUnitRequest(
                unit_code=unit_code, unit_name=unit_name, public_key=public_key.point
            ),
            what="fiscal platform RegisterUnit",
            timeout_s=self._t(timeout_s),
            idempotent=True,
            retry=self._retry,
        )

    async def grant_segment(
        self, unit_code: str, bill_code: str, count: int, timeout_s: float | None = None
    ) -> Grant:
        """A new segment of ``count`` numbers of ``bill_code``. Never retried."""
        resp = await call(
            self.stub().GrantSegment,
            fiscal_pb2.GrantSegmentRequest(unit_code=unit_code, bill_code=bill_code, count=count),
            what="fiscal platform GrantSegment",
            timeout_s=self._t(timeout_s),
            idempotent=False,
            retry=self._retry,
        )
        return Grant(
            grant_id=resp.grant_id,
            bill_code=resp.bill_code,
            numbers=NumberRange.of(int(resp.start_no), int(resp.end_no)),
        )

    async def countersign_batch(
        self, works: Sequence[Work], timeout_s: float | None = None
    ) -> list[CountersignResult]:
        """Verify and countersign (监制) unit-signed bills, one call for all."""
        resp = await call(
            self.stub().CountersignBatch,
            fiscal_pb2.CountersignBatchRequest(items=[countersign_item(w) for w in works]),
            what="fiscal platform CountersignBatch",
            timeout_s=self._t(timeout_s),
            idempotent=True,
            retry=self._retry,
        )
        return [
            CountersignResult(
                bill_code=r.bill_code,
                bill_no=r.bill_no,
                ok=r.ok,
                fiscal_signature=bytes(r.fiscal_signature),
                countersigned_at=r.countersigned_at,
                unit_signature=bytes(r.unit_signature),
                error_code=r.error_code,
                error_message=r.error_message,
                qr_signature=bytes(r.qr_signature),
            )
            for r in resp.results
        ]

    async def verify_bill(
        self, bill_code: str, bill_no: str | BillNo, check_code: str, timeout_s: float | None = None
    ) -> BillVerification:
        """The platform's record of a bill (查验)."""
        resp = await call(
            self.stub().VerifyBill,
            fiscal_pb2.VerifyBillRequest(
                bill_code=bill_code, bill_no=str(bill_no), check_code=check_code
            ),
            what="fiscal platform VerifyBill",
            timeout_s=self._t(timeout_s),
            idempotent=True,
            retry=self._retry,
        )
        return BillVerification(
            found=resp.found,
            total_fen=resp.total_fen,
            canonical_sm3=resp.canonical_sm3,
            countersigned_at=resp.countersigned_at,
            unit_code=resp.unit_code,
        )

    async def public_key(self) -> VerifyingKey:
        """The platform's countersigning key; fetched once per client."""
        if self._public_key is None:
            resp = await call(
                self.stub().GetPublicKey,
                fiscal_pb2.GetPublicKeyRequest(),
                what="fiscal platform GetPublicKey",
                timeout_s=max(self.timeout_s, tuning.KEY_FETCH_TIMEOUT_S),
                idempotent=True,
                retry=self._retry,
            )
            self._public_key = VerifyingKey(resp.public_key)
        return self._public_key

    async def submit_grant_application(
        self,
        unit_code: str,
        bill_code: str,
        count: int,
        ref: str,
        reason: str = "",
        timeout_s: float | None = None,
    ) -> str:
        """Apply for a segment (赋码申请); the platform's reference. ``ref`` is the
        unit's application id: the same ref twice is one application."""
        resp = await call(
            self.stub().SubmitGrantApplication,
            fiscal_pb2.SubmitGrantApplicationRequest(
                unit_code=unit_code, bill_code=bill_code, count=count, ref=ref, reason=reason
            ),
            what="fiscal platform SubmitGrantApplication",
            timeout_s=self._t(timeout_s),
            idempotent=True,
            retry=self._retry,
        )
        return str(resp.fiscal_ref)

    async def grant_decisions(
        self, unit_code: str, fiscal_refs: Sequence[str], timeout_s: float | None = None
    ) -> list[GrantDecision]:
        """The platform's decisions on submitted applications (GetGrantApplications)."""
        resp = await call(
            self.stub().GetGrantApplications,
            fiscal_pb2.GetGrantApplicationsRequest(
                unit_code=unit_code, fiscal_refs=list(fiscal_refs)
            ),
            what="fiscal platform GetGrantApplications",
            timeout_s=self._t(timeout_s),
            idempotent=True,
            retry=self._retry,
        )
        return [
            GrantDecision(
                fiscal_ref=d.fiscal_ref,
                status=d.status,
                grant_id=d.grant_id,
                bill_code=d.bill_code,
                numbers=(
                    NumberRange.of(int(d.start_no), int(d.end_no))
                    if d.start_no and d.end_no
                    else None
                ),
                reason=d.reason,
            )
            for d in resp.decisions
        ]

    async def return_segment(
        self,
        unit_code: str,
        bill_code: str,
        numbers: NumberRange,
        ref: str,
        timeout_s: float | None = None,
    ) -> None:
        """Give unused numbers back (退库); ``ref`` makes a repeat one return."""
        await call(
            self.stub().ReturnSegment,
            fiscal_pb2.ReturnSegmentRequest(
                unit_code=unit_code,
                bill_code=bill_code,
                start_no=str(numbers.start),
                end_no=str(numbers.end),
                ref=ref,
            ),
            what="fiscal platform ReturnSegment",
            timeout_s=self._t(timeout_s),
            idempotent=True,
            retry=self._retry,
        )

    async def submit_write_off(
        self, declaration: WriteOffDeclaration, timeout_s: float | None = None
    ) -> WriteOffReceipt:
        """Declare a write-off (核销); accepted or rejected with a reason. Never
        retried: each call files a new declaration."""
        d, f = declaration, declaration.figures
        resp = await call(
            self.stub().SubmitWriteOff,
            fiscal_pb2.SubmitWriteOffRequest(
                unit_code=d.unit_code,
                medium=str(d.medium),
                code=d.code,
                period_from=_day(d.period_from),
                period_to=_day(d.period_to),
                ref=d.ref,
                figures=fiscal_pb2.WriteOffFigures(
                    issued_count=f.issued_count,
                    issued_fen=f.issued_fen,
                    red_count=f.red_count,
                    red_fen=f.red_fen,
                    red_flushed_count=f.red_flushed_count,
                    voided_count=f.voided_count,
                    lost_count=f.lost_count,
                    printed_count=f.printed_count,
                    used=[_range_pb(r) for r in f.used],
                    voided=[_range_pb(r) for r in f.voided],
                    lost=[_range_pb(r) for r in f.lost],
                ),
            ),
            what="fiscal platform SubmitWriteOff",
            timeout_s=self._t(timeout_s),
            idempotent=False,
            retry=self._retry,
        )
        return WriteOffReceipt(
            accepted=resp.accepted, reason=resp.reason, fiscal_ref=resp.fiscal_ref
        )

    async def submit_audit_report(
        self,
        unit_code: str,
        period_from: date,
        period_to: date,
        lines: Sequence[AuditLine],
        timeout_s: float | None = None,
    ) -> AuditReceipt:
        """Report a period's figures (审验); the receipt carries the platform's own.
        Never retried: each call files a new report."""
        resp = await call(
            self.stub().SubmitAuditReport,
            fiscal_pb2.SubmitAuditReportRequest(
                unit_code=unit_code,
                period_from=_day(period_from),
                period_to=_day(period_to),
                lines=[
                    fiscal_pb2.AuditLine(
                        bill_code=x.bill_code, count=x.count, total_fen=x.total_fen
                    )
                    for x in lines
                ],
            ),
            what="fiscal platform SubmitAuditReport",
            timeout_s=self._t(timeout_s),
            idempotent=False,
            retry=self._retry,
        )
        return AuditReceipt(
            fiscal_ref=resp.fiscal_ref,
            platform=tuple(
                AuditLine(bill_code=p.bill_code, count=p.count, total_fen=p.total_fen)
                for p in resp.platform
            ),
        )
