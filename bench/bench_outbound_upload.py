"""Memory while a bot sends a 16 MB file: streamed from the store to the provider, not held.

    .venv/bin/python -m bench.bench_outbound_upload [--size-mb 16] [--rounds 5]

The provider is a sink on 127.0.0.1 in a process of its own (its memory is not counted)
that answers every POST as the Graph API and the Bot API do after reading the body a chunk
at a time. Each case runs in a child process of its own: it warms up with a 1 MiB send
through the same path, then sends ``--rounds`` files of the full size; the figure is
tracemalloc's peak of Python allocations above what the child held just before each send
(median of the rounds), put against the store's 64 KiB chunk. The baseline, measured the
same way in the same run, is the same upload with the file read whole first (as an
adapter that does not stream would).

Cases:
  whole-whatsapp    baseline: the file read whole, then uploaded to /{phone-number-id}/media
  stream-whatsapp   WhatsApp's upload as delivery makes it: multipart streamed from the store
  telegram          Telegram's sendDocument through python-telegram-bot (the SDK takes bytes:
                    the file is held whole once, read a chunk at a time as it is sent)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from channels.base import Attachment, MediaKind
from channels.outbound_media import OutboundFile
from channels.telegram import TelegramChannel
from channels.whatsapp import WhatsAppChannel
from pipeline.media_delivery import DeliveryFiles, FileStep
from storage.blobs_fs import FilesystemBlobStore

KiB = 1024
MiB = 1024 * 1024
CHUNK = 64 * KiB
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"

SINK = """
import json, sys
from aiohttp import web

async def sink(request):
    async for _ in request.content.iter_chunked(65536):
        pass
    if "/media" in request.path:
        return web.json_response({"id": "900000000000001"})
    message = {"message_id": 1, "date": 0, "chat": {"id": 42, "type": "private"},
               "document": {"file_id": "F", "file_unique_id": "U"}}
    return web.json_response({"ok": True, "result": message})

app = web.Application(client_max_size=1 << 30)
app.router.add_post("/{tail:.*}", sink)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


async def _child(case: str, size: int, rounds: int, port: int, folder: Path) -> list[int]:
    blobs = await FilesystemBlobStore(folder).open_store()
    files = DeliveryFiles(blobs, None)

    async def put(key: str, n: int) -> None:
        async def data() -> Any:
            block = os.urandom(CHUNK)
            for _ in range(n // CHUNK):
                yield block

        await blobs.put(key, data(), content_type="application/pdf")

    await put("b/warm.pdf", MiB)
    await put("b/file.pdf", size)
    whatsapp = WhatsAppChannel(
        access_token="t",
        phone_number_id="1",
        app_secret="s",
        api_url=f"http://127.0.0.1:{port}/v23.0",
        read_timeout=60.0,
    )
    telegram = TelegramChannel(
        token=TOKEN, api_url=f"http://127.0.0.1:{port}/bot", read_timeout=60.0
    )

    def outbound(key: str, n: int) -> OutboundFile:
        attachment = Attachment(
            kind=MediaKind.DOCUMENT,
            content_type="application/pdf",
            filename="file.pdf",
            size=n,
            key=key,
        )
        return files.outbound_file(FileStep(0, attachment, ""), upload_id=None, uploaded=None)

    async def send(key: str, n: int) -> None:
        file = outbound(key, n)
        if case == "stream-whatsapp":
            await whatsapp._upload(file)
        elif case == "whole-whatsapp":
            async with file.open() as stream:  # read whole, as an adapter that does not stream
                data = b"".join([chunk async for chunk in stream])
            await whatsapp._upload(dataclasses.replace(file, open=lambda: _single(data)))
            del data
        else:
            await telegram.send_file("42", file)

    await send("b/warm.pdf", MiB)
    peaks = []
    tracemalloc.start()
    for _ in range(rounds):
        tracemalloc.reset_peak()
        idle = tracemalloc.get_traced_memory()[0]
        await send("b/file.pdf", size)
        peaks.append(tracemalloc.get_traced_memory()[1] - idle)
    tracemalloc.stop()
    await whatsapp.close()
    await telegram.close()
    return peaks


def _single(data: bytes) -> Any:
    """The file held whole, handed over as one chunk."""

    @contextlib.asynccontextmanager
    async def opened() -> Any:
        async def chunks() -> Any:
            yield data

        yield chunks()

    return opened()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = args.size_mb * MiB
    if args.child:
        peaks = asyncio.run(_child(args.child, size, args.rounds, args.port, Path(args.folder)))
        print(json.dumps(peaks))
        return 0
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(port)])
    try:
        time.sleep(1.0)
        results: dict[str, float] = {}
        for case in ("whole-whatsapp", "stream-whatsapp", "telegram"):
            with tempfile.TemporaryDirectory() as folder:
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.bench_outbound_upload",
                        "--child",
                        case,
                        "--port",
                        str(port),
                        "--folder",
                        folder,
                        "--size-mb",
                        str(args.size_mb),
                        "--rounds",
                        str(args.rounds),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
            peaks = json.loads(out.stdout.strip().splitlines()[-1])
            results[case] = statistics.median(peaks)
        base = results["whole-whatsapp"]
        print(f"{args.size_mb} MiB file, {args.rounds} rounds, median tracemalloc peak above idle:")
        for case, peak in results.items():
            print(
                f"  {case:16} {peak / MiB:8.2f} MiB  {peak / CHUNK:7.1f} x chunk"
                f"  {peak / base:6.3f} x baseline"
            )
    finally:
        sink.terminate()
        sink.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
