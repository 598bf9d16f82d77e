"""What is printed: an invitation card and its QR code (segno: an SVG for the page, a PNG
for the PDF), shared by the invitation pages and the PDF maker."""

from __future__ import annotations

import io
from dataclasses import dataclass

import segno


@dataclass(frozen=True)
class Card:
    """One printed card: who, as what, where, the code and what the QR code opens."""

    name: str
    role: str
    scope: str
    code: str
    link: str | None
    expires: str

    def qr(self) -> str:
        """The QR code as an SVG data URI (the link, or the code when there is no link)."""
        return qr_uri(self.link or self.code)


def qr_uri(content: str) -> str:
    """A QR code as an inline SVG image (no file, no network)."""
    return segno.make(content, error="m").svg_data_uri(scale=4, border=2)


def qr_png(content: str) -> bytes:
    """A QR code as PNG bytes (for the PDF)."""
    buffer = io.BytesIO()
    segno.make(content, error="m").save(buffer, kind="png", scale=8, border=2)
    return buffer.getvalue()
