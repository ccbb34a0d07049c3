"""Users on the console (用户管理): create a user with a role and a data scope,
lock and unlock, reset a password. All through the identity use case
(usecases/identity/manage.py), which checks the actor's unit and writes each
change with its transparency-log leaf; every action has a confirmation page.

A new user's TOTP enrolment URI (and its QR code) is shown once, on the page
that answers the creation; it is never stored readable nor shown again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import segno
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from engine.errors import AlreadyExists, EbillError, InvalidArgument, PermissionDenied
from engine.identity import SECOND_FACTOR_PERMISSIONS, Permission, Principal, Scope
from usecases.identity.manage import IdentityAdmin, otpauth_uri

if TYPE_CHECKING:
    from ebill.http.console.pages import Console

__all__ = ["UserPages"]

_ACTIONS = {
    # action: (title, warning, button)
    "lock": (
        "确认停用用户",
        "停用后该用户立即退出所有会话，且不能再登录，直至重新启用。",
        "确认停用",
    ),
    "unlock": ("确认启用用户", "启用后该用户可以再次登录。", "确认启用"),
    "password": ("确认重置密码", "重置后该用户的所有会话立即失效，登录锁定解除。", "确认重置"),
}


class UserPages:
    def __init__(self, console: Console) -> None:
        self.c = console

    def _admin(self) -> IdentityAdmin:
        return IdentityAdmin(self.c.s.identity)

    async def new_form(
        self,
        request: Request,
        who: Principal,
        *,
        error: EbillError | None = None,
        given: dict[str, str] | None = None,
    ) -> Response:
        roles = await self.c.queries.roles()
        return self.c.render(
            request, "user_new.html", who, status=400 if error else 200, roles=roles,
            error=error, given=given or {},
        )  # fmt: skip

    async def create(self, request: Request, who: Principal) -> Response:
        form = await request.form()
        names = ("username", "display_name", "password", "password2", "role", "places")
        given = {k: str(form.get(k, "")).strip() for k in names}
        office = form.get("office") == "on"
        try:
            user, secret = await self._create(who, given, office)
        except (InvalidArgument, PermissionDenied, AlreadyExists) as exc:
            if not exc.field:
                raise
            given.pop("password", None)
            given.pop("password2", None)
            return await self.new_form(request, who, error=exc, given=given)
        uri = otpauth_uri(user, secret) if secret else ""
        qr = segno.make(uri, error="m").svg_data_uri(scale=4) if uri else ""
        return self.c.render(request, "user_created.html", who, username=user, uri=uri, qr=qr)

    async def _create(
        self, who: Principal, given: dict[str, str], office: bool
    ) -> tuple[str, bytes]:
        """Check everything the three use-case calls need before the first, so a
        refusal leaves no user half made (created without its role)."""
        if given["password"] != given["password2"]:
            raise InvalidArgument("password2: the two passwords differ", field="password2")
        role = next((r for r in await self.c.queries.roles() if r.name == given["role"]), None)
        if role is None:
            raise InvalidArgument("role: choose a role", field="role")
        perms = {Permission(p) for p in role.permissions}
        if not perms <= who.permissions:
            raise PermissionDenied(
                "role: a role may be given only by someone holding its permissions", field="role"
            )
        places = frozenset(p.strip() for p in given["places"].split(",") if p.strip())
        known = {code for code, _ in await self.c.queries.issuing_points(who.unit_code)}
        if office == bool(places):
            raise InvalidArgument(
                "places: either the bill office (whole unit) or some issuing points",
                field="places",
            )
        if not places <= known:
            unknown = ",".join(sorted(places - known))
            raise InvalidArgument(f"places: no issuing point {unknown}", field="places")
        admin = self._admin()
        username = given["username"]
        await admin.create_user(
            who, username=username, password=given["password"], unit_code=who.unit_code,
            display_name=given["display_name"],
        )  # fmt: skip
        await admin.assign_role(
            who, username, role.name, Scope(who.unit_code, office=office, places=places)
        )
        # A role that needs a second factor cannot sign in without one: enrol it now.
        secret = b""
        if perms & SECOND_FACTOR_PERMISSIONS:
            secret = await admin.enrol_totp(who, username)
        return username, secret

    # -- lock, unlock, reset ---------------------------------------------------

    def _confirm(
        self,
        request: Request,
        who: Principal,
        username: str,
        action: str,
        error: EbillError | None = None,
    ) -> Response:
        title, warning, button = _ACTIONS[action]
        fields = [("username", "", "hidden", username)]
        if action == "password":
            fields += [("password", "新密码", "password", ""),
                       ("password2", "再次输入新密码", "password", "")]  # fmt: skip
        return self.c.render(
            request, "confirm.html", who, status=400 if error else 200, title=title,
            warning=f"用户 {username}：{warning}", button=button, fields=fields, error=error,
            action=f"/console/identity/users/{action}", back="/console/identity",
        )  # fmt: skip

    async def lock_form(self, request: Request, who: Principal) -> Response:
        return self._confirm(request, who, _asked(request), "lock")

    async def unlock_form(self, request: Request, who: Principal) -> Response:
        return self._confirm(request, who, _asked(request), "unlock")

    async def password_form(self, request: Request, who: Principal) -> Response:
        return self._confirm(request, who, _asked(request), "password")

    async def lock(self, request: Request, who: Principal) -> Response:
        username = await _posted(request)
        self._not_self(who, username)
        await self._admin().set_user_enabled(who, username, False)
        return RedirectResponse(f"/console/identity?done={username}-locked", status_code=303)

    async def unlock(self, request: Request, who: Principal) -> Response:
        username = await _posted(request)
        await self._admin().set_user_enabled(who, username, True)
        return RedirectResponse(f"/console/identity?done={username}-unlocked", status_code=303)

    async def password(self, request: Request, who: Principal) -> Response:
        username = await _posted(request)
        form = await request.form()
        password, again = str(form.get("password", "")), str(form.get("password2", ""))
        try:
            if password != again:
                raise InvalidArgument("password2: the two passwords differ", field="password2")
            await self._admin().reset_password(who, username, password)
        except InvalidArgument as exc:
            return self._confirm(request, who, username, "password", error=exc)
        return RedirectResponse(f"/console/identity?done={username}-password", status_code=303)

    @staticmethod
    def _not_self(who: Principal, username: str) -> None:
        # Locking oneself out would leave the unit without the administrator at hand.
        if who.name == username:
            raise PermissionDenied("username: you cannot lock yourself", field="username")


def _asked(request: Request) -> str:
    """The user a confirmation page is about (?username=)."""
    username = request.query_params.get("username", "").strip()
    if not username:
        raise InvalidArgument("username: is required", field="username")
    return username


async def _posted(request: Request) -> str:
    username = str((await request.form()).get("username", "")).strip()
    if not username:
        raise InvalidArgument("username: is required", field="username")
    return username
