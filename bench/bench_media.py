"""Images and documents: normalization time, PDF pages/s, and memory for a 16 MB upload.

    .venv/bin/python -m bench.bench_media [--rounds 5] [--pages 200] [--no-upload] [--uvloop]

Each figure is a median of ``--rounds``, against a baseline measured the same way in the
same run:

* **image**: a 12-megapixel photo (4000 x 3000 JPEG of photo-like detail, 88 quality, with
  an EXIF orientation) normalized as a user's photo is (:func:`pipeline.images.normalize_image`:
  upright, stripped, capped to 1568 px, JPEG out), against the baseline of only decoding
  it with pillow (``Image.open`` + ``load``). Also the event loop's longest stall while
  :func:`pipeline.images.normalize_off_loop` runs, against a 1 ms ticker;
* **pdf**: a PDF of ``--pages`` pages of text read as a user's document is
  (:func:`pipeline.media_content.read_document_file`'s reader, in the parser processes),
  pages/s, against the baseline of pypdf's ``extract_text`` in this process; then the
  pages fitted into a 128k-token budget (:func:`pipeline.document_context.fit_documents`);
* **upload**: the memory of a 16 MiB upload through the media stage, which
  ``bench/bench_media_upload.py`` measures (each case in a process of its own); run here
  without its S3 cases (``--no-upload`` skips it).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import time
from collections.abc import Callable

from PIL import Image

from pipeline.document_context import fit_documents
from pipeline.images import ImageLimits, normalize_image, normalize_off_loop
from pipeline.kb.parser_processes import PARSERS, read_off_loop
from pipeline.kb.readers import read_document
from pipeline.media_content import DocumentPage, ReadDocumentFile
from pipeline.tokens import counter_for_model
from tests.kb.pdf_writer import make_pdf
from tests.pipeline.media_samples import photo

MP12 = (4000, 3000)


def _median_seconds(run: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _twelve_megapixels() -> bytes:
    data = photo(*MP12)
    image = Image.open(io.BytesIO(data))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88, exif=exif)
    return out.getvalue()


def _decode(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as image:
        image.load()


async def _loop_stall(work: Callable[[], asyncio.Future[object]]) -> float:
    """The longest gap between 1 ms ticks of the event loop while ``work`` runs."""
    longest = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest = max(longest, now - last - 0.001)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    await work()
    done.set()
    await tick
    return longest


async def bench_image(rounds: int) -> None:
    data = _twelve_megapixels()
    limits = ImageLimits()
    decode = _median_seconds(lambda: _decode(data), rounds)
    normalize = _median_seconds(lambda: normalize_image(data, limits), rounds)
    out = normalize_image(data, limits)
    stalls = [
        await _loop_stall(lambda: asyncio.ensure_future(normalize_off_loop(data, limits)))
        for _ in range(rounds)
    ]
    print(
        f"image  12 MP JPEG ({len(data) / 1e6:.1f} MB) -> {out.width}x{out.height} "
        f"{out.content_type} ({len(out.data) / 1e3:.0f} kB)"
    )
    print(f"  baseline: decode only           {decode * 1000:8.0f} ms")
    print(
        f"  normalize (orient, strip, cap)   {normalize * 1000:8.0f} ms"
        f"   x{normalize / decode:.2f} of the decode"
    )
    print(f"  longest loop stall off the loop  {statistics.median(stalls) * 1000:8.1f} ms")


async def bench_pdf(rounds: int, pages: int) -> None:
    lines = [f"Line {n} of a page of a user's document, with some words." for n in range(40)]
    data = make_pdf([[f"Page {p}", *lines] for p in range(1, pages + 1)])
    source = "document.pdf"
    baseline = _median_seconds(lambda: read_document(source, data), rounds)
    await read_off_loop(source, True, None, read_document, source, data)  # starts the pool
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        read = await read_off_loop(source, True, None, read_document, source, data)
        times.append(time.perf_counter() - started)
    in_process = statistics.median(times)
    document = ReadDocumentFile(
        media=None,  # type: ignore[arg-type]
        name="document.pdf",
        pages=tuple(DocumentPage(s.page, s.text) for s in read.sections),
        page_count=read.pages,
    )
    counter = counter_for_model("gpt-4o")
    fit = _median_seconds(lambda: fit_documents([document], counter, 128_000 * 0.6), rounds)
    fitted = fit_documents([document], counter, 128_000 * 0.6)
    assert fitted is not None
    print(f"pdf    {pages} pages ({len(data) / 1e6:.2f} MB)")
    print(
        f"  baseline: pypdf in this process  {pages / baseline:8.0f} pages/s"
        f"   ({baseline * 1000:.0f} ms)"
    )
    print(
        f"  read in a parser process         {pages / in_process:8.0f} pages/s"
        f"   ({in_process * 1000:.0f} ms, x{in_process / baseline:.2f} of the baseline)"
    )
    print(
        f"  fitted into 128k tokens          {fit * 1000:8.0f} ms"
        f"   ({fitted.pages_kept} of {fitted.pages_total} pages kept)"
    )


async def main(args: argparse.Namespace) -> None:
    print(f"medians of {args.rounds} rounds\n")
    await bench_image(args.rounds)
    print()
    await bench_pdf(args.rounds, args.pages)
    PARSERS.close()
    if not args.no_upload:
        from bench import bench_media_upload

        print("\nupload (bench/bench_media_upload.py --no-s3)\n")
        upload = ["--no-s3", f"--rounds={args.rounds}"] + (["--uvloop"] if args.uvloop else [])
        await bench_media_upload.main(bench_media_upload.parse(upload))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--no-upload", action="store_true", help="skip the upload's memory")
    parser.add_argument("--uvloop", action="store_true", help="the upload cases on uvloop")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
