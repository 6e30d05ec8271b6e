"""Voice notes and audio files made ready for speech-to-text, in worker processes.

Telegram and WhatsApp voice notes are OGG/Opus; users also send AMR (older phones), MP3,
M4A and WAV. Each file is probed and decoded with ``pydub`` (ffmpeg underneath) in a
small pool of processes started from a fork server on the first note, so that neither
ffmpeg's output nor pydub's resampling ever runs on the event loop's thread.

The decoder trusts the bytes, never the content type a user or provider gave: ffmpeg
finds the format itself. A file ffmpeg cannot read to its end (corrupt, cut short, not
audio at all whatever its content type says) is :class:`UnreadableAudio`; one longer
than the bot allows is :class:`AudioTooLong`, found from its header before any decoding.
MP3 and AMR are bare frames with no length to check against: one cut short reads as a
shorter recording, up to the cut.
What goes to the provider is the file as it came when the provider takes that container
(``accepted``, OpenAI's list by default: OGG, MP3, MP4/M4A, WAV, WebM, FLAC), else 16 kHz
mono 16-bit WAV (AMR and whatever else ffmpeg reads).
"""

from __future__ import annotations

import io
import logging
import tempfile
from dataclasses import dataclass
from typing import Any

from pipeline.worker_processes import WorkerProcesses

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000  # what speech models listen at; more is sent for nothing
DEFAULT_MAX_SECONDS = 300.0

# ffprobe's format names of the containers OpenAI's transcription endpoint takes.
OPENAI_FORMATS = frozenset(
    {"ogg", "mp3", "mov,mp4,m4a,3gp,3g2,mj2", "wav", "matroska,webm", "flac"}
)
_SUFFIXES = {
    "ogg": ("ogg", "audio/ogg"),
    "mp3": ("mp3", "audio/mpeg"),
    "mov,mp4,m4a,3gp,3g2,mj2": ("m4a", "audio/mp4"),
    "wav": ("wav", "audio/wav"),
    "matroska,webm": ("webm", "audio/webm"),
    "flac": ("flac", "audio/flac"),
}


class AudioError(Exception):
    """The audio cannot be turned into speech for the provider (the user is told why)."""


class UnreadableAudio(AudioError):
    """Not audio ffmpeg can read to its end: corrupt, cut short, or something else."""


class AudioTooLong(AudioError):
    """Longer than the bot's limit (``seconds`` is how long it is)."""

    def __init__(self, seconds: float, limit: float) -> None:
        super().__init__(seconds, limit)  # its args, so that it pickles back from a worker
        self.seconds = seconds
        self.limit = limit

    def __str__(self) -> str:
        return f"{self.seconds:.1f} s long, over the limit of {self.limit:g} s"


@dataclass(frozen=True, slots=True)
class SpeechAudio:
    """Audio ready for a transcription request: the bytes, a file name whose suffix says
    the format, its content type, how long it lasts, and what ffprobe called the source."""

    data: bytes = b""
    filename: str = "audio.wav"
    content_type: str = "audio/wav"
    seconds: float = 0.0
    source_format: str = ""
    converted: bool = False


