"""Bill in, bytes out: the H5 page, the PDF and the notice slip of a bill.

The H5 page and the PDF come from one Jinja2 template (templates/bill.html) and
one stylesheet; the PDF is that HTML laid out by WeasyPrint, which embeds the
CJK font (Debian's fonts-noto-cjk, found through fontconfig) and carries the
bill's export (engine.verification.BillExport) as an attached file, so
``ebill verify`` checks a PDF offline. WeasyPrint rather than reportlab: its
system libraries (Pango, HarfBuzz) are on the machine, it shapes CJK text
correctly, and it lets the PDF and the page share one template.
"""

from __future__ import annotations

import io
import subprocess
from collections import OrderedDict
from functools import cache
from importlib.resources import files

import segno
import weasyprint
from jinja2 import Environment, PackageLoader, select_autoescape
from PIL import Image, ImageDraw, ImageFont
from weasyprint.text.fonts import FontConfiguration

from engine.verification import BillExport
from usecases.rendering.seals import fiscal_seal, unit_seal
from usecases.rendering.view import BillView

__all__ = [
    "EXPORT_NAME",
    "PdfCache",
    "render_html",
    "render_notice",
    "render_pdf",
    "render_verify_page",
    "render_widget",
    "widget_script",
]

# The name of the attached export inside a rendered PDF.
EXPORT_NAME = "ebill-export.json"

_env = Environment(
    loader=PackageLoader("usecases.rendering", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


@cache
def _css() -> str:
    return (files("usecases.rendering") / "templates" / "bill.css").read_text(encoding="utf-8")


def _qr_svg(text: str) -> str:
    # Medium error correction: still reads with a smudge on a printed slip.
    svg: str = segno.make(text, error="m", micro=False).svg_inline(scale=3, border=2)
    return svg


@cache
def _pdf_style() -> tuple[weasyprint.CSS, FontConfiguration]:
    """The stylesheet parsed once for every PDF, with one font configuration:
    parsing it per bill cost ~10% of a PDF."""
    fonts = FontConfiguration()
    return weasyprint.CSS(string=_css(), font_config=fonts), fonts


def render_html(
    v: BillView, medium: str = "h5", *, inline_css: bool = True, links: bool = False
) -> str:
    """The bill as HTML: ``medium`` "h5" (the phone page) or "pdf" (print layout);
    ``links``: the page links to its PDF and notice slip (served beside it)."""
    return _env.get_template("bill.html").render(
        v=v,
        medium=medium,
        links=links,
        css=_css() if inline_css else "",
        unit_seal=unit_seal(v.unit_name, v.unit_key),
        fiscal_seal=fiscal_seal(v.fiscal_key, v.countersigned),
        qr_svg=_qr_svg(v.qr_text),
    )


def render_pdf(v: BillView, export: BillExport) -> bytes:
    """The bill as a PDF (A4 landscape) with its export attached."""
    attachment = weasyprint.Attachment(
        string=export.to_json(),
        name=EXPORT_NAME,
        description="canonical bytes and signatures of this e-bill (ebill verify)",
    )
    style, fonts = _pdf_style()
    pdf: bytes = weasyprint.HTML(string=render_html(v, "pdf", inline_css=False)).write_pdf(
        stylesheets=[style], font_config=fonts, attachments=[attachment]
    )
    return pdf


def render_verify_page(**context: object) -> str:
    """The public verification page (查验): the form, and a result when given."""
    return _env.get_template("verify.html").render(css=_css(), **context)


def render_widget(**context: object) -> str:
    """The H5 widget for apps: a compact card of one bill, to be framed."""
    return _env.get_template("widget.html").render(**context)


@cache
def widget_script() -> str:
    """widget.js, which an app's page includes to frame the card."""
    return files("usecases.rendering").joinpath("templates/widget.js").read_text("utf-8")


class PdfCache:
    """Rendered PDFs by what determines them: a bill's number and its signatures
    (a pending bill's PDF changes once it is countersigned). LRU, in memory; a
    bill is rendered when first asked for, not at issuance."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, str, bytes, bytes], bytes] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, str, bytes, bytes]) -> bytes | None:
        pdf = self._items.get(key)
        if pdf is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return pdf

    def put(self, key: tuple[str, str, bytes, bytes], pdf: bytes) -> None:
        if self._size <= 0:
            return
        self._items[key] = pdf
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


@cache
def _font_file(bold: bool) -> tuple[str, int]:
    """The CJK font fontconfig resolves (fonts-noto-cjk), as (path, face index)."""
    pattern = "Noto Sans CJK SC" + (":bold" if bold else "")
    try:
        out = subprocess.run(
            ["fc-match", "-f", "%{file}|%{index}", pattern],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
        path, _, index = out.partition("|")
        return path, int(index or 0)
    except (OSError, subprocess.SubprocessError, ValueError):
        return "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2


def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    path, index = _font_file(bold)
    return ImageFont.truetype(path, size, index=index)


def render_notice(v: BillView) -> bytes:
    """The notice slip (告知单) handed over at the window: a PNG with the bill's
    key facts and its signed QR code (what the vendor method getEBillNotifyPic
    serves)."""
    width, height = 640, 900
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    title, body, small = _font(34, bold=True), _font(22), _font(18)
    d.rectangle((8, 8, width - 9, height - 9), outline="#8b1a1a", width=3)
    d.text((width / 2, 50), "电子票据告知单", font=title, fill="#8b1a1a", anchor="mm")
    if v.red:
        d.text(
            (width / 2, 92), f"红字票据 · 冲销 {v.red_of}", font=body, fill="#d0021b", anchor="mm"
        )
    lines = [
        ("开票单位", v.unit_name),
        ("票据名称", v.bill_name),
        ("票据代码", v.bill_code),
        ("票据号码", v.bill_no),
        ("校验码", v.check_code),
        ("开票日期", v.issue_date),
        ("交款人", v.payer_name),
        ("金额", f"¥{v.total}"),
        ("大写", v.total_capitals),
    ]
    y = 120
    for label, value in lines:
        d.text((40, y), f"{label}：", font=body, fill="#555")
        d.text((160, y), value, font=body, fill="#111")
        y += 38
    qr = segno.make(v.qr_text, error="m", micro=False)
    buf = io.BytesIO()
    # A whole number of pixels per module: a scaled-down QR reads badly.
    qr.save(buf, kind="png", scale=max(2, 340 // qr.symbol_size(scale=1, border=4)[0]), border=4)
    code = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    side = code.width
    img.paste(code, ((width - side) // 2, y + 10))
    y += side + 24
    d.text((width / 2, y), "扫描二维码查验、下载电子票据", font=small, fill="#333", anchor="mm")
    d.text(
        (width / 2, y + 30),
        "二维码含财政签名，可离线验证真伪",
        font=small,
        fill="#777",
        anchor="mm",
    )
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=False)
    return out.getvalue()
