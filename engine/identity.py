"""Who may do what: permissions, data scope, principals, roles and applications.

Pure values and rules (no storage, no transport). A :class:`Principal` is the
authenticated caller of one request: a staff user (by session) or an
application (HIS, kiosk, batch job; by certificate and/or signed metadata).
Its :class:`Scope` says which unit and which of its issuing points it may see
and act on; its permissions which operations. The edges decide per method
which permission is needed (ebill/grpc/permissions.py) and ask
:meth:`Principal.can` and :meth:`Principal.covers`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from engine.errors import InvalidArgument

__all__ = [
    "APPROVER_PERMISSIONS",
    "HEADER_APP",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "SECOND_FACTOR_PERMISSIONS",
    "SIGNATURE_SCHEME",
    "App",
    "Permission",
    "Principal",
    "PrincipalKind",
    "Role",
    "Scope",
    "User",
    "check_name",
    "check_password",
    "request_signature",
    "signing_string",
    "totp",
    "totp_ok",
    "totp_step",
]


class Permission(StrEnum):
    """One operation class a role may be granted (the names of the wave-3 contract)."""

    BILL_ISSUE = "bill.issue"
    BILL_READ = "bill.read"
    BILL_READ_PII = "bill.read_pii"
    BILL_RED_FLUSH = "bill.red_flush"
    BILL_REFUND = "bill.refund"
    BILL_BACK_ENTRY = "bill.back_entry"
    PAPER_USE = "paper.use"
    PAPER_MANAGE = "paper.manage"
    STOCK_READ = "stock.read"
    STOCK_MANAGE = "stock.manage"
    STOCK_APPROVE = "stock.approve"
    WRITEOFF_MANAGE = "writeoff.manage"
    AUDIT_READ = "audit.read"
    REPORT_READ = "report.read"
    CATALOG_READ = "catalog.read"
    CATALOG_MANAGE = "catalog.manage"
    DELIVERY_SEND = "delivery.send"
    DELIVERY_MANAGE = "delivery.manage"
    IDENTITY_MANAGE = "identity.manage"
    KEYS_MANAGE = "keys.manage"


# Roles holding any of these need a TOTP second factor at login (seed 004,
# 等保三级: administrators authenticate with two factors): they manage stock,
# users, applications or keys.
SECOND_FACTOR_PERMISSIONS = frozenset(
    {
        Permission.STOCK_MANAGE,
        Permission.STOCK_APPROVE,
        Permission.IDENTITY_MANAGE,
        Permission.KEYS_MANAGE,
    }
)

# The second person of a two-person rule must hold this.
APPROVER_PERMISSIONS = frozenset({Permission.STOCK_APPROVE})

PrincipalKind = Literal["user", "app"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def check_name(value: str, field_name: str) -> str:
    """A user, role or app name: 1-64 of letters, digits and ._@- (it becomes the
    operator of recorded operations and a log leaf's principal)."""
    if not _NAME.match(value):
        raise InvalidArgument(
            f"{field_name}: 1 to 64 letters, digits or ._@- (starting with a letter or digit)",
            field=field_name,
        )
    return value


def check_password(value: str, field_name: str = "password") -> str:
    """At least 10 characters and three of lower, upper, digit, other (等保三级 asks
    for complexity); at most 256 so a hash cannot be made to cost more."""
    classes = sum(
        (
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
            any(not c.isalnum() for c in value),
        )
    )
    if not 10 <= len(value) <= 256 or classes < 3:
        raise InvalidArgument(
            f"{field_name}: 10 to 256 characters with three of lower case, upper case,"
            " digits and other characters",
            field=field_name,
        )
    return value


@dataclass(frozen=True, slots=True)
class Scope:
    """What data a principal reaches: one unit; its bill office (every issuing
    point of the unit, and the office's own stock) when ``office``; else only the
    issuing points in ``places``."""

    unit_code: str
    office: bool = False
    places: frozenset[str] = frozenset()

    def covers(self, unit_code: str, place_code: str) -> bool:
        """True when (unit, place) is in scope; place "" is the bill office. Unit
        "*" is every unit (the offline bootstrap, and the engine with auth off)."""
        if self.unit_code != "*" and unit_code != self.unit_code:
            return False
        return self.office or (place_code != "" and place_code in self.places)


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request."""

    kind: PrincipalKind
    name: str
    unit_code: str
    scope: Scope
    permissions: frozenset[Permission]
    roles: tuple[str, ...] = ()
    # App principals: the methods (full gRPC names, or "*") the app may call.
    methods: frozenset[str] = frozenset()
    session_id: str = ""

    @property
    def label(self) -> str:
        """The principal as log leaves and recorded operations name it."""
        return self.name if self.kind == "user" else f"app:{self.name}"

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def covers(self, unit_code: str, place_code: str) -> bool:
        return self.scope.covers(unit_code, place_code)

    def may_call(self, method: str) -> bool:
        """Apps are bound to their allowed methods; users only by permission."""
        return self.kind == "user" or "*" in self.methods or method in self.methods


@dataclass(frozen=True, slots=True)
class Role:
    """A named set of permissions. The data scope is given per assignment."""

    name: str
    permissions: frozenset[Permission]
    description: str = ""

    @property
    def needs_second_factor(self) -> bool:
        return bool(self.permissions & SECOND_FACTOR_PERMISSIONS)


@dataclass(frozen=True, slots=True)
class User:
    """A staff member as stored (without the password hash or TOTP secret)."""

    username: str
    display_name: str
    unit_code: str
    enabled: bool
    totp_enrolled: bool
    roles: tuple[tuple[str, Scope], ...] = ()


@dataclass(frozen=True, slots=True)
class App:
    """A registered application: bound to one unit, its issuing points (empty: the
    whole unit, bill office included) and its methods ("*": every method its
    permissions allow). ``secret`` is the opened HMAC key; ``cert_cn`` the client
    certificate's common name that identifies it without signed metadata."""

    app_id: str
    unit_code: str
    places: frozenset[str]
    methods: frozenset[str]
    secret: bytes
    permissions: frozenset[Permission]
    enabled: bool = True
    cert_cn: str = ""
    description: str = ""
    secret_version: int = 1

    @property
    def scope(self) -> Scope:
        return Scope(self.unit_code, office=not self.places, places=self.places)

    def principal(self) -> Principal:
        return Principal(
            kind="app",
            name=self.app_id,
            unit_code=self.unit_code,
            scope=self.scope,
            permissions=self.permissions,
            methods=self.methods,
        )


# -- TOTP (RFC 6238 over RFC 4226 HOTP, HMAC-SHA1, 6 digits, 30 s) ------------
# SHA-1 because every authenticator app implements that default; the secret
# never leaves the engine except once, at enrolment.

TOTP_STEP_S = 30
TOTP_DIGITS = 6


def totp(secret: bytes, at_s: float, *, step_s: int = TOTP_STEP_S) -> str:
    """The code for the time step containing ``at_s`` (Unix seconds)."""
    counter = int(at_s // step_s)
    mac = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**TOTP_DIGITS).zfill(TOTP_DIGITS)


def totp_step(secret: bytes, code: str, at_s: float, *, drift_steps: int = 1) -> int | None:
    """The time step (counter) whose code ``code`` is, this step or one either
    side (clock drift); None when it is none of them. Sign-in keeps the step so
    that a code is accepted once (RFC 6238 section 5.2)."""
    code = code.strip()
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    found = None
    for d in range(-drift_steps, drift_steps + 1):
        at = at_s + d * TOTP_STEP_S
        # Every candidate compared (constant time whatever matches).
        if hmac.compare_digest(totp(secret, at), code):
            found = int(at // TOTP_STEP_S)
    return found


def totp_ok(secret: bytes, code: str, at_s: float, *, drift_steps: int = 1) -> bool:
    """True when ``code`` is the code of this step or one step either side (clock drift)."""
    return totp_step(secret, code, at_s, drift_steps=drift_steps) is not None


# -- signed request metadata (apps) ---------------------------------------------
# An app signs each call with its secret: HMAC-SM3 over the string below, which
# binds the method, the app, the time, a fresh nonce and the SM3 digest of the
# exact request bytes. docs/identity.md gives the format for HIS vendors.

SIGNATURE_SCHEME = "EBILL-HMAC-SM3"
HEADER_APP = "x-ebill-app"
HEADER_TIMESTAMP = "x-ebill-timestamp"  # Unix time in milliseconds
HEADER_NONCE = "x-ebill-nonce"  # 16 to 64 characters, unique per app within the window
HEADER_SIGNATURE = "x-ebill-signature"  # lower-case hex


def signing_string(method: str, app_id: str, timestamp_ms: str, nonce: str, body: bytes) -> bytes:
    body_digest = hashlib.new("sm3", body).hexdigest()
    return "\n".join((SIGNATURE_SCHEME, method, app_id, timestamp_ms, nonce, body_digest)).encode()


def request_signature(
    secret: bytes, method: str, app_id: str, timestamp_ms: str, nonce: str, body: bytes
) -> str:
    """The hex HMAC-SM3 an app sends as ``x-ebill-signature``."""
    message = signing_string(method, app_id, timestamp_ms, nonce, body)
    return hmac.new(secret, message, "sm3").hexdigest()
