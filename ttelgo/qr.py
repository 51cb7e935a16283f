"""QR codes of LPA activation strings, as PNG (what a phone's camera scans to install an eSIM)."""

from __future__ import annotations

import io

import qrcode
from qrcode.image.pure import PyPNGImage


def qr_png(text: str) -> bytes:
    buffer = io.BytesIO()
    qrcode.make(text, image_factory=PyPNGImage, box_size=8, border=2).save(buffer)
    return buffer.getvalue()


def lpa(smdp_address: str, matching_id: str) -> str:
    """The activation string a QR code carries (GSMA SGP.22)."""
    return f"LPA:1${smdp_address}${matching_id}"
