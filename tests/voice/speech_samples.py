"""Real speech for the voice tests: sentences spoken by espeak-ng, encoded by ffmpeg and sox
into what phones send (OGG/Opus voice notes, AMR, MP3, M4A, WAV).

Made on the test machine, with Debian's ``espeak-ng``, ``ffmpeg`` and ``sox`` (``.ci/run``
installs them); a test that needs one skips with the reason when it is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

TOOLS = ("espeak-ng", "ffmpeg", "ffprobe", "sox")

# format -> how to make it from espeak-ng's WAV (in, out)
_ENCODERS = {
    "wav": None,
    "ogg": [
        "ffmpeg",
        "-v",
        "error",
        "-y",
        "-i",
        "{src}",
        "-c:a",
        "libopus",
        "-b:a",
        "24k",
        "{dst}",
    ],
    "mp3": ["ffmpeg", "-v", "error", "-y", "-i", "{src}", "-c:a", "libmp3lame", "{dst}"],
    "m4a": ["ffmpeg", "-v", "error", "-y", "-i", "{src}", "-c:a", "aac", "{dst}"],
    "amr": ["sox", "{src}", "-r", "8000", "-c", "1", "-t", "amr-nb", "{dst}"],
}


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def need_tools() -> None:
    """Skip the calling test when the audio tools are not installed (.ci/run has them)."""
    missing = missing_tools()
    if missing:
        pytest.skip(
            f"needs Debian's {', '.join(missing)} (apt-get install ffmpeg espeak-ng sox"
            " libsox-fmt-all)"
        )


def speak(
    sentence: str, fmt: str = "ogg", *, pad_seconds: float = 0.0, length: float | None = None
) -> bytes:
    """``sentence`` spoken by espeak-ng, as a file of ``fmt``: ``pad_seconds`` of silence
    after it, or cut to ``length`` seconds (say it long enough)."""
    need_tools()
    with tempfile.TemporaryDirectory(prefix="voice-sample-") as folder:
        wav = Path(folder) / "speech.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), sentence], check=True)
        if pad_seconds:
            padded = Path(folder) / "padded.wav"
            subprocess.run(["sox", str(wav), str(padded), "pad", "0", str(pad_seconds)], check=True)
            wav = padded
        if length is not None:
            cut = Path(folder) / "cut.wav"
            subprocess.run(["sox", str(wav), str(cut), "trim", "0", str(length)], check=True)
            wav = cut
        encoder = _ENCODERS[fmt]
        if encoder is None:
            return wav.read_bytes()
        out = Path(folder) / f"speech.{fmt}"
        command = [part.format(src=wav, dst=out) for part in encoder]
        subprocess.run(command, check=True)
        return out.read_bytes()


def silence(seconds: float, fmt: str = "ogg") -> bytes:
    """``seconds`` of silence as a file of ``fmt``."""
    need_tools()
    with tempfile.TemporaryDirectory(prefix="voice-sample-") as folder:
        wav = Path(folder) / "silence.wav"
        subprocess.run(
            ["sox", "-n", "-r", "16000", "-c", "1", str(wav), "trim", "0", str(seconds)], check=True
        )
        encoder = _ENCODERS[fmt]
        if encoder is None:
            return wav.read_bytes()
        out = Path(folder) / f"silence.{fmt}"
        subprocess.run([part.format(src=wav, dst=out) for part in encoder], check=True)
        return out.read_bytes()
