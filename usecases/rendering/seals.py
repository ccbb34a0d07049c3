"""The seals drawn on a bill, as SVG: the unit's bill seal (round, a star, the
unit's name on the rim) and the fiscal platform's supervision seal (oval). Each
names the key that signed, by fingerprint, so the drawing says who vouches.

Characters on the rim are placed one by one (translate + rotate) instead of with
``textPath``, which not every SVG renderer (WeasyPrint's among them) draws.
"""

from __future__ import annotations

import math
from html import escape

__all__ = ["fiscal_seal", "unit_seal"]

_RED = "#d0021b"
_FONT = "Noto Serif CJK SC, Noto Sans CJK SC, serif"


def _arc_text(
    text: str, cx: float, cy: float, rx: float, ry: float, size: float, span_deg: float
) -> str:
    """``text`` along the top of an ellipse, centred, reading left to right."""
    n = len(text)
    if n == 0:
        return ""
    step = span_deg / max(n - 1, 1)
    start = -90 - span_deg / 2
    out = []
    for i, ch in enumerate(text):
        a = math.radians(start + i * step)
        x, y = cx + rx * math.cos(a), cy + ry * math.sin(a)
        # Upright means pointing away from the centre: 0 at the top.
        rot = math.degrees(a) + 90
        out.append(
            f'<text x="0" y="0" transform="translate({x:.2f},{y:.2f}) rotate({rot:.1f})"'
            f' font-size="{size}" text-anchor="middle" dominant-baseline="central"'
            f' fill="{_RED}" font-family="{_FONT}">{escape(ch)}</text>'
        )
    return "".join(out)


def _star(cx: float, cy: float, r: float) -> str:
    pts = []
    for i in range(10):
        rr = r if i % 2 == 0 else r * 0.382
        a = math.radians(-90 + i * 36)
        pts.append(f"{cx + rr * math.cos(a):.2f},{cy + rr * math.sin(a):.2f}")
    return f'<polygon points="{" ".join(pts)}" fill="{_RED}"/>'


def unit_seal(unit_name: str, fingerprint: str, size: int = 160) -> str:
    """The unit's round seal: its name on the rim, a star, 票据专用章, the key."""
    c = size / 2
    name = unit_name[:16]
    span = min(250.0, 20.0 * max(len(name), 4))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="seal unit-seal" width="{size}"'
        f' height="{size}" viewBox="0 0 {size} {size}" role="img"'
        f' aria-label="{escape(unit_name)} 票据专用章 {escape(fingerprint)}">'
        f'<circle cx="{c}" cy="{c}" r="{c - 4}" fill="none" stroke="{_RED}" stroke-width="4"/>'
        + _arc_text(name, c, c, c - 22, c - 22, 15, span)
        + _star(c, c - 6, 20)
        + f'<text x="{c}" y="{c + 32}" font-size="12" text-anchor="middle" fill="{_RED}"'
        f' font-family="{_FONT}">票据专用章</text>'
        f'<text x="{c}" y="{c + 50}" font-size="8" text-anchor="middle" fill="{_RED}"'
        f' font-family="{_FONT}">{escape(fingerprint)}</text>'
        "</svg>"
    )


def fiscal_seal(fingerprint: str, countersigned: bool, width: int = 180, height: int = 120) -> str:
    """The platform's oval supervision seal (监制章); hollow and marked when the
    bill has no countersignature yet."""
    cx, cy = width / 2, height / 2
    label = "财政电子票据监制章" if countersigned else "待财政监制"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="seal fiscal-seal" width="{width}"'
        f' height="{height}" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="{label} {escape(fingerprint)}">'
        f'<ellipse cx="{cx}" cy="{cy}" rx="{cx - 4}" ry="{cy - 4}" fill="none"'
        f' stroke="{_RED}" stroke-width="3"'
        + ("" if countersigned else ' stroke-dasharray="6 4"')
        + "/>"
        + _arc_text("财政部监制" if countersigned else "未监制", cx, cy, cx - 20, cy - 18, 14, 120)
        + f'<text x="{cx}" y="{cy + 6}" font-size="13" text-anchor="middle" fill="{_RED}"'
        f' font-family="{_FONT}">{label}</text>'
        f'<text x="{cx}" y="{cy + 30}" font-size="8" text-anchor="middle" fill="{_RED}"'
        f' font-family="{_FONT}">{escape(fingerprint)}</text>'
        "</svg>"
    )
