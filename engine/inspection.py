"""The inspection report (巡检报告): checks against their lines, and the report
rendered as Markdown and HTML. Pure: figures in, report out; gathering them is
usecases.inspection's work.

Seed 003 asks for a quarterly inspection with database and disk use under 90%,
backups, logs, interfaces and the signing server checked, and a report with
advice. Each check carries the figure, the line it is held to, its status and,
when it is not ok, what to do about it.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "Check",
    "Report",
    "Status",
    "at_least",
    "at_most",
    "runway_days",
]


class Status(StrEnum):
    """ok: within the line; warn: worth a look, not a failure; breach: past the
    line (the report fails); unknown: could not be measured (said why)."""

    OK = "ok"
    WARN = "warn"
    BREACH = "breach"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report. ``key`` is stable (the gauge's label)."""

    area: str
    key: str
    title: str
    status: Status
    value: float | None = None
    unit: str = ""
    limit: str = ""
    detail: str = ""
    advice: str = ""


def at_most(
    area: str,
    key: str,
    title: str,
    value: float,
    limit: float,
    *,
    unit: str = "",
    detail: str = "",
    advice: str = "",
) -> Check:
    """A figure that must stay below ``limit`` (disk use, backup age)."""
    ok = value < limit
    return Check(
        area,
        key,
        title,
        Status.OK if ok else Status.BREACH,
        value,
        unit,
        f"< {_num(limit)}{unit and ' ' + unit}",
        detail,
        "" if ok else advice,
    )


def at_least(
    area: str,
    key: str,
    title: str,
    value: float,
    limit: float,
    *,
    unit: str = "",
    detail: str = "",
    advice: str = "",
) -> Check:
    """A figure that must stay at or above ``limit`` (days of stock, of a certificate)."""
    ok = value >= limit
    return Check(
        area,
        key,
        title,
        Status.OK if ok else Status.BREACH,
        value,
        unit,
        f">= {_num(limit)}{unit and ' ' + unit}",
        detail,
        "" if ok else advice,
    )


def runway_days(available: int, issued: int, window_days: float) -> float:
    """Days the ``available`` numbers last at the rate of ``issued`` bills per
    ``window_days``; infinite when nothing was issued."""
    if issued <= 0 or window_days <= 0:
        return math.inf
    return available / (issued / window_days)


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "∞"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


@dataclass(frozen=True, slots=True)
class Report:
    """Every check of one inspection, and when and where it ran."""

    at: datetime
    host: str
    checks: tuple[Check, ...]
    # Figures kept for the next report (database size for growth, the time).
    carry: dict[str, float] = field(default_factory=dict)

    @property
    def breaches(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status is Status.BREACH)

    @property
    def exit_code(self) -> int:
        """0 when nothing is past its line, 1 otherwise (systemd marks the run failed)."""
        return 1 if self.breaches else 0

    def count(self, status: Status) -> int:
        return sum(c.status is status for c in self.checks)

    def summary(self) -> str:
        parts = [f"{self.count(s)} {s.value}" for s in Status if self.count(s)]
        verdict = "BREACH" if self.breaches else "OK"
        return f"{verdict}: {len(self.checks)} checks ({', '.join(parts)})"

    def areas(self) -> list[str]:
        return list(dict.fromkeys(c.area for c in self.checks))

    def to_json(self) -> str:
        return json.dumps(
            {
                "at": self.at.isoformat(),
                "host": self.host,
                "summary": self.summary(),
                "carry": self.carry,
                "checks": [_jsonable(asdict(c)) for c in self.checks],
            },
            ensure_ascii=False,
            indent=1,
        )

    def to_markdown(self) -> str:
        lines = [
            f"# ebill inspection report {self.at:%Y-%m-%d %H:%M UTC}",
            "",
            f"Host `{self.host}`. **{self.summary()}**",
            "",
        ]
        if self.breaches:
            lines += ["## Needs action", ""]
            lines += [f"- **{c.title}**: {c.advice or c.detail}" for c in self.breaches]
            lines.append("")
        for area in self.areas():
            lines += [
                f"## {area}",
                "",
                "| check | status | value | line | detail |",
                "|---|---|---|---|---|",
            ]
            for c in self.checks:
                if c.area == area:
                    value = f"{_num(c.value)} {c.unit}".strip()
                    lines.append(
                        f"| {_md(c.title)} | {c.status.value.upper()} | {_md(value)}"
                        f" | {_md(c.limit)} | {_md(c.detail)} |"
                    )
            lines.append("")
        return "\n".join(lines)

    def to_html(self) -> str:
        colour = {
            Status.OK: "#1b7f3b",
            Status.WARN: "#a86b00",
            Status.BREACH: "#b00020",
            Status.UNKNOWN: "#555",
        }
        e = html.escape
        out = [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            f"<title>ebill inspection {self.at:%Y-%m-%d %H:%M}</title>",
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
            ".s{font-weight:bold;color:#fff;border-radius:3px;padding:0 .4em}</style>",
            "</head><body>",
            f"<h1>ebill inspection report {self.at:%Y-%m-%d %H:%M UTC}</h1>",
            f"<p>Host <code>{e(self.host)}</code>. <strong>{e(self.summary())}</strong></p>",
        ]
        if self.breaches:
            out.append("<h2>Needs action</h2><ul>")
            out += [
                f"<li><strong>{e(c.title)}</strong>: {e(c.advice or c.detail)}</li>"
                for c in self.breaches
            ]
            out.append("</ul>")
        for area in self.areas():
            out.append(f"<h2>{e(area)}</h2><table><tr><th>check</th><th>status</th>")
            out.append("<th>value</th><th>line</th><th>detail</th></tr>")
            for c in self.checks:
                if c.area != area:
                    continue
                out.append(
                    f"<tr data-key='{e(c.key)}' data-status='{c.status.value}'>"
                    f"<td>{e(c.title)}</td><td><span class='s' style='background:"
                    f"{colour[c.status]}'>{c.status.value.upper()}</span></td>"
                    f"<td>{e(f'{_num(c.value)} {c.unit}'.strip())}</td><td>{e(c.limit)}</td>"
                    f"<td>{e(c.detail)}</td></tr>"
                )
            out.append("</table>")
        out.append("</body></html>")
        return "\n".join(out)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    value = d.get("value")
    if isinstance(value, float) and math.isinf(value):
        d["value"] = "inf"
    return d
