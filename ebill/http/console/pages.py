"""The console's pages: each reads the form or query, checks the scope, calls a
use case and renders a template. Permissions are checked before (auth.guarded)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ebill.http.console.auth import COOKIE, csrf_token
from ebill.http.errors import HTTP_STATUS
from engine.errors import EbillError, InvalidArgument, NotFound, PermissionDenied, Unavailable
from engine.identity import Permission, Principal
from engine.lifecycle import BillKey
from engine.model import CST
from engine.money import format_fen
from engine.operator import Operator
from usecases.bill_archive import Archive
from usecases.console import ConsoleQueries
from usecases.lifecycle import BillQuery, RedFlush
from usecases.reports import ExportFormat, IssuanceGroup, Reports, Table, TrendStep, export
from usecases.stock import alerts as stock_alerts
from usecases.stock import movements, writeoff

__all__ = ["STATIC", "Console"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")

_env = Environment(
    loader=PackageLoader("ebill.http.console", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["yuan"] = format_fen
_env.filters["urlencode_q"] = lambda q, after: urlencode({**dict(q), "after": str(after)})
_env.filters["stamp"] = lambda at: at.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S") if at else ""

# The menu: label, path, the permission it needs.
MENU = (
    ("首页", "/console/", Permission.BILL_READ),
    ("票据查询", "/console/bills", Permission.BILL_READ),
    ("票据库存", "/console/stock", Permission.STOCK_READ),
    ("统计报表", "/console/reports", Permission.REPORT_READ),
    ("电子档案", "/console/archive", Permission.AUDIT_READ),
    ("核销稽核", "/console/writeoffs", Permission.WRITEOFF_MANAGE),
    ("用户权限", "/console/identity", Permission.IDENTITY_MANAGE),
    ("基础数据", "/console/catalog", Permission.CATALOG_READ),
    ("巡检报告", "/console/inspection", Permission.AUDIT_READ),
)

# Bill statuses and kinds as the office says them.
STATUSES = {
    "issued": "已开具",
    "red_flushed": "已红冲",
    "pending_countersign": "待财政签名",
    "reserved": "处理中",
    "rejected": "被拒",
}
KINDS = {
    "outpatient": "门诊", "inpatient": "住院", "emergency": "急诊", "checkup": "体检",
    "registration": "挂号", "deposit": "预交金", "current_account": "往来结算",
    "donation": "捐赠", "non_tax": "非税收入",
}  # fmt: skip

REPORTS = {
    "issuance": "开票统计",
    "stock_flow": "票据收发存",
    "paper": "纸质票据使用",
    "back_entries": "原票补录",
    "trend": "开票峰值趋势",
}


def _today() -> date:
    return datetime.now(UTC).astimezone(CST).date()


def _day(request: Request, name: str, default: date) -> date:
    raw = request.query_params.get(name, "")
    if not raw:
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidArgument(f"{name} must be a date like 2026-11-23", field=name) from None


def _whole(raw: str, name: str) -> int:
    """A whole number from a form, query or path, refused with its name."""
    if not raw.isdigit():
        raise InvalidArgument(f"{name} must be a whole number, got {raw[:20]!r}", field=name)
    return int(raw)


class Console:
    def __init__(self, services: Any) -> None:
        self.s = services
        self.figures = Reports(services.pool)
        self.queries = ConsoleQueries(services.pool)
        # The archive needs the engine's rendering and signer (ebill/server.py).
        self.archive = (
            Archive(services.pool, services.ring, services.rendering, services.signer)
            if getattr(services, "rendering", None) is not None
            else None
        )

    # -- rendering -----------------------------------------------------------

    def render(
        self, request: Request, name: str, who: Principal | None, status: int = 200, **ctx: Any
    ) -> HTMLResponse:
        token = request.cookies.get(COOKIE, "")
        menu = [(label, path) for label, path, perm in MENU if who is not None and who.can(perm)]
        html = _env.get_template(name).render(
            who=who, menu=menu, csrf=csrf_token(token) if token else "", path=request.url.path,
            Permission=Permission, **ctx,
        )  # fmt: skip
        return HTMLResponse(html, status_code=status)

    def html_errors(
        self, endpoint: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A refusal on a page is a page saying why (with the field), not JSON."""

        async def wrapped(request: Request) -> Response:
            try:
                return await endpoint(request)
            except EbillError as exc:
                status = HTTP_STATUS.get(exc.code, 500)
                return self.render(request, "error.html", None, status=status, error=exc)

        return wrapped

    # -- sign-in -------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        return self.render(request, "login.html", None, next=request.query_params.get("next", ""))

    async def login(self, request: Request) -> Response:
        form = await request.form()
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        code, target = str(form.get("totp", "")), str(form.get("next", "")) or "/console/"
        if not target.startswith("/console/"):  # never an open redirect
            target = "/console/"
        try:
            token = await self.s.identity.login(username, password, code)
        except EbillError as exc:
            return self.render(request, "login.html", None, status=401, error=exc, next=target)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE, token, httponly=True, secure=True, samesite="strict", path="/console"
        )
        return response

    async def logout(self, request: Request, who: Principal) -> Response:
        await self.s.identity.logout(request.cookies.get(COOKIE, ""))
        response = RedirectResponse("/console/login", status_code=303)
        response.delete_cookie(COOKIE, path="/console")
        return response

    # -- pages ---------------------------------------------------------------

    def _places(self, who: Principal, points: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(c, n) for c, n in points if who.covers(who.unit_code, c)]

    async def dashboard(self, request: Request, who: Principal) -> Response:
        today = _today()
        points = self._places(who, await self.queries.issuing_points(who.unit_code))
        # A window's figures are its own, total included; a principal of several
        # points (not the office) sees each of them and no unit total.
        own = min(who.scope.places) if len(who.scope.places) == 1 and not who.scope.office else ""
        table = await self.figures.issuance(
            who.unit_code, today, today, IssuanceGroup.PLACE, place_code=own
        )
        with_total = bool(own) or who.scope.office
        rows = [
            r for r in table.rows
            if (r[0] == "合计" and with_total) or who.covers(who.unit_code, str(r[0]))
        ]  # fmt: skip
        backlog = await self.s.issuance.backlog()
        place = "" if who.scope.office else min(who.scope.places, default="")
        alerts = (
            await stock_alerts.list_alerts(self.s.pool, who.unit_code, place, mark_read=False)
            if who.can(Permission.STOCK_READ)
            else []
        )
        return self.render(
            request, "dashboard.html", who, today=today, issuance=table, rows=rows,
            backlog=backlog, alerts=alerts, points=points,
        )  # fmt: skip

    async def bills(self, request: Request, who: Principal) -> Response:
        q = request.query_params
        points = self._places(who, await self.queries.issuing_points(who.unit_code))
        # The bill office searches every point at once ("" = all points) unless
        # it picks one; a window searches its own point.
        default = "" if who.scope.office else (points[0][0] if points else "-")
        place = q.get("place", default)
        if place and not who.covers(who.unit_code, place):
            raise PermissionDenied(f"issuing point {place} is outside your scope", field="place")
        if not place and not who.scope.office:
            raise PermissionDenied("every point at once is the bill office's search", field="place")
        query = BillQuery(
            payer_id_card_no=q.get("id_card", ""),
            payer_tel=q.get("tel", ""),
            payer_card_no=q.get("card", ""),
            payer_name=q.get("name", ""),
            bus_no=q.get("bus_no", ""),
            bill_code=q.get("bill_code", ""),
            bill_no=q.get("bill_no", ""),
            status=q.get("status", ""),
            from_date=_day(request, "from", _today()) if q.get("from") else None,
            to_date=_day(request, "to", _today()) if q.get("to") else None,
            bill_kind=q.get("kind", ""),
            red=q.get("red", ""),
            page_size=50,
            after_id=_whole(q.get("after", "") or "0", "after"),
        )
        page = await self.s.lifecycle.list_bills(
            Operator(who.unit_code, who.name, place), query,
            reveal_pii=who.can(Permission.BILL_READ_PII), office=who.scope.office,
        )  # fmt: skip
        return self.render(
            request, "bills.html", who, points=points, place=place, q=q, page=page,
            office=who.scope.office, statuses=STATUSES, kinds=KINDS,
        )  # fmt: skip

    async def find_bill(self, request: Request, who: Principal) -> Any:
        p = request.path_params
        bill = await self.s.issuance.get_bill(
            BillKey.number(p["bill_code"], p["bill_no"]),
            reveal_pii=who.can(Permission.BILL_READ_PII),
        )
        if not who.covers(bill.unit_code, bill.place_code):
            # The same answer as a bill that does not exist: scope tells nothing.
            raise NotFound(f"no bill {p['bill_code']}/{p['bill_no']}")
        return bill

    async def bill(self, request: Request, who: Principal) -> Response:
        bill = await self.find_bill(request, who)
        events = await self.queries.bill_events(bill.bill_id)
        h5 = self.s.h5_url(bill.bill_code, bill.bill_no, bill.check_code) if self.s.h5_url else ""
        return self.render(request, "bill.html", who, bill=bill, events=events, h5=h5)

    async def red_flush_form(self, request: Request, who: Principal) -> Response:
        bill = await self.find_bill(request, who)
        return self.render(request, "red_flush.html", who, bill=bill)

    async def red_flush(self, request: Request, who: Principal) -> Response:
        bill = await self.find_bill(request, who)
        form = await request.form()
        reason = str(form.get("reason", "")).strip()
        if not reason:
            raise InvalidArgument("say why the bill is red-flushed", field="reason")
        # The red bill's serial is derived from the original: pressing the button
        # twice, or a retried post, gives the same red bill and never a second.
        done = await self.s.lifecycle.red_flush(
            Operator(who.unit_code, who.name, bill.place_code),
            RedFlush(
                original=BillKey.number(bill.bill_code, bill.bill_no),
                bus_no=f"RED-{bill.bill_code}-{bill.bill_no}",
                reason=reason,
            ),
        )
        red = done.red_bill
        return RedirectResponse(f"/console/bills/{red.bill_code}/{red.bill_no}", status_code=303)

    async def stock(self, request: Request, who: Principal) -> Response:
        place = "" if who.scope.office else min(who.scope.places, default="")
        identity = await movements.identity(self.s.pool, who.unit_code) if who.scope.office else []
        pending = await self.queries.pending_requisitions(who.unit_code, place)
        segments = await movements.segments(
            self.s.pool, who.unit_code, place_code=place or None, office=who.scope.office
        )
        rules = await self.queries.alert_rules(who.unit_code, place)
        return self.render(
            request, "stock.html", who, identity=identity, pending=pending, segments=segments,
            done=request.query_params.get("done", ""), rules=rules,
        )  # fmt: skip

    async def decide_requisition(self, request: Request, who: Principal) -> Response:
        if not who.scope.office:
            raise PermissionDenied("requisitions are decided by the bill office")
        form = await request.form()
        approve = form.get("decision") == "approve"
        req_id = _whole(request.path_params["req_id"], "req_id")
        moved = await movements.decide_requisition(
            self.s.pool, unit_code=who.unit_code, req_id=req_id, approve=approve,
            operator=who.name, reason=str(form.get("reason", "")),
        )  # fmt: skip
        log.info("requisition %s %s by %s: %s", req_id, approve, who.name, moved)
        verdict = "approved" if approve else "rejected"
        return RedirectResponse(f"/console/stock?done={req_id}-{verdict}", status_code=303)

    async def _report(self, request: Request, who: Principal) -> Table | None:
        q = request.query_params
        kind = q.get("kind", "")
        if not kind:
            return None
        if kind not in REPORTS:
            raise InvalidArgument(f"no report {kind!r}", field="kind")
        today = _today()
        first, last = _day(request, "from", today.replace(day=1)), _day(request, "to", today)
        place = q.get("place", "")
        if place and not who.covers(who.unit_code, place):
            raise PermissionDenied(f"issuing point {place} is outside your scope", field="place")
        if not who.scope.office and not place:
            place = min(who.scope.places, default="-")
        unit = who.unit_code
        if kind == "issuance":
            try:
                by = IssuanceGroup(q.get("by", "day"))
            except ValueError:
                raise InvalidArgument("group by day, place, cashier, bus_type or pay_channel",
                                      field="by") from None  # fmt: skip
            return await self.figures.issuance(unit, first, last, by, place_code=place)
        if kind == "stock_flow":
            if not who.scope.office:
                raise PermissionDenied("the unit's stock flow is the bill office's report")
            return await self.figures.stock_flow(unit, first, last)
        if kind == "paper":
            return await self.figures.paper_usage(unit, first, last, place_code=place)
        if kind == "back_entries":
            return await self.figures.back_entries(unit, first, last, place_code=place)
        step = TrendStep.HOUR if q.get("step") == "hour" else TrendStep.DAY
        if not who.scope.office:
            raise PermissionDenied("the unit's peak trend is the bill office's report")
        return await self.figures.trend(unit, first, last, step)

    async def reports_page(self, request: Request, who: Principal) -> Response:
        table = await self._report(request, who)
        chart: list[tuple[str, int, float]] = []
        if table is not None and request.query_params.get("kind") == "trend" and table.rows:
            peak = max(int(r[1]) for r in table.rows) or 1
            chart = [(str(r[0]), int(r[1]), int(r[1]) / peak) for r in table.rows]
        return self.render(
            request, "reports.html", who, table=table, reports=REPORTS, q=request.query_params,
            chart=chart, query=request.url.query,
        )  # fmt: skip

    reports = reports_page  # the handler table's name

    async def download(self, request: Request, who: Principal) -> Response:
        table = await self._report(request, who)
        if table is None:
            raise InvalidArgument("choose a report", field="kind")
        try:
            fmt = ExportFormat(request.query_params.get("format", "xlsx"))
        except ValueError:
            raise InvalidArgument("format is csv or xlsx", field="format") from None
        media = {
            ExportFormat.CSV: "text/csv; charset=utf-8",
            ExportFormat.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }[fmt]
        name = f"{request.query_params.get('kind')}-{_today():%Y%m%d}.{fmt.value}"
        return Response(
            export(table, fmt),
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    # -- archive -------------------------------------------------------------

    def _period(self, request: Request, who: Principal) -> tuple[str, date, date]:
        q = request.query_params
        today = _today()
        first, last = _day(request, "from", today), _day(request, "to", today)
        place = q.get("place", "" if who.scope.office else min(who.scope.places, default="-"))
        if place and not who.covers(who.unit_code, place):
            raise PermissionDenied(f"issuing point {place} is outside your scope", field="place")
        if not place and not who.scope.office:
            raise PermissionDenied("the whole unit's archive is the bill office's", field="place")
        return place, first, last

    def _archive(self) -> Archive:
        if self.archive is None:
            raise Unavailable("the archive needs the engine's rendering and signer")
        return self.archive

    async def archive_page(self, request: Request, who: Principal) -> Response:
        place, first, last = self._period(request, who)
        missing = await self._archive().difference(who.unit_code, first, last, place_code=place)
        archived = await self.queries.archived_count(who.unit_code, first, last, place)
        points = self._places(who, await self.queries.issuing_points(who.unit_code))
        query = urlencode({"place": place, "from": first.isoformat(), "to": last.isoformat()})
        return self.render(
            request, "archive.html", who, points=points, place=place, first=first, last=last,
            missing=missing, archived=archived, query=query, office=who.scope.office,
            statuses=STATUSES, done=request.query_params.get("done", ""),
            can_download=who.can(Permission.BILL_READ_PII),
            can_retry=who.can(Permission.BILL_ISSUE),
        )  # fmt: skip

    async def archive_download(self, request: Request, who: Principal) -> Response:
        place, first, last = self._period(request, who)
        made = await self._archive().zip(who.unit_code, first, last, place_code=place)
        log.info("archive %s (%d bills) downloaded by %s", made.name, made.bills, who.label)
        return Response(
            made.data,
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{made.name}"'},
        )

    async def archive_retry(self, request: Request, who: Principal) -> Response:
        place, first, last = self._period(request, who)
        form = await request.form()
        asked = {int(str(v)) for v in form.getlist("bill") if str(v).isdigit()}
        # Only bills of this page's period and scope, whatever the form says.
        missing = await self._archive().difference(who.unit_code, first, last, place_code=place)
        ids = [u.bill_id for u in missing if u.bill_id in asked]
        done = await self._archive().retry(who.unit_code, ids, operator=who.label)
        query = urlencode(
            {"place": place, "from": first.isoformat(), "to": last.isoformat(), "done": done}
        )
        return RedirectResponse(f"/console/archive?{query}", status_code=303)

    # -- administration (read-only) ---------------------------------------------

    async def writeoffs(self, request: Request, who: Principal) -> Response:
        if not who.scope.office:
            raise PermissionDenied("write-offs are the bill office's")
        return self.render(
            request, "writeoffs.html", who,
            writeoffs=await writeoff.list_write_offs(self.s.pool, who.unit_code),
            audits=await self.queries.audit_reports(who.unit_code),
        )  # fmt: skip

    async def identity(self, request: Request, who: Principal) -> Response:
        return self.render(
            request, "identity.html", who,
            staff=await self.queries.staff(who.unit_code),
            roles=await self.queries.roles(),
            apps=await self.queries.apps(who.unit_code),
            now=datetime.now(UTC), done=request.query_params.get("done", ""),
        )  # fmt: skip
