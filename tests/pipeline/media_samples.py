"""Images and documents made here for the media tests (nothing is downloaded).

* :func:`sideways_photo`: a JPEG stored sideways with an EXIF orientation (6: turn 90°
  clockwise to show it), camera and GPS tags; shown upright, its top half is red and its
  bottom half blue;
* :func:`bomb_png`: a PNG whose header claims 40,000 x 40,000 pixels (1.6 billion) over a
  few bytes of data, as decompression bombs do;
* :func:`truncated_jpeg`: a real JPEG cut short;
* :func:`qr_png`: a QR code (zxing-cpp writes it);
* :func:`encrypted_pdf`: a PDF that needs a password (pypdf writes it).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import zxingcpp
from PIL import Image
from pypdf import PdfReader, PdfWriter

from tests.kb.pdf_writer import make_pdf

RED = (220, 20, 20)
BLUE = (20, 20, 220)
ORIENTATION = 0x0112
MAKE = 0x010F
GPS_IFD = 0x8825


def sideways_photo(width: int = 400, height: int = 200, *, quality: int = 90) -> bytes:
    """Stored ``width`` x ``height``: left half red, right half blue, orientation 6."""
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[MAKE] = "PhoneCam"
    exif.get_ifd(GPS_IFD)[2] = (23.0, 33.0, 1.0)  # GPSLatitude
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, exif=exif)
    return out.getvalue()


def photo(width: int, height: int, *, seed: int = 1) -> bytes:
    """A JPEG of noise-like detail (compresses like a photo, not like a flat colour)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def bomb_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A PNG header claiming ``width`` x ``height`` 8-bit grey pixels, and a tiny IDAT."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\x00" * 4096, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", data)
        + _chunk(b"IEND", b"")
    )


def truncated_jpeg() -> bytes:
    whole = photo(640, 480)
    return whole[: len(whole) // 2]


def qr_png(text: str, *, scale: int = 6) -> bytes:
    code = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode)
    pixels = np.array(code.to_image(scale=scale))
    image = Image.fromarray(pixels).convert("RGB")
    framed = Image.new("RGB", (image.width + 80, image.height + 80), (255, 255, 255))
    framed.paste(image, (40, 40))
    out = io.BytesIO()
    framed.save(out, "PNG")
    return out.getvalue()


def pdf(*pages: str) -> bytes:
    """A PDF of one text line (or several, split at newlines) per page."""
    return make_pdf([page.split("\n") for page in pages])


def encrypted_pdf(password: str = "s3cret") -> bytes:
    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(pdf("Salary table: confidential"))).pages:
        writer.add_page(page)
    writer.encrypt(user_password=password, owner_password=password + "-owner")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx(*paragraphs: str) -> bytes:
    """A Word document (python-docx writes it), a heading then the paragraphs."""
    from docx import Document

    document = Document()
    document.add_heading("Lease", level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def image_of(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
