"""`ebill identity ...`: staff and applications, offline, on the database.

For bootstrapping (``create-admin``: the first administrator, before anyone
can sign in to call IdentityService) and for an operator at the server. The
commands act as the principal ``system``; every change is logged in the
transparency log like one made through the API. Secrets are sealed with the
data key ring of the settings (EBILL_DATA_KEY_FILE), the one the engine uses.
Passwords are prompted for (hidden) unless given.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from config import keys
from config.settings import load
from engine.errors import EbillError
from engine.identity import Permission, Scope
from storage.db import EmbeddedPostgres, connect_pool
from usecases.identity import Identity
from usecases.identity.manage import SYSTEM, AppSpec, IdentityAdmin, otpauth_uri

__all__ = ["app"]

app = typer.Typer(help="Staff users, roles and applications (offline).", no_args_is_help=True)

T = TypeVar("T")

DbOption = Annotated[
    str, typer.Option("--database-url", help="default EBILL_DATABASE_URL or the embedded one")
]


def _run(database_url: str, work: Callable[[IdentityAdmin], Awaitable[T]]) -> T:
    settings = load()

    async def go() -> T:
        url = database_url or settings.database_url
        embedded = None
        if not url:
            embedded = EmbeddedPostgres(settings.data_dir)
            url = embedded.url
        pool = await connect_pool(url)
        try:
            return await work(IdentityAdmin(Identity(pool, keys.load(settings))))
        finally:
            await pool.close()
            if embedded is not None:
                embedded.cleanup()

    try:
        return asyncio.run(go())
    except EbillError as exc:
        typer.echo(f"refused: {exc.message}", err=True)
        raise typer.Exit(1) from None


def _password(given: str) -> str:
    if given:
        return given
    value: str = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    return value


@app.command("create-admin")
def create_admin(
    username: Annotated[str, typer.Option(help="the administrator's user name")],
    unit: Annotated[str, typer.Option(help="unit code (9 digits)")],
    password: Annotated[str, typer.Option(help="prompted for when not given")] = "",
    database_url: DbOption = "",
) -> None:
    """The first administrator of a unit: every permission over the whole unit,
    with a TOTP second factor (scan the printed otpauth URI)."""
    pw = _password(password)

    async def work(admin: IdentityAdmin) -> bytes:
        await admin.create_role(SYSTEM, "administrator", list(Permission), "every permission")
        await admin.create_user(SYSTEM, username=username, password=pw, unit_code=unit)
        await admin.assign_role(SYSTEM, username, "administrator", Scope(unit, office=True))
        return await admin.enrol_totp(SYSTEM, username)

    seed = _run(database_url, work)
    typer.echo(f"administrator {username} of unit {unit} created")
    typer.echo(f"TOTP (authenticator app): {otpauth_uri(username, seed)}")


@app.command("set-role")
def set_role(
    name: str,
    permission: Annotated[list[str], typer.Option(help="repeat for each permission")],
    database_url: DbOption = "",
) -> None:
    """Create a role or replace its permissions."""
    _run(database_url, lambda a: a.create_role(SYSTEM, name, permission))
    typer.echo(f"role {name}: {', '.join(sorted(permission))}")


@app.command("create-user")
def create_user(
    username: str,
    unit: Annotated[str, typer.Option(help="unit code")],
    role: Annotated[str, typer.Option(help="a role made with set-role")],
    place: Annotated[list[str], typer.Option(help="issuing point (repeat); none: office")] = [],  # noqa: B006
    password: Annotated[str, typer.Option(help="prompted for when not given")] = "",
    totp: Annotated[bool, typer.Option(help="enrol a TOTP second factor")] = False,
    database_url: DbOption = "",
) -> None:
    """A staff user with one role over the bill office or some issuing points."""
    pw = _password(password)

    async def work(admin: IdentityAdmin) -> bytes:
        await admin.create_user(SYSTEM, username=username, password=pw, unit_code=unit)
        scope = Scope(unit, office=not place, places=frozenset(place))
        await admin.assign_role(SYSTEM, username, role, scope)
        return await admin.enrol_totp(SYSTEM, username) if totp else b""

    seed = _run(database_url, work)
    typer.echo(f"user {username} created with role {role}")
    if seed:
        typer.echo(f"TOTP (authenticator app): {otpauth_uri(username, seed)}")


@app.command("reset-password")
def reset_password(
    username: str,
    password: Annotated[str, typer.Option(help="prompted for when not given")] = "",
    database_url: DbOption = "",
) -> None:
    """A new password; the user's sessions end and a lock-out clears."""
    pw = _password(password)
    _run(database_url, lambda a: a.reset_password(SYSTEM, username, pw))
    typer.echo(f"password of {username} reset")


@app.command("disable-user")
def disable_user(username: str, database_url: DbOption = "") -> None:
    _run(database_url, lambda a: a.set_user_enabled(SYSTEM, username, False))
    typer.echo(f"user {username} disabled; their sessions ended")


@app.command("register-app")
def register_app(
    app_id: str,
    unit: Annotated[str, typer.Option(help="unit code")],
    permission: Annotated[list[str], typer.Option(help="repeat for each permission")],
    place: Annotated[list[str], typer.Option(help="issuing point (repeat); none: office")] = [],  # noqa: B006
    method: Annotated[list[str], typer.Option(help="full gRPC method (repeat); none: all")] = [],  # noqa: B006
    cert_cn: Annotated[str, typer.Option(help="client certificate common name")] = "",
    out: Annotated[str, typer.Option(help="write {app_id, secret_hex} JSON here (0600)")] = "",
    database_url: DbOption = "",
) -> None:
    """Register an application; its secret is shown (or written) this once."""
    spec = AppSpec(
        app_id=app_id,
        unit_code=unit,
        places=place,
        methods=method or ["*"],
        permissions=permission,
        cert_cn=cert_cn,
    )
    secret = _run(database_url, lambda a: a.register_app(SYSTEM, spec))
    _show_secret(app_id, secret, out)


@app.command("rotate-app-secret")
def rotate_app_secret(
    app_id: str,
    out: Annotated[str, typer.Option(help="write {app_id, secret_hex} JSON here (0600)")] = "",
    database_url: DbOption = "",
) -> None:
    """A new secret; the old one stops working (within EBILL_AUTH_CACHE_S)."""
    secret = _run(database_url, lambda a: a.rotate_secret(SYSTEM, app_id))
    _show_secret(app_id, secret, out)


@app.command("disable-app")
def disable_app(app_id: str, database_url: DbOption = "") -> None:
    _run(database_url, lambda a: a.set_app_enabled(SYSTEM, app_id, False))
    typer.echo(f"app {app_id} disabled")


def _show_secret(app_id: str, secret: bytes, out: str) -> None:
    if out:
        path = Path(out)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        tmp.touch(mode=0o600)
        tmp.write_text(json.dumps({"app_id": app_id, "secret_hex": secret.hex()}) + "\n")
        tmp.replace(path)
        typer.echo(f"app {app_id}: secret written to {path}")
    else:
        typer.echo(f"app {app_id}: secret {secret.hex()} (shown once)")
