"""PDFs to print: the invitation cards (A4, two columns) and a school's parents' poster.

fpdf2 writes them in pure Python; the font is matplotlib's DejaVu Sans (already a dependency
for the statistics chart), which has every Vietnamese diacritic."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bot.core.i18n import Translator
from bot.web.cards import Card


def _fonts() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _document() -> Any:
    from fpdf import FPDF

    doc = FPDF(orientation="portrait", unit="mm", format="A4")
    doc.set_auto_page_break(False)
    doc.add_font("DejaVu", "", str(_fonts() / "DejaVuSans.ttf"))
    doc.add_font("DejaVu", "B", str(_fonts() / "DejaVuSans-Bold.ttf"))
    doc.set_title("SafeSchool Link")
    return doc


def cards(t: Translator, items: Sequence[Card], qr: Callable[[str], bytes]) -> bytes:
    """Two columns of five cards per page, each with its QR code."""
    doc = _document()
    width, height, margin = 95.0, 55.0, 10.0
    for n, card in enumerate(items):
        slot = n % 10
        if slot == 0:
            doc.add_page()
        x = margin + (slot % 2) * width
        y = margin + (slot // 2) * height
        doc.rect(x, y, width - 2, height - 2)
        doc.image(io.BytesIO(qr(card.link or card.code)), x=x + width - 36, y=y + 3, w=32)
        doc.set_xy(x + 3, y + 4)
        doc.set_font("DejaVu", "B", 11)
        doc.multi_cell(width - 42, 5.5, card.name)
        doc.set_font("DejaVu", "", 8.5)
        doc.set_x(x + 3)
        doc.multi_cell(width - 42, 4.2, f"{card.role}\n{card.scope}")
        doc.set_x(x + 3)
        doc.set_font("DejaVu", "B", 13)
        doc.cell(width - 42, 8, card.code)
        doc.set_xy(x + 3, y + 37)
        doc.set_font("DejaVu", "", 7.5)
        doc.multi_cell(width - 8, 3.6, t("console.card.how", expires=card.expires))
    if not items:
        doc.add_page()
    return bytes(doc.output())


def poster(t: Translator, school: str, code: str, qr_png: bytes) -> bytes:
    """One A4 page for a school's notice board: how parents join."""
    return _poster(t("console.poster.title"), school, qr_png, [
        (t("console.poster.telegram"), 13, ""), (t("console.poster.zalo"), 13, ""),
        (code, 26, "B")], t("console.poster.hotlines"))


def report_poster(t: Translator, school: str, url: str, qr_png: bytes) -> bytes:
    """One A4 page: the QR of a school's public report page, its address and the hotlines."""
    return _poster(t("console.report_poster.title"), school, qr_png, [
        (t("console.report_poster.scan"), 13, ""), (url, 13, "B")],
        t("console.poster.hotlines"))


def _poster(title: str, school: str, qr_png: bytes, lines: list[tuple[str, int, str]],
            footer: str) -> bytes:
    """A poster: title, school, a big QR code, lines (text, size, style), the hotlines."""
    doc = _document()
    doc.add_page()
    doc.set_font("DejaVu", "B", 24)
    doc.set_xy(15, 20)
    doc.multi_cell(180, 11, title, align="C")
    doc.set_font("DejaVu", "", 16)
    doc.set_x(15)
    doc.multi_cell(180, 9, school, align="C")
    doc.image(io.BytesIO(qr_png), x=60, y=75, w=90)
    doc.set_xy(15, 172)
    for text, size, style in lines:
        doc.set_font("DejaVu", style, size)
        doc.set_x(15)
        doc.multi_cell(180, size * 0.6, text, align="C")
    doc.set_xy(15, 240)
    doc.set_font("DejaVu", "B", 14)
    doc.multi_cell(180, 8, footer, align="C")
    return bytes(doc.output())
