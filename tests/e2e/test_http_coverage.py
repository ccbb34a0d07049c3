"""Coverage that cannot drift, HTTP side (issue 12, item 4): every route of the
assembled HTTP application (ebill/http/app.py with every module of MOUNTS, the
REST router, /openapi.json and /docs), found by walking the application's own
route table, is either public on purpose (PUBLIC, each with its reason) or
guarded; a guarded route answers a caller without credentials with 401 or a
redirect to sign in (303), and a signed-in caller without its permission with
403 (the vendor gateway: its own result codes in an HTTP 200), and none of those
calls changes a row. A route added later without a decision fails here.

The console's pages take their permission from its PAGES table; this test is
the walk of that table too (it replaced the one in test_console.py)."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import BaseRoute, Mount, Route

from clients.credentials import AppCredentials, SessionCredentials
from config.settings import load
from ebill.grpc.permissions import RULES
from ebill.http.app import build_app
from ebill.http.console import PAGES
from ebill.http.console.auth import COOKIE
from ebill.http.gateway.codes import Result
from ebill.http.gateway.envelope import vendor_key
from ebill.http.gateway.methods import METHODS, NOT_SERVED
from ebill.http.selfservice import COOKIE as SS_COOKIE
from ebill.http.services import Services
from ops.stack import Stack
from tests.e2e.auth_support import make_app, make_user, state
from tests.his_client import sign
from usecases import demo
from usecases.selfservice import SelfService

pytestmark = pytest.mark.slow

# Public on purpose: (method, path) -> why anyone may call it.
PUBLIC: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "liveness probe for the load balancer; answers 'ok', reads nothing",
    ("GET", "/openapi.json"): "the REST API's description; no data",
    ("GET", "/docs"): "Swagger UI over /openapi.json; no data",
    ("GET", "/docs/oauth2-redirect"): "Swagger UI's fixed helper page; no data",
    ("GET", "/bill/{bill_code:str}/{bill_no:str}"): (
        "H5 bill page for the payer: needs the bill's check code (?c=), printed on the "
        "bill and sent only to the payer; 404 without it"
    ),
    ("GET", "/bill/{bill_code:str}/{bill_no:str}.pdf"): "the bill's PDF, same check code",
    ("GET", "/bill/{bill_code:str}/{bill_no:str}/notice.png"): "notice picture, same check code",
    ("GET", "/verify"): "public verification page: number + check code, or the QR",
    ("GET", "/api/verify"): "public verification API, same inputs as /verify",
    ("POST", "/api/verify"): "public verification API, same inputs as /verify",
    ("POST", "/verify"): (
        "public verification page reading the QR of an uploaded picture (8 MB, rate limited)"
    ),
    ("GET", "/widget/bill/{bill_code:str}/{bill_no:str}"): (
        "the H5 widget's card for an app's page: same check code as the H5 page, payer masked"
    ),
    ("GET", "/widget.js"): "the script an app's page includes to frame the widget; no data",
    ("GET", "/selfservice/{unit_code:str}"): "patient self-service: the sign-in form",
    ("POST", "/selfservice/{unit_code:str}/code"): (
        "patient self-service sign-in: asks an SMS code (rate limited per number and IP)"
    ),
    ("POST", "/selfservice/{unit_code:str}/verify"): (
        "patient self-service sign-in: checks the SMS code, starts the patient's session"
    ),
    ("GET", "/console/login"): "console sign-in form",
    ("POST", "/console/login"): "console sign-in (password, TOTP, lock-out)",
    ("GET", "/console/static/{path}"): "the console's stylesheet; no data",
}
# Guarded by a session of their own, not a staff permission: (method, path) ->
# the status without one (the page asks for a new SMS code).
PATIENT_SESSION: dict[tuple[str, str], int] = {
    ("GET", "/selfservice/{unit_code:str}/bills"): 403,
}
SAMPLE = {
    "bill_code": "44060119",
    "bill_no": "0000000001",
    "req_id": "999999",
    "unit_code": demo.UNIT_CODE,
    "bus_no": "X1",
    "service": "medical-svc",
    "path": "console.css",
}


@dataclass(frozen=True)
class HttpRoute:
    method: str
    path: str
    # The route's OpenAPI extra (REST routes: the gRPC method behind it).
    extra: dict[str, Any]


def _walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[HttpRoute]:
    for r in routes:
        contexts = getattr(r, "effective_route_contexts", None)
        if contexts is not None:  # an included FastAPI router (FastAPI >= 0.16x)
            for c in contexts():
                for m in sorted(c.methods or ()):
                    yield HttpRoute(m, prefix + c.path, dict(c.openapi_extra or {}))
        elif isinstance(r, Mount):
            inner = getattr(r.app, "routes", None)
            if inner:
                yield from _walk(list(inner), prefix + r.path)
            else:  # an ASGI app (static files): everything under the prefix
                yield HttpRoute("GET", prefix + r.path + "/{path}", {})
        elif isinstance(r, Route):
            extra = dict(getattr(r, "openapi_extra", None) or {})
            for m in sorted((r.methods or set()) - {"HEAD"}):
                yield HttpRoute(m, prefix + r.path, extra)
        else:
            raise AssertionError(f"a route of a kind this walk does not know: {r!r}")


def app_routes() -> list[HttpRoute]:
    """Every route of the application ebill/server.py serves, built the same way
    (build_app over every MOUNTS module) with placeholders for the use cases:
    building the routes calls none of them."""
    none: Any = None
    app: FastAPI = build_app(
        Services(
            settings=load(),
            pool=none,
            issuance=none,
            lifecycle=none,
            paper=none,
            gateway=none,
            fiscal=none,
            # The public pages read the verification's guard when their routes are built.
            verification=SimpleNamespace(guard=None),
            extra={"selfservice": SelfService(none, none, None, public_url="")},
        )
    )
    return list(_walk(list(app.routes)))


def url(path: str, **over: str) -> str:
    values = {**SAMPLE, **over}
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m.group(1)], path)


def kind(r: HttpRoute) -> str:
    if (r.method, r.path) in PUBLIC:
        return "public"
    if (r.method, r.path) in PATIENT_SESSION:
        return "patient"
    if r.path.startswith("/v1/"):
        return "rest"
    if r.path.endswith("/api/medical/{method}"):
        return "gateway"
    if r.path.startswith("/console/"):
        return "console"
    return "undecided"


def test_every_route_is_public_on_purpose_or_guarded() -> None:
    routes = app_routes()
    undecided = [f"{r.method} {r.path}" for r in routes if kind(r) == "undecided"]
    assert not undecided, f"routes neither in PUBLIC nor guarded: decide and list them: {undecided}"
    seen = {(r.method, r.path) for r in routes}
    assert set(PUBLIC) <= seen, f"PUBLIC lists routes that are gone: {set(PUBLIC) - seen}"
    assert set(PATIENT_SESSION) <= seen
    pages = {(p.method, p.path): p for p in PAGES}
    for r in routes:
        if kind(r) == "console":
            page = pages.get((r.method, r.path))
            assert page is not None and page.permission is not None, r
        if kind(r) == "rest":
            rpc = r.extra.get("x-ebill-grpc-method")
            assert rpc in RULES and not RULES[rpc].public, r


def _envelope(appid: str, key: str, business: dict[str, Any]) -> dict[str, str]:
    data = base64.b64encode(json.dumps(business).encode()).decode()
    noise = uuid.uuid4().hex
    return {
        "appid": appid,
        "data": data,
        "noise": noise,
        "version": "1.0",
        "sign": sign(appid, data, noise, key),
    }


def _result(resp: httpx.Response) -> str:
    assert resp.status_code == 200, resp.text
    data = json.loads(base64.b64decode(resp.json()["data"]))
    return str(data["result"])


async def test_every_route_refuses_and_changes_nothing(stack: Stack, pool: asyncpg.Pool) -> None:
    admin = await stack.login("admin")
    # Signed in, holding no permission at all: one user, one app.
    nobody: SessionCredentials = await make_user(stack, admin, "http-cov-nobody", [])
    none_app: AppCredentials = await make_app(stack, admin, "http-cov-none", [])
    routes = app_routes()
    failures: list[str] = []

    def expect(what: str, got: object, want: object) -> None:
        ok = got in want if isinstance(want, tuple) else got == want
        if not ok:
            failures.append(f"{what}: {got}, expected {want}")

    before = await state(pool)
    async with stack.http_client() as http:
        live = (await http.get("/openapi.json")).json()
        served = {(m.upper(), p) for p, ops in live["paths"].items() for m in ops}
        walked = {(r.method, r.path) for r in routes if kind(r) == "rest"}
        assert walked == served, "the walked REST routes differ from the served ones"
        key = vendor_key(none_app.secret)
        for r in routes:
            k = kind(r)
            name = f"{r.method} {r.path}"
            if k == "public":
                continue
            if k == "patient":
                resp = await http.request(r.method, url(r.path))
                expect(f"{name} anonymous", resp.status_code, PATIENT_SESSION[(r.method, r.path)])
                resp = await http.request(
                    r.method, url(r.path), headers={"cookie": f"{SS_COOKIE}=forged"}
                )
                expect(f"{name} forged", resp.status_code, PATIENT_SESSION[(r.method, r.path)])
            elif k == "rest":
                rpc = str(r.extra["x-ebill-grpc-method"])
                body = b"{}" if r.method == "POST" else b""
                resp = await http.request(r.method, url(r.path), content=body)
                expect(f"{name} anonymous", resp.status_code, 401)
                rule = RULES[rpc]
                if rule.permission is None and not rule.users_only:
                    continue
                for who, creds in (("user", nobody), ("app", none_app)):
                    headers = dict(creds.metadata(rpc, body))
                    resp = await http.request(r.method, url(r.path), content=body, headers=headers)
                    expect(f"{name} {who} without permission", resp.status_code, 403)
            elif k == "console":
                resp = await http.request(r.method, url(r.path))
                expect(f"{name} anonymous", resp.status_code, (303, 401))
                if resp.status_code == 303:
                    location = resp.headers["location"]
                    expect(f"{name} redirect", location.split("?")[0], "/console/login")
                form = {"csrf": "x", "decision": "approve", "reason": "x"}
                resp = await http.request(
                    r.method,
                    url(r.path),
                    data=form if r.method == "POST" else None,
                    headers={"cookie": f"{COOKIE}={nobody.token}"},
                )
                expect(f"{name} without permission", resp.status_code, 403)
            elif k == "gateway":
                for method in [*METHODS, "noSuchInterface"]:
                    where = url(r.path, method=method)
                    env = _envelope("http-cov-unknown", "0" * 32, {})
                    got = _result(await http.post(where, json=env))
                    expect(f"{name} {method} unknown app", got, Result.UNKNOWN_APP.value)
                    if method not in METHODS or method in NOT_SERVED:
                        continue
                    got = _result(await http.post(where, json=_envelope(none_app.app_id, key, {})))
                    # testServerConnect needs no permission: a registered app with
                    # a good signature may check that it reaches the engine.
                    want = Result.OK if not METHODS[method].permission else Result.NOT_ALLOWED
                    expect(f"{name} {method} without permission", got, want.value)
    assert not failures, "\n".join(failures)
    assert await state(pool) == before, "a refused HTTP call changed state"
