"""The finance console (issue #16): server-rendered pages for the bill office and
the windows on the engine's HTTP server, signed in with the identity use case's
staff sessions (password + TOTP), menus and data by role and scope.

Server-rendered Jinja2 with plain forms and one stylesheet: no build step and no
script to vendor; a confirmation is a page of its own, so it works the same
with a screen reader or a locked-down browser. Pages only read the request, call
a use case and render; the figures come from usecases.reports.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ebill.http.console import pages
from ebill.http.console.actions import BillActions
from ebill.http.console.auth import PAGES, Page, guarded
from ebill.http.console.basedata import BaseDataPages
from ebill.http.console.inspection import InspectionPage
from ebill.http.console.users import UserPages

__all__ = ["PAGES", "routes"]


def routes(services: Any) -> list[BaseRoute]:
    console = pages.Console(services)
    acts, users = BillActions(console), UserPages(console)
    base, inspection = BaseDataPages(console), InspectionPage(console)
    bill = "/console/bills/{bill_code}/{bill_no}"
    user = "/console/identity/users"
    handlers = {
        ("GET", "/console/"): console.dashboard,
        ("POST", "/console/logout"): console.logout,
        ("GET", "/console/bills"): console.bills,
        ("GET", "/console/bills/{bill_code}/{bill_no}"): console.bill,
        ("GET", "/console/bills/{bill_code}/{bill_no}/red-flush"): console.red_flush_form,
        ("POST", "/console/bills/{bill_code}/{bill_no}/red-flush"): console.red_flush,
        ("GET", "/console/stock"): console.stock,
        ("POST", "/console/stock/requisitions/{req_id}"): console.decide_requisition,
        ("GET", "/console/reports"): console.reports,
        ("GET", "/console/reports/download"): console.download,
        ("GET", "/console/archive"): console.archive_page,
        ("GET", "/console/archive/download"): console.archive_download,
        ("POST", "/console/archive/retry"): console.archive_retry,
        ("GET", "/console/writeoffs"): console.writeoffs,
        ("GET", "/console/identity"): console.identity,
        ("GET", "/console/identity/users/new"): users.new_form,
        ("POST", "/console/identity/users"): users.create,
        ("GET", f"{user}/lock"): users.lock_form,
        ("POST", f"{user}/lock"): users.lock,
        ("GET", f"{user}/unlock"): users.unlock_form,
        ("POST", f"{user}/unlock"): users.unlock,
        ("GET", f"{user}/password"): users.password_form,
        ("POST", f"{user}/password"): users.password,
        ("GET", f"{bill}/refund"): acts.refund_form,
        ("POST", f"{bill}/refund"): acts.refund,
        ("GET", f"{bill}/paper/convert"): acts.convert_form,
        ("POST", f"{bill}/paper/convert"): acts.convert,
        ("GET", f"{bill}/paper/void"): acts.void_form,
        ("POST", f"{bill}/paper/void"): acts.void,
        ("GET", "/console/catalog"): base.listing,
        ("GET", "/console/catalog/edit"): base.edit_form,
        ("POST", "/console/catalog/edit"): base.save,
        ("GET", "/console/catalog/withdraw"): base.withdraw_form,
        ("POST", "/console/catalog/withdraw"): base.withdraw,
        ("GET", "/console/inspection"): inspection.show,
    }
    out: list[BaseRoute] = [
        Route("/console/login", console.login_form, methods=["GET"]),
        Route("/console/login", console.login, methods=["POST"]),
    ]
    for page in PAGES:
        if page.permission is None:
            continue
        handler = handlers[(page.method, page.path)]
        out.append(
            Route(
                page.path,
                console.html_errors(guarded(page, services.identity, handler)),
                methods=[page.method],
            )
        )
    out.append(Mount("/console/static", StaticFiles(directory=pages.STATIC), name="console-static"))
    return out


_ = Page  # re-exported shape for the coverage test
