"""Read-only listings for the console's administration pages: staff with their
roles and scope, roles with their permissions, registered applications, and
the audit reports sent to the platform with its replies. Secrets, password
hashes and TOTP seeds are never read here (only whether a seed is enrolled)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

__all__ = ["AppLine", "AuditReportLine", "RoleLine", "StaffLine", "apps", "audit_reports",
           "roles", "staff"]  # fmt: skip


@dataclass(frozen=True, slots=True)
class StaffLine:
    username: str
    display_name: str
    enabled: bool
    totp: bool  # a TOTP seed is enrolled
    locked_until: datetime | None
    grants: tuple[tuple[str, str], ...]  # (role, "票据办" or the places)
    last_login: datetime | None


@dataclass(frozen=True, slots=True)
class RoleLine:
    name: str
    description: str
    permissions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AppLine:
    app_id: str
    description: str
    places: tuple[str, ...]
    methods: tuple[str, ...]
    permissions: tuple[str, ...]
    enabled: bool
    cert_cn: str


@dataclass(frozen=True, slots=True)
class AuditReportLine:
    id: int
    period_from: date
    period_to: date
    figures: list[dict[str, Any]]
    fiscal_ref: str
    reported_by: str
    reported_at: datetime


async def staff(pool: asyncpg.Pool, unit_code: str) -> list[StaffLine]:
    rows = await pool.fetch(
        "SELECT u.username, u.display_name, u.enabled, u.totp_sealed IS NOT NULL AS totp,"
        " u.locked_until,"
        " coalesce(array_agg(r.role || ':' || CASE WHEN r.office THEN '票据办'"
        "   ELSE array_to_string(r.places, ',') END ORDER BY r.role)"
        "   FILTER (WHERE r.role IS NOT NULL), '{}') AS grants,"
        " (SELECT max(at) FROM login_attempts a WHERE a.username = u.username AND a.ok)"
        "   AS last_login"
        " FROM users u LEFT JOIN user_roles r ON r.username = u.username"
        " WHERE u.unit_code = $1 GROUP BY u.username ORDER BY u.username",
        unit_code,
    )
    return [
        StaffLine(
            username=r["username"], display_name=r["display_name"], enabled=r["enabled"],
            totp=r["totp"], locked_until=r["locked_until"],
            grants=tuple(tuple(g.split(":", 1)) for g in r["grants"]),
            last_login=r["last_login"],
        )
        for r in rows
    ]  # fmt: skip


async def roles(pool: asyncpg.Pool) -> list[RoleLine]:
    rows = await pool.fetch(
        "SELECT r.name, r.description,"
        " coalesce(array_agg(p.permission ORDER BY p.permission)"
        "   FILTER (WHERE p.permission IS NOT NULL), '{}') AS permissions"
        " FROM roles r LEFT JOIN role_permissions p ON p.role = r.name"
        " GROUP BY r.name ORDER BY r.name"
    )
    return [RoleLine(r["name"], r["description"], tuple(r["permissions"])) for r in rows]


async def apps(pool: asyncpg.Pool, unit_code: str) -> list[AppLine]:
    rows = await pool.fetch(
        "SELECT app_id, description, places, methods, permissions, enabled, cert_cn"
        " FROM apps WHERE unit_code = $1 ORDER BY app_id",
        unit_code,
    )
    return [
        AppLine(
            app_id=r["app_id"], description=r["description"], places=tuple(r["places"]),
            methods=tuple(r["methods"]), permissions=tuple(r["permissions"]),
            enabled=r["enabled"], cert_cn=r["cert_cn"],
        )
        for r in rows
    ]  # fmt: skip


async def audit_reports(pool: asyncpg.Pool, unit_code: str) -> list[AuditReportLine]:
    """The unit's audit reports (稽核报告), newest first, with the platform's reference."""
    rows = await pool.fetch(
        "SELECT id, period_from, period_to, figures, fiscal_ref, reported_by, reported_at"
        " FROM audit_reports WHERE unit_code = $1 ORDER BY id DESC LIMIT 100",
        unit_code,
    )
    out = []
    for r in rows:
        figures = r["figures"]  # {"lines": [AuditFigure.to_json(), ...]}
        if isinstance(figures, dict):
            figures = figures.get("lines", [])
        out.append(
            AuditReportLine(
                id=r["id"], period_from=r["period_from"], period_to=r["period_to"],
                figures=list(figures or []), fiscal_ref=r["fiscal_ref"],
                reported_by=r["reported_by"], reported_at=r["reported_at"],
            )
        )  # fmt: skip
    return out
