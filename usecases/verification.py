"""Verification (查验): a holder gives a bill's code, number and check code, or
the text of its QR code, and learns whether it is authentic: the unit signature,
the platform's countersignature and QR signature checked here with the public
keys, and whether it has been red-flushed. Personal data is masked: whoever
holds the three codes may learn that the bill is real, not who paid it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

from clients.qrimage import QrReader
from engine.errors import NotFound, ResourceExhausted
from engine.model import BillStatus, IssuedBill
from engine.qr import facts_of_canonical, parse
from engine.verification import Checks, Verdict, check_signatures
from storage.ratelimit import Count
from usecases.rendering.service import Rendering
from usecases.rendering.view import BillView

__all__ = ["Counter", "Guard", "Verification", "VerificationResult", "VerifyLimits"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class VerifyLimits:
    """Bounds of the public verification (EBILL_VERIFY_* settings)."""

    # Verifications per client address and window: a person checks a few bills,
    # an insurer's office behind one address some dozens a minute.
    per_address: int = 60
    address_window_s: int = 60
    # Wrong check codes per bill and window. The check code is 6 hex digits
    # (16.7 million values): at 10 an hour, guessing one takes about 95 years.
    misses_per_bill: int = 10
    bill_window_s: int = 3600


class Counter(Protocol):
    """Request counters shared by every engine (storage.ratelimit.PgCounter)."""

    async def hit(self, key: str, window_s: int) -> Count: ...

    async def peek(self, key: str, window_s: int) -> Count: ...


class Guard:
    """The rate limits of the public pages. A wrong check code answers like an
    unknown bill, but without a bound the answers would still tell, one guess at
    a time, which of the 16.7 million codes is right; so misses are counted per
    bill (whether or not it exists, which the count must not reveal either),
    and a bill with too many is refused for the rest of its window, right code
    or not. Verifications are also counted per client address."""

    def __init__(self, counter: Counter | None, limits: VerifyLimits = VerifyLimits()) -> None:
        # None: no limits (pages served from memory in tests of their look).
        self.counter = counter
        self.limits = limits

    async def address(self, client: str) -> None:
        """Count one verification from ``client``; refuse past the bound."""
        if self.counter is None:
            return
        lim = self.limits
        c = await self.counter.hit(f"verify:addr:{client}", lim.address_window_s)
        if c.n > lim.per_address:
            raise ResourceExhausted(
                "too many verifications from this address", retry_after_s=max(1.0, c.left_s)
            )

    async def lookup(self, bill_code: str, bill_no: str, find: Callable[[], Awaitable[T]]) -> T:
        """``find()`` (which raises NotFound for a wrong check code), unless this
        bill has had too many misses; a miss is counted."""
        if self.counter is None:
            return await find()
        lim = self.limits
        key = f"verify:miss:{bill_code[:20]}/{bill_no[:20]}"
        seen = await self.counter.peek(key, lim.bill_window_s)
        if seen.n >= lim.misses_per_bill:
            raise ResourceExhausted(
                "too many wrong check codes for this bill", retry_after_s=max(1.0, seen.left_s)
            )
        try:
            return await find()
        except NotFound:
            await self.counter.hit(key, lim.bill_window_s)
            raise


@dataclass(frozen=True, slots=True)
class VerificationResult:
    found: bool
    authentic: bool
    # Why not authentic, in the holder's words; empty when authentic.
    reason: str = ""
    checks: Checks | None = None
    view: BillView | None = None
    status: str = ""
    status_text: str = ""
    red_text: str = ""

    def to_json(self) -> dict[str, Any]:
        v = self.view
        return {
            "found": self.found,
            "authentic": self.authentic,
            "reason": self.reason,
            "status": self.status,
            "status_text": self.status_text,
            "red_flush": self.red_text,
            "checks": None
            if self.checks is None
            else {k: str(x) for k, x in asdict(self.checks).items()},
            "bill": None
            if v is None
            else {
                "bill_name": v.bill_name,
                "unit_name": v.unit_name,
                "bill_code": v.bill_code,
                "bill_no": v.bill_no,
                "issue_date": v.issue_date,
                "payer": v.payer_name,
                "total": v.total,
                "total_capitals": v.total_capitals,
                "red_of": v.red_of,
                "red_by": v.red_by,
            },
        }


def _status_texts(bill: IssuedBill) -> tuple[str, str]:
    if bill.red_of:
        return f"红字票据，冲销 {bill.red_of}", f"本票据为红字票据，冲销 {bill.red_of}"
    if bill.status is BillStatus.RED_FLUSHED or bill.red_by:
        return f"已冲红（红字票据 {bill.red_by}）", f"已冲红，红字票据 {bill.red_by}"
    if bill.status is BillStatus.PENDING_COUNTERSIGN:
        return "待财政监制", "未冲红"
    return "正常", "未冲红"


_NOT_FOUND = VerificationResult(
    found=False, authentic=False, reason="查无此票：票据代码、号码或校验码不符"
)


class Verification:
    def __init__(
        self, rendering: Rendering, guard: Guard | None = None, reader: QrReader | None = None
    ) -> None:
        self._rendering = rendering
        self.guard = guard or Guard(None)
        self.reader = reader or QrReader()

    async def _bill(self, bill_code: str, bill_no: str, check_code: str) -> IssuedBill:
        return await self.guard.lookup(
            bill_code, bill_no, lambda: self._rendering.bill(bill_code, bill_no, check_code)
        )

    async def by_number(self, bill_code: str, bill_no: str, check_code: str) -> VerificationResult:
        """Raises ResourceExhausted when the bill has had too many wrong check codes."""
        try:
            bill = await self._bill(bill_code.strip(), bill_no.strip(), check_code.strip())
        except NotFound:
            return _NOT_FOUND
        return await self._result(bill)

    async def by_qr(self, text: str) -> VerificationResult:
        """A scanned QR: its own signature checked offline first, then the bill it
        names, whose stored facts must be the ones the QR states."""
        try:
            payload = parse(text)
        except ValueError as exc:
            return VerificationResult(found=False, authentic=False, reason=f"二维码无效：{exc}")
        f = payload.facts
        key = await self._rendering.keys.fiscal()
        signed = key is not None and payload.verify(key)
        try:
            if signed:
                # The platform signed this check code: it was read, not guessed,
                # so the per-bill bound on misses (which anyone could exhaust to
                # lock a bill's verification) does not apply.
                bill = await self._rendering.bill(f.bill_code, f.bill_no, f.check_code)
            else:
                # An unsigned or forged QR's check code is guessed as easily as
                # a typed one.
                bill = await self._bill(f.bill_code, f.bill_no, f.check_code)
        except NotFound:
            return _NOT_FOUND
        result = await self._result(bill)
        if payload.signature:
            if not signed:
                return _with(result, "二维码签名无效：二维码内容被篡改或非财政平台签发")
        elif bill.qr_signature:
            # The platform signed this bill's QR: one without the signature was cut.
            return _with(result, "二维码缺少财政签名")
        # An unsigned QR (a bill countersigned before QR signatures) is only as
        # good as its facts being exactly the stored, signed bill's.
        if f != facts_of_canonical(bill.canonical):
            # Signed, but not this bill's facts: a QR moved onto another bill.
            return _with(result, "二维码内容与票据不符")
        return result

    async def by_picture(self, data: bytes) -> VerificationResult:
        """A photo or screenshot of a bill or notice slip: its QR read (clients.
        qrimage), then checked as :meth:`by_qr`. Of several codes in a picture
        (a hospital's own next to the bill's) the first that is a bill's counts."""
        texts = await self.reader.read(data)
        if not texts:
            return VerificationResult(
                found=False, authentic=False, reason="图片中未找到二维码：请拍清票据上的二维码"
            )
        for text in texts:
            try:
                parse(text)
            except ValueError:
                continue
            return await self.by_qr(text)
        # Codes, but none a bill's: its reason says why (二维码无效：...).
        return await self.by_qr(texts[0])

    async def _result(self, bill: IssuedBill) -> VerificationResult:
        keys = self._rendering.keys
        checks = check_signatures(
            bill.canonical,
            bill.unit_signature,
            bill.fiscal_signature,
            bill.qr_signature,
            fiscal_key=await keys.fiscal(),
            unit_key=await keys.unit(bill.unit_code),
        )
        status_text, red_text = _status_texts(bill)
        view = await self._rendering.view(bill, masked=True)
        reason = ""
        if not checks.ok:
            failed = [
                label
                for label, verdict in (
                    ("单位签名", checks.unit_signature),
                    ("财政监制签名", checks.countersignature),
                    ("二维码签名", checks.qr_signature),
                )
                if verdict is not Verdict.VALID
                and not (label == "二维码签名" and verdict is Verdict.ABSENT)
            ]
            reason = "、".join(failed) + "未通过验证"
        return VerificationResult(
            found=True,
            authentic=checks.ok,
            reason=reason,
            checks=checks,
            view=view,
            status=bill.status.value,
            status_text=status_text,
            red_text=red_text,
        )


def _with(result: VerificationResult, reason: str) -> VerificationResult:
    return VerificationResult(
        found=result.found,
        authentic=False,
        reason=reason,
        checks=result.checks,
        view=result.view,
        status=result.status,
        status_text=result.status_text,
        red_text=result.red_text,
    )
