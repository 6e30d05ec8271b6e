"""Users' images made safe and small for a vision model, with ``pillow``, off the event loop.

A photo from a phone comes with an EXIF orientation (the pixels stored sideways, a tag
saying how to turn them), GPS position and camera details, at 12 megapixels or more.
:func:`normalize_image` turns it upright (the orientation applied, then every piece of
metadata dropped: EXIF, XMP, ICC profile, comments), caps its longest side, and writes it
as JPEG (PNG where it has transparency, or the format the bot asks for: ``image-format``
in config.csv, ``jpeg``, ``png`` or ``webp``).

What is refused, as :class:`ImageRejected` with a reason the user is told and the log
keeps:

* ``bomb``: more pixels than the limit (:data:`MAX_PIXELS`, or the bot's lower
  ``image-max-pixels``), judged from the header before a byte of pixels is decoded.
  ``Image.MAX_IMAGE_PIXELS``, pillow's own guard, is set explicitly to the same limit for
  every path that decodes (a second frame, a thumbnail);
* ``corrupt``: a truncated or damaged file (pillow's ``LOAD_TRUNCATED_IMAGES`` stays off,
  so a short file is an error, not a grey half-image);
* ``not_an_image``: bytes that are no image format we accept, whatever the content type
  said (a PDF or a script sent as ``image/jpeg``).

Decoding, resizing and encoding are CPU work: :func:`normalize_off_loop` runs them in the
parser processes (:data:`pipeline.kb.parser_processes.PARSERS`), not in a thread: pillow's
JPEG encoder holds the GIL (a thread stalled the event loop ~35 ms per 12 MP photo), and a
decoder that crashes on a hostile file takes a worker process with it, not the gateway.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import zxingcpp
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from pipeline.kb.documents import UnreadableDocument
from pipeline.kb.parser_processes import PARSERS

# Pillow's decompression-bomb guard, set here rather than left to its default: an image
# of more pixels than this is refused before it is decoded.
MAX_PIXELS = 50_000_000  # a 12 MP photo passes, and so does a 48 MP one; 8K x 8K does not
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a short file is an error, never a padded image

# Anthropic's advice for its models (longest side), and within what OpenAI's high detail
# reads whole: bigger costs tokens and time and shows the model nothing more.
DEFAULT_MAX_SIDE = 1568
JPEG_QUALITY = 85
# Formats a messaging app sends; anything else (PSD, EPS, ICNS, …) is not opened at all.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG opens MPO too
OUTPUT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_FORMAT_NAMES = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG", "webp": "WEBP"}

BOMB = "bomb"
CORRUPT = "corrupt"
NOT_AN_IMAGE = "not_an_image"


class ImageRejected(Exception):
    """An image that is not normalized: ``reason`` is one of the module's reasons."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[ImageRejected], tuple[str, str]]:
        # Raised in a parser process, it is pickled back.
        return (type(self), (self.reason, self.detail))


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """How a bot's images are normalized (its config.csv rows, or the defaults)."""

    max_side: int = DEFAULT_MAX_SIDE
    max_pixels: int = MAX_PIXELS
    output: str | None = None  # JPEG, PNG or WEBP; None: JPEG, PNG for transparency

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> ImageLimits:
        """``image-max-side``, ``image-max-pixels`` (never above :data:`MAX_PIXELS`) and
        ``image-format``; a value that does not read is left at its default."""
        return cls(
            max_side=_positive(config.get("image-max-side"), DEFAULT_MAX_SIDE),
            max_pixels=min(_positive(config.get("image-max-pixels"), MAX_PIXELS), MAX_PIXELS),
            output=_FORMAT_NAMES.get((config.get("image-format") or "").strip().lower()),
        )


@dataclass(frozen=True, slots=True)
class NormalizedImage:
    """An image upright, without metadata, within the size cap, in ``content_type``."""

    data: bytes
    content_type: str
    width: int
    height: int
    source_format: str  # what the bytes were (JPEG, PNG…), whatever they were said to be
    source_width: int
    source_height: int


