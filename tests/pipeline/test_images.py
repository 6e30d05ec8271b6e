"""Users' images normalized with pillow: turned upright by their EXIF orientation, every
piece of metadata dropped, their size capped and their format converted; bombs, damaged
files and bytes that are no image refused with the reason."""

from __future__ import annotations

import io
import warnings

import pytest
from PIL import Image

from pipeline import images
from pipeline.images import ImageLimits, ImageRejected, normalize_image
from tests.pipeline.media_samples import (
    BLUE,
    RED,
    bomb_png,
    image_of,
    pdf,
    photo,
    sideways_photo,
    truncated_jpeg,
)


def close(pixel: tuple[int, ...], colour: tuple[int, int, int]) -> bool:
    return all(abs(a - b) < 40 for a, b in zip(pixel, colour, strict=False))


def test_a_sideways_photo_is_turned_upright_then_stripped_of_its_metadata() -> None:
    source = sideways_photo(400, 200)
    assert image_of(source).getexif()[0x0112] == 6  # the sample is what it says
    out = normalize_image(source)
    image = image_of(out.data)
    assert (out.content_type, image.format) == ("image/jpeg", "JPEG")
    assert image.size == (out.width, out.height) == (200, 400)  # portrait now
    assert close(image.getpixel((100, 50)), RED)  # the left half is the top
    assert close(image.getpixel((100, 350)), BLUE)
    assert not image.getexif()  # orientation, camera and GPS: all gone
    assert "icc_profile" not in image.info and "exif" not in image.info
    assert b"PhoneCam" not in out.data
    assert (out.source_format, out.source_width, out.source_height) == ("JPEG", 400, 200)


@pytest.mark.parametrize(
    ("limits", "size", "expected"),
    [
        (ImageLimits(), (4000, 3000), (1568, 1176)),  # a 12 MP photo: capped
        (ImageLimits(max_side=800), (4000, 3000), (800, 600)),
        (ImageLimits(), (640, 480), (640, 480)),  # small ones keep their size
    ],
)
def test_the_longest_side_is_capped(
    limits: ImageLimits, size: tuple[int, int], expected: tuple[int, int]
) -> None:
    out = normalize_image(photo(*size), limits)
    assert (out.width, out.height) == expected == image_of(out.data).size


def test_formats_are_converted_and_transparency_kept_as_png() -> None:
    transparent = Image.new("RGBA", (50, 40), (10, 200, 10, 0))
    buffer = io.BytesIO()
    transparent.save(buffer, "PNG")
    assert normalize_image(buffer.getvalue()).content_type == "image/png"
    buffer = io.BytesIO()
    Image.new("RGB", (50, 40), RED).save(buffer, "BMP")
    assert normalize_image(buffer.getvalue()).content_type == "image/jpeg"
    webp = normalize_image(photo(320, 240), ImageLimits(output="WEBP"))
    assert (webp.content_type, image_of(webp.data).format) == ("image/webp", "WEBP")


def test_the_bots_config_sets_the_limits_but_never_raises_the_bomb_limit() -> None:
    limits = ImageLimits.from_config(
        {"image-max-side": "1024", "image-max-pixels": "999999999999", "image-format": "png"}
    )
    assert limits == ImageLimits(max_side=1024, max_pixels=images.MAX_PIXELS, output="PNG")
    assert ImageLimits.from_config({"image-max-side": "lots"}) == ImageLimits()
    assert Image.MAX_IMAGE_PIXELS == images.MAX_PIXELS  # pillow's own guard, set explicitly


@pytest.mark.parametrize(
    ("data", "limits", "reason"),
    [
        (bomb_png(), ImageLimits(), images.BOMB),  # 1.6 gigapixels claimed, in 100 bytes
        (photo(2000, 1500), ImageLimits(max_pixels=1_000_000), images.BOMB),
        (truncated_jpeg(), ImageLimits(), images.CORRUPT),
        (pdf("not a picture"), ImageLimits(), images.NOT_AN_IMAGE),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", ImageLimits(), images.NOT_AN_IMAGE),
        (b"", ImageLimits(), images.NOT_AN_IMAGE),
    ],
)
def test_bombs_damaged_files_and_impostors_are_refused(
    data: bytes, limits: ImageLimits, reason: str
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pillow's bomb warning is no way out either
        with pytest.raises(ImageRejected) as refused:
            normalize_image(data, limits)
    assert refused.value.reason == reason


async def test_normalizing_runs_in_a_parser_process_and_its_refusals_come_back() -> None:
    out = await images.normalize_off_loop(sideways_photo(), ImageLimits())
    assert (out.width, out.height) == (200, 400)
    with pytest.raises(ImageRejected) as refused:
        await images.normalize_off_loop(bomb_png(), ImageLimits())
    assert refused.value.reason == images.BOMB  # pickled back from the worker
    assert "1600000000 pixels" in refused.value.detail


def test_a_big_jpeg_is_decoded_scaled_down_not_whole() -> None:
    image, _, source_size = images.decoded(photo(4000, 3000), ImageLimits())
    assert source_size == (4000, 3000)
    assert image.size == (2000, 1500)  # libjpeg's 1/2 scale, still above the 1568 cap
