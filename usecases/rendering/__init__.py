"""Rendering a bill for people: the H5 page and PDF from one template set, the
notice slip with the signed QR code (docs/rendering.md)."""

from usecases.rendering.keys import ClientKeys, Keys, StaticKeys
from usecases.rendering.render import (
    EXPORT_NAME,
    PdfCache,
    render_html,
    render_notice,
    render_pdf,
    render_verify_page,
    render_widget,
    widget_script,
)
from usecases.rendering.service import Bills, Rendering, StoredBills
from usecases.rendering.view import BillView, Names, view_of

__all__ = [
    "EXPORT_NAME",
    "BillView",
    "Bills",
    "ClientKeys",
    "Keys",
    "Names",
    "PdfCache",
    "Rendering",
    "StaticKeys",
    "StoredBills",
    "render_html",
    "render_notice",
    "render_pdf",
    "render_verify_page",
    "render_widget",
    "view_of",
    "widget_script",
]