def _positive(value: str | None, default: int) -> int:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return default
    return number if number > 0 else default


def open_image(data: bytes, limits: ImageLimits) -> Image.Image:
    """The image in ``data``, opened (header read, pixels not yet decoded) and checked
    against the pixel limit; :class:`ImageRejected` otherwise."""
    try:
        with warnings.catch_warnings():
            # Between MAX_IMAGE_PIXELS and twice that pillow only warns: it is an error here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageRejected(BOMB, str(e)) from e
    except UnidentifiedImageError as e:
        raise ImageRejected(NOT_AN_IMAGE, "not an image format we read") from e
    except (OSError, SyntaxError, ValueError) as e:  # pillow's plugins raise all three
        raise ImageRejected(CORRUPT, f"unreadable header ({e})") from e
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageRejected(CORRUPT, f"an image of {width}x{height} pixels")
    if width * height > limits.max_pixels:
        raise ImageRejected(BOMB, f"{width}x{height} pixels, over the limit of {limits.max_pixels}")
    return image


def decoded(data: bytes, limits: ImageLimits) -> tuple[Image.Image, str, tuple[int, int]]:
    """The image's pixels decoded and turned upright, with its format and first size.

    A JPEG bigger than the cap is decoded at a fraction of its size (libjpeg scales by
    1/2, 1/4 or 1/8 while decoding, never below what the cap keeps): a 12 MP photo is
    read as 3 MP, four times less work and memory than decoding it whole to shrink it.
    """
    image = open_image(data, limits)
    source_format = image.format or "unknown"
    source_size = image.size
    width, height = source_size
    if image.format in ("JPEG", "MPO") and max(width, height) > limits.max_side:
        scale = limits.max_side / max(width, height)
        image.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            upright = ImageOps.exif_transpose(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageRejected(BOMB, str(e)) from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageRejected(CORRUPT, f"truncated or damaged ({e})") from e
    return upright, source_format, source_size


def normalize_image(data: bytes, limits: ImageLimits = ImageLimits()) -> NormalizedImage:
    """``data`` upright, stripped, capped and converted (see the module's docstring).

    CPU work: call it in a worker thread (:func:`normalize_off_loop`).
    """
    image, source_format, (source_width, source_height) = decoded(data, limits)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    output = limits.output or ("PNG" if has_alpha else "JPEG")
    image = image.convert("RGBA" if has_alpha and output != "JPEG" else "RGB")
    if max(image.size) > limits.max_side:
        image.thumbnail((limits.max_side, limits.max_side), Image.Resampling.LANCZOS)
    image.info = {}  # EXIF, XMP, ICC profile, comments: none of it goes on
    out = io.BytesIO()
    if output == "JPEG":
        image.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    elif output == "WEBP":
        image.save(out, "WEBP", quality=JPEG_QUALITY)
    else:
        image.save(out, "PNG", optimize=False)
    return NormalizedImage(
        data=out.getvalue(),
        content_type=OUTPUT_TYPES[output],
        width=image.width,
        height=image.height,
        source_format=source_format,
        source_width=source_width,
        source_height=source_height,
    )


def read_codes(data: bytes) -> list[str]:
    """The texts of the barcodes in a normalized image, QR codes first (zxing-cpp, which
    holds the GIL while it reads: run it in a parser process)."""
    with Image.open(io.BytesIO(data)) as image:
        found = zxingcpp.read_barcodes(image.convert("L"))
    found.sort(key=lambda code: code.format != zxingcpp.BarcodeFormat.QRCode)
    return [code.text for code in found if code.valid and code.text]


async def normalize_off_loop(data: bytes, limits: ImageLimits) -> NormalizedImage:
    """:func:`normalize_image` in a parser process; one that dies on the image (a decoder
    crash, the OOM killer) makes it a damaged image."""
    try:
        return await PARSERS.run("image", normalize_image, data, limits)
    except UnreadableDocument as e:
        raise ImageRejected(CORRUPT, e.reason) from e