def prepare(
    data: bytes, *, max_seconds: float, accepted: frozenset[str] = OPENAI_FORMATS
) -> SpeechAudio:
    """``data`` checked and made ready for speech-to-text (see the module's docstring).

    CPU-bound and blocking (ffprobe, ffmpeg): runs in a worker process, see :func:`decode`.
    Raises :class:`UnreadableAudio` or :class:`AudioTooLong`.
    """
    from pydub import AudioSegment
    from pydub.exceptions import CouldntDecodeError
    from pydub.utils import mediainfo_json

    if not data:
        raise UnreadableAudio("the file is empty")
    with tempfile.NamedTemporaryFile(prefix="voice-", suffix=".bin") as f:
        f.write(data)
        f.flush()
        sniffed = sniff(data)
        codec: str | None
        if sniffed is not None:
            fmt, codec = sniffed  # what phones send, known by its first bytes: no ffprobe
        else:
            fmt, codec = _probe(mediainfo_json, f.name, max_seconds)
        try:
            # Limited to a little past the limit: a header that lies cannot make ffmpeg
            # decode an hour of audio into this process's memory. The codec, known above,
            # spares pydub probing the file (each ffmpeg run costs ~0.1 s of CPU).
            segment = AudioSegment.from_file(f.name, codec=codec, duration=max_seconds + 1)
        except (CouldntDecodeError, IndexError, KeyError, ValueError) as e:
            raise UnreadableAudio(f"ffmpeg could not decode it: {_first_line(e)}") from None
    seconds = len(segment) / 1000
    if seconds > max_seconds:
        raise AudioTooLong(seconds, max_seconds)
    if seconds <= 0:
        raise UnreadableAudio("it holds no sound")
    if fmt in accepted and fmt in _SUFFIXES:
        suffix, content_type = _SUFFIXES[fmt]
        return SpeechAudio(data, f"voice.{suffix}", content_type, seconds, fmt)
    mono = segment.set_channels(1).set_frame_rate(SAMPLE_RATE).set_sample_width(2)
    out = io.BytesIO()
    mono.export(out, format="wav")
    return SpeechAudio(out.getvalue(), "voice.wav", "audio/wav", seconds, fmt, converted=True)


def sniff(data: bytes) -> tuple[str, str] | None:
    """The container (as ffprobe names it) and codec of the usual voice formats, from
    their first bytes; ``None`` for anything else (ffprobe then looks)."""
    head = data[:512]
    if head.startswith(b"OggS"):
        if b"OpusHead" in head:
            return "ogg", "opus"
        if b"\x01vorbis" in head:
            return "ogg", "vorbis"
        return None
    if head.startswith(b"#!AMR-WB\n"):
        return "amr", "amrwb"
    if head.startswith(b"#!AMR\n"):
        return "amr", "amrnb"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE6 == 0xE2):
        return "mp3", "mp3"  # an ID3 tag, or an MPEG-1/2 layer III frame sync
    return None


def _probe(mediainfo_json: Any, path: str, max_seconds: float) -> tuple[str, str | None]:
    """ffprobe's format name and codec of the file at ``path`` (its duration checked)."""
    try:
        info = mediainfo_json(path)
    except Exception as e:  # ffprobe's own failure, or output pydub cannot parse
        raise UnreadableAudio(f"ffprobe could not read it: {e}") from None
    fmt = str(info.get("format", {}).get("format_name", ""))
    streams = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]
    if not fmt or not streams:
        raise UnreadableAudio(f"no audio found in it (format {fmt or 'unknown'!r})")
    declared = _seconds(info.get("format", {}).get("duration"))
    if declared is not None and declared > max_seconds:
        raise AudioTooLong(declared, max_seconds)
    return fmt, str(streams[0].get("codec_name") or "") or None


def _seconds(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _first_line(error: Exception) -> str:
    """pydub's decode error carries ffmpeg's whole banner; its last line says what broke."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(error).__name__


class AudioProcesses(WorkerProcesses):
    """A pool of decoder processes (see the module's docstring): a file that kills its
    decoder is unreadable, and the pool is started afresh for the next one."""

    def __init__(self, workers: int | None = None) -> None:
        super().__init__("voice", ["pydub", "pipeline.audio_decode"], _died, workers=workers)


def _died(what: str) -> UnreadableAudio:
    return UnreadableAudio("its decoder process died reading it")


#: The process's decoder pool, shared by every bot's voice notes.
DECODERS = AudioProcesses()


async def decode(
    data: bytes, *, max_seconds: float, accepted: frozenset[str] = OPENAI_FORMATS
) -> SpeechAudio:
    """:func:`prepare` in :data:`DECODERS`, off the event loop."""
    return await DECODERS.run(
        "an audio file", prepare, data, max_seconds=max_seconds, accepted=accepted
    )
