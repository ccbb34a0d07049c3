"""Who is at the console: the staff session behind the cookie, and the permission
every page needs (one table, PAGES, that the coverage test walks).

The session is the identity use case's (argon2id password, TOTP for the roles
that need it, lock-out, expiry); the console only keeps its token in a cookie
that scripts cannot read (HttpOnly), that travels only over TLS (Secure) and
only on the console's own requests (SameSite=Strict, Path=/console). A form
that changes something also carries a token derived from the session, so a
page of another site cannot post one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from engine.errors import EbillError, PermissionDenied, Unauthenticated
from engine.identity import Permission, Principal

__all__ = [
    "COOKIE",
    "PAGES",
    "Page",
    "csrf_token",
    "guarded",
]

COOKIE = "ebill_console"

Handler = Callable[[Request, Principal], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Page:
    method: str
    path: str
    permission: Permission | None  # None: reachable without a session (sign-in only)


# Every console route and what it needs; routes() builds the routes from this
# table, so a page without a permission cannot exist.
PAGES: tuple[Page, ...] = (
    Page("GET", "/console/login", None),
    Page("POST", "/console/login", None),
    Page("POST", "/console/logout", Permission.BILL_READ),
    Page("GET", "/console/", Permission.BILL_READ),
    Page("GET", "/console/bills", Permission.BILL_READ),
    Page("GET", "/console/bills/{bill_code}/{bill_no}", Permission.BILL_READ),
    Page("GET", "/console/bills/{bill_code}/{bill_no}/red-flush", Permission.BILL_RED_FLUSH),
    Page("POST", "/console/bills/{bill_code}/{bill_no}/red-flush", Permission.BILL_RED_FLUSH),
    Page("GET", "/console/stock", Permission.STOCK_READ),
    Page("POST", "/console/stock/requisitions/{req_id}", Permission.STOCK_APPROVE),
    Page("GET", "/console/reports", Permission.REPORT_READ),
    Page("GET", "/console/reports/download", Permission.REPORT_READ),
    Page("GET", "/console/archive", Permission.AUDIT_READ),
    # The archive holds the bills' canonical bytes, payer data unmasked.
    Page("GET", "/console/archive/download", Permission.BILL_READ_PII),
    # Finishing a bill's issuance sooner is part of issuing it.
    Page("POST", "/console/archive/retry", Permission.BILL_ISSUE),
    Page("GET", "/console/writeoffs", Permission.WRITEOFF_MANAGE),
    Page("GET", "/console/identity", Permission.IDENTITY_MANAGE),
    # Users (create with role and scope, lock, unlock, reset password), each
    # change with a confirmation page (GET) before the post.
    Page("GET", "/console/identity/users/new", Permission.IDENTITY_MANAGE),
    Page("POST", "/console/identity/users", Permission.IDENTITY_MANAGE),
    # The user is a query (GET) or form (POST) field, not a path segment.
    Page("GET", "/console/identity/users/lock", Permission.IDENTITY_MANAGE),
    Page("POST", "/console/identity/users/lock", Permission.IDENTITY_MANAGE),
    Page("GET", "/console/identity/users/unlock", Permission.IDENTITY_MANAGE),
    Page("POST", "/console/identity/users/unlock", Permission.IDENTITY_MANAGE),
    Page("GET", "/console/identity/users/password", Permission.IDENTITY_MANAGE),
    Page("POST", "/console/identity/users/password", Permission.IDENTITY_MANAGE),
    # A bill's refund and paper actions, as their gRPC methods need (permissions.RULES).
    Page("GET", "/console/bills/{bill_code}/{bill_no}/refund", Permission.BILL_REFUND),
    Page("POST", "/console/bills/{bill_code}/{bill_no}/refund", Permission.BILL_REFUND),
    Page("GET", "/console/bills/{bill_code}/{bill_no}/paper/convert", Permission.PAPER_USE),
    Page("POST", "/console/bills/{bill_code}/{bill_no}/paper/convert", Permission.PAPER_USE),
    Page("GET", "/console/bills/{bill_code}/{bill_no}/paper/void", Permission.PAPER_USE),
    Page("POST", "/console/bills/{bill_code}/{bill_no}/paper/void", Permission.PAPER_USE),
    # Base data: charge items, HIS mapping, issuing points.
    Page("GET", "/console/catalog", Permission.CATALOG_READ),
    # The kind and key are query (GET) or form (POST) fields.
    Page("GET", "/console/catalog/edit", Permission.CATALOG_MANAGE),
    Page("POST", "/console/catalog/edit", Permission.CATALOG_MANAGE),
    Page("GET", "/console/catalog/withdraw", Permission.CATALOG_MANAGE),
    Page("POST", "/console/catalog/withdraw", Permission.CATALOG_MANAGE),
    # The inspection report (巡检): the system's state, for the auditors.
    Page("GET", "/console/inspection", Permission.AUDIT_READ),
)


def csrf_token(session_token: str) -> str:
    # Derived, not stored: only a page rendered for this session knows it.
    return hmac.new(session_token.encode(), b"ebill-console-form", hashlib.sha256).hexdigest()


async def session_principal(request: Request, identity: Any) -> Principal | None:
    token = request.cookies.get(COOKIE, "")
    if not token or identity is None:
        return None
    try:
        principal: Principal = await identity.principal_for_session(token)
    except EbillError:
        return None
    return principal


def guarded(
    page: Page, identity: Any, handler: Handler
) -> Callable[[Request], Awaitable[Response]]:
    """The handler behind a session, a permission and (for a POST) the form token."""
    assert page.permission is not None
    permission = page.permission

    async def endpoint(request: Request) -> Response:
        who = await session_principal(request, identity)
        if who is None:
            if request.method == "GET":
                return RedirectResponse(f"/console/login?next={request.url.path}", status_code=303)
            raise Unauthenticated("sign in first")
        if not who.can(permission):
            raise PermissionDenied(f"{who.label} may not {permission.value}")
        if request.method == "POST":
            form = await request.form()
            token = request.cookies.get(COOKIE, "")
            if not hmac.compare_digest(str(form.get("csrf", "")), csrf_token(token)):
                raise PermissionDenied("the form is stale or from another site; reload it")
        return await handler(request, who)

    return endpoint
