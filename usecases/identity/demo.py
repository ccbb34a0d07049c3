"""Who signs in to the demo hospital: roles, staff and the demo HIS app.

Seeded with the demo unit (ops/stack.py, ``ebill run``, the tests and the
benchmarks). Passwords and secrets are made fresh at each seeding and handed
back once (the launcher writes them to a 0600 file under the data dir and
prints how to sign in); a second seeding of the same database resets them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from engine.errors import AlreadyExists
from engine.identity import SECOND_FACTOR_PERMISSIONS, Scope
from engine.identity import Permission as P
from usecases.identity.manage import SYSTEM, AppSpec, IdentityAdmin, otpauth_uri

__all__ = ["DEMO_APP", "ROLES", "STAFF", "DemoCredentials", "StaffLogin", "seed_identity"]

DEMO_APP = "demo-his"

# Role -> permissions. A hospital adjusts them with IdentityService.SetRole.
ROLES: dict[str, frozenset[P]] = {
    "administrator": frozenset(P),
    "stock-manager": frozenset(
        {
            P.STOCK_READ,
            P.STOCK_MANAGE,
            P.STOCK_APPROVE,
            P.WRITEOFF_MANAGE,
            P.PAPER_MANAGE,
            P.PAPER_USE,
            P.BILL_READ,
            P.REPORT_READ,
        }
    ),
    "cashier": frozenset(
        {
            P.BILL_ISSUE,
            P.BILL_READ,
            P.BILL_RED_FLUSH,
            P.BILL_REFUND,
            P.BILL_BACK_ENTRY,
            P.PAPER_USE,
            P.STOCK_READ,
        }
    ),
    "auditor": frozenset({P.AUDIT_READ, P.REPORT_READ, P.BILL_READ, P.STOCK_READ}),
}

# username -> (role, places; empty: the bill office, i.e. the whole unit)
STAFF: dict[str, tuple[str, tuple[str, ...]]] = {
    "admin": ("administrator", ()),
    "manager-a": ("stock-manager", ()),
    "manager-b": ("stock-manager", ()),
    "cashier-001": ("cashier", ("001",)),
    "cashier-002": ("cashier", ("002",)),
    "auditor": ("auditor", ()),
}

# Apps manage neither identity nor keys: those need a signed-in person.
APP_PERMISSIONS = frozenset(P) - {P.IDENTITY_MANAGE, P.KEYS_MANAGE}


@dataclass(frozen=True, slots=True)
class StaffLogin:
    username: str
    password: str
    role: str
    totp_secret: bytes = b""

    @property
    def otpauth_uri(self) -> str:
        return otpauth_uri(self.username, self.totp_secret) if self.totp_secret else ""


@dataclass(frozen=True, slots=True)
class DemoCredentials:
    app_id: str
    app_secret: bytes
    staff: dict[str, StaffLogin] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "app_id": self.app_id,
            "secret_hex": self.app_secret.hex(),
            "staff": {
                s.username: {
                    "password": s.password,
                    "role": s.role,
                    "totp_secret_hex": s.totp_secret.hex(),
                }
                for s in self.staff.values()
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> DemoCredentials:
        staff = data.get("staff", {})
        assert isinstance(staff, dict)
        return cls(
            app_id=str(data["app_id"]),
            app_secret=bytes.fromhex(str(data["secret_hex"])),
            staff={
                name: StaffLogin(
                    name, v["password"], v["role"], bytes.fromhex(v["totp_secret_hex"])
                )
                for name, v in staff.items()
            },
        )


def _password() -> str:
    # 16 random URL-safe characters plus one of each class the policy asks for.
    return secrets.token_urlsafe(12) + "-Aa7"


async def seed_identity(admin: IdentityAdmin, unit_code: str) -> DemoCredentials:
    """Roles, staff and the demo app of ``unit_code``; fresh credentials each time."""
    for name, perms in ROLES.items():
        await admin.create_role(SYSTEM, name, perms, f"demo role {name}")
    staff: dict[str, StaffLogin] = {}
    for username, (role, places) in STAFF.items():
        password = _password()
        try:
            await admin.create_user(
                SYSTEM, username=username, password=password, unit_code=unit_code
            )
        except AlreadyExists:
            await admin.reset_password(SYSTEM, username, password)
        scope = Scope(unit_code, office=not places, places=frozenset(places))
        await admin.assign_role(SYSTEM, username, role, scope)
        seed = b""
        if ROLES[role] & SECOND_FACTOR_PERMISSIONS:
            seed = await admin.enrol_totp(SYSTEM, username)
        staff[username] = StaffLogin(username, password, role, seed)
    try:
        secret = await admin.register_app(
            SYSTEM,
            AppSpec(
                app_id=DEMO_APP,
                unit_code=unit_code,
                permissions=APP_PERMISSIONS,
                description="the demo hospital's HIS",
            ),
        )
    except AlreadyExists:
        await admin.set_app_enabled(SYSTEM, DEMO_APP, True)
        secret = await admin.rotate_secret(SYSTEM, DEMO_APP)
    return DemoCredentials(DEMO_APP, secret, staff)
