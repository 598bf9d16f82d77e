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
    """One A4 page for a school's notice board."""
    doc = _document()
    doc.add_page()
    doc.set_font("DejaVu", "B", 24)
    doc.set_xy(15, 20)
    doc.multi_cell(180, 11, t("console.poster.title"), align="C")
    doc.set_font("DejaVu", "", 16)
    doc.set_x(15)
    doc.multi_cell(180, 9, school, align="C")
    doc.image(io.BytesIO(qr_png), x=60, y=75, w=90)
    doc.set_xy(15, 172)
    doc.set_font("DejaVu", "", 13)
    doc.multi_cell(180, 7, t("console.poster.telegram"), align="C")
    doc.set_x(15)
    doc.multi_cell(180, 7, t("console.poster.zalo"), align="C")
    doc.set_x(15)
    doc.set_font("DejaVu", "B", 26)
    doc.cell(180, 16, code, align="C")
    doc.set_xy(15, 240)
    doc.set_font("DejaVu", "B", 14)
    doc.multi_cell(180, 8, t("console.poster.hotlines"), align="C")
    return bytes(doc.output())


def report_poster(t: Translator, school: str, url: str, qr_png: bytes) -> bytes:
    """One A4 page: the QR of a school's public report page, its address and the hotlines."""
    doc = _document()
    doc.add_page()
    doc.set_font("DejaVu", "B", 24)
    doc.set_xy(15, 20)
    doc.multi_cell(180, 11, t("console.report_poster.title"), align="C")
    doc.set_font("DejaVu", "", 16)
    doc.set_x(15)
    doc.multi_cell(180, 9, school, align="C")
    doc.image(io.BytesIO(qr_png), x=60, y=75, w=90)
    doc.set_xy(15, 172)
    doc.set_font("DejaVu", "", 13)
    doc.multi_cell(180, 7, t("console.report_poster.scan"), align="C")
    doc.set_x(15)
    doc.set_font("DejaVu", "B", 13)
    doc.multi_cell(180, 8, url, align="C")
    doc.set_xy(15, 240)
    doc.set_font("DejaVu", "B", 14)
    doc.multi_cell(180, 8, t("console.poster.hotlines"), align="C")
    return bytes(doc.output())
