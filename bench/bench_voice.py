"""Voice note to transcript: the gateway's own cost, and what it does to the event loop.

    .venv/bin/python -m bench.bench_voice [--seconds 30] [--rounds 7] [--offline]

A 30 s note is spoken by espeak-ng (sentences said until it is that long) and
encoded as a Telegram/WhatsApp voice note (OGG/Opus, sent to the provider as it is) and as
AMR (decoded to 16 kHz mono WAV for the provider); each is put in a filesystem blob store.

Measured, each a median of ``--rounds``, in one run:

* **overhead**: :func:`pipeline.voice.hear` from the stored note to the stored transcript
  (blob read, probe and decode in the decoder process, transcript written) with an
  engine that answers at once, so the provider's time is excluded. Its baseline is the
  floor any decoder pays, measured the same way: one bare ``ffmpeg -i note -f wav -``
  subprocess run from asyncio. Target (issue 13): < 0.3 s.
* **event-loop lag**: a ticker asleep for 1 ms at a time records how late each wake-up
  is, while the stage handles notes back to back; its baseline is the same ticker with
  the loop idle, and, for comparison, the same decode run by pydub in a thread of the
  gateway's process (the GIL then shared with the loop). Target: never blocked > 10 ms.
* with ``--offline`` (and the ``offline-speech`` extra installed): the offline engine's
  real-time factor (processing time / audio length, after the model loaded) and word
  error rate on espeak-ng's sentences, numbers written as digits counted as the words.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from channels.base import MediaKind
from pipeline.audio_decode import DECODERS, SpeechAudio, prepare
from pipeline.media import StoredMedia
from pipeline.speech_config import BotSpeech
from pipeline.voice import hear, transcript_key
from storage.blobs_fs import FilesystemBlobStore
from tests.voice.speech_samples import missing_tools, speak

SENTENCES = [
    "Please book a table for two at seven tonight.",
    "What is the weather like in London tomorrow?",
    "I would like to cancel my order.",
    "Can you send me the invoice for last month?",
    "My password does not work anymore.",
    "Where is the nearest pharmacy open on Sunday?",
    "I need to change the delivery address of my parcel.",
    "Is the store open on public holidays?",
]
_NUMBERS = {"two": "2", "seven": "7", "four": "4", "five": "5", "six": "6", "one": "1"}


class InstantEngine:
    """An engine that hears nothing and answers at once: the provider's time left out."""

    name = "instant"
    accepted = frozenset({"ogg", "mp3", "mov,mp4,m4a,3gp,3g2,mj2", "wav", "matroska,webm", "flac"})

    async def transcribe(self, audio: SpeechAudio, *, language: str | None = None) -> str:
        return "a transcript"

    async def aclose(self) -> None:
        return None


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


LOOP_CPU: list[float] = []  # the event loop thread's CPU time per note, seconds


async def stage_once(blobs: FilesystemBlobStore, speech: BotSpeech, key: str, size: int) -> float:
    media = StoredMedia(0, MediaKind.AUDIO, key, "audio/ogg", size, "0" * 64)
    await blobs.delete(transcript_key(key))  # heard afresh each round, not reused
    started, cpu = time.perf_counter(), time.thread_time()
    text, problem = await hear(blobs, speech, media, "bench")
    elapsed = time.perf_counter() - started
    # CPU the loop's own thread spent meanwhile (nothing else runs on it here): all the
    # stage's work on the loop, an upper bound of any one callback's, whatever the load.
    LOOP_CPU.append(time.thread_time() - cpu)
    assert text == "a transcript" and problem is None, problem
    return elapsed


async def bare_ffmpeg(path: Path) -> float:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        "ffmpeg", "-v", "error", "-i", str(path), "-f", "wav", "-",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await process.communicate()
    return time.perf_counter() - started


class SlowCallbacks(logging.Handler):
    """asyncio's debug mode reports each callback that held the loop > 10 ms: kept here."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[float] = []
        self.what: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("Executing") and isinstance(record.args, tuple):
            self.held.append(float(record.args[-1]) * 1000)
            self.what.append(str(record.args[0])[:160])


async def lag_while(
    work: Callable[[], Awaitable[object]] | None, seconds: float
) -> tuple[list[float], list[float]]:
    """How late (ms) each 1 ms sleep woke up while ``work`` ran back to back (None: idle),
    and how long (ms) each callback that held the loop over 10 ms held it."""
    lags: list[float] = []
    stop = time.perf_counter() + seconds
    loop = asyncio.get_running_loop()
    slow = SlowCallbacks()
    logging.getLogger("asyncio").addHandler(slow)
    loop.set_debug(True)
    loop.slow_callback_duration = 0.010

    async def ticker() -> None:
        while time.perf_counter() < stop:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((time.perf_counter() - before - 0.001) * 1000)

    async def load() -> None:
        while work is not None and time.perf_counter() < stop:
            await work()

    try:
        await asyncio.gather(ticker(), load())
    finally:
        loop.set_debug(False)
        logging.getLogger("asyncio").removeHandler(slow)
    if slow.what:
        print("    longest:", slow.what[slow.held.index(max(slow.held))])
    return lags, slow.held


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def words(text: str) -> list[str]:
    found = re.findall(r"[a-z0-9']+", text.lower())
    return [_NUMBERS.get(w, w) for w in found]


def word_errors(reference: str, heard: str) -> tuple[int, int]:
    ref, hyp = words(reference), words(heard)
    row = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        diagonal, row[0] = row[0], i
        for j in range(1, len(hyp) + 1):
            diagonal, row[j] = (
                row[j],
                min(row[j] + 1, row[j - 1] + 1, diagonal + (ref[i - 1] != hyp[j - 1])),
            )
    return row[len(hyp)], len(ref)


async def offline(rounds: int) -> None:
    from pipeline import speech_local

    engine = speech_local.offline_engine()
    if engine is None:
        print("offline engine: not installed (pip install -e '.[offline-speech]')")
        return
    warm = prepare(speak(SENTENCES[0], "wav"), max_seconds=60, accepted=frozenset())
    started = time.perf_counter()
    await engine.transcribe(warm)  # starts the process and loads the model
    print(
        f"offline engine: process started and model loaded in {time.perf_counter() - started:.1f} s"
    )
    errors = total = 0
    rtfs: list[float] = []
    for sentence in SENTENCES[: max(rounds, 4)]:
        audio = prepare(speak(sentence, "ogg"), max_seconds=60, accepted=frozenset())
        started = time.perf_counter()
        text = await engine.transcribe(audio, language="en")
        rtfs.append((time.perf_counter() - started) / audio.seconds)
        e, n = word_errors(sentence, text)
        errors, total = errors + e, total + n
        print(f"  {sentence!r} -> {text!r} ({e}/{n} words wrong)")
    print(
        f"offline engine ({engine.name}): real-time factor median {statistics.median(rtfs):.2f}"
        f" (max {max(rtfs):.2f}), word error rate {errors / total:.3f} over {total} words"
    )
    engine.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="the note's length")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--offline", action="store_true", help="the offline engine's RTF/WER")
    args = parser.parse_args()
    if missing_tools():
        print(f"needs {', '.join(missing_tools())} (apt-get install ffmpeg espeak-ng sox)")
        return 2
    speech = BotSpeech(InstantEngine(), None, None, max_seconds=args.seconds + 30)
    with tempfile.TemporaryDirectory(prefix="bench-voice-") as folder:
        blobs = await FilesystemBlobStore(Path(folder) / "blobs").open_store()
        spoken = " ".join(SENTENCES * 8)  # longer than any note asked for, then cut
        notes = {}
        for fmt in ("ogg", "amr"):
            data = speak(spoken, fmt, length=args.seconds)
            path = Path(folder) / f"note.{fmt}"
            path.write_bytes(data)
            key = f"bench/users/1@whatsapp/inbox/m/0-audio.{fmt}"
            await blobs.put(key, _chunks(data))
            seconds = prepare(data, max_seconds=600).seconds
            notes[fmt] = (key, len(data), path)
            print(f"note {fmt}: {seconds:.1f} s, {len(data) / 1024:.0f} KiB")
        await stage_once(blobs, speech, notes["ogg"][0], notes["ogg"][1])  # pool started

        print(f"\noverhead, stored note -> stored transcript (median of {args.rounds}):")
        for fmt, (key, size, path) in notes.items():
            LOOP_CPU.clear()
            stage = [await stage_once(blobs, speech, key, size) for _ in range(args.rounds)]
            floor = [await bare_ffmpeg(path) for _ in range(args.rounds)]
            s, f = statistics.median(stage), statistics.median(floor)
            print(
                f"  {fmt}: voice stage {s * 1000:.0f} ms (max {max(stage) * 1000:.0f}),"
                f" bare ffmpeg decode {f * 1000:.0f} ms, ratio {s / f:.2f}"
                f" -> target < 300 ms: {'met' if s < 0.3 else 'NOT met'};"
                f" event loop thread's CPU per note {statistics.median(LOOP_CPU) * 1000:.1f} ms"
                f" (max {max(LOOP_CPU) * 1000:.1f})"
            )

        key, size, path = notes["amr"]
        data = path.read_bytes()

        async def in_process() -> None:
            await stage_once(blobs, speech, key, size)

        async def in_thread() -> None:
            await asyncio.to_thread(prepare, data, max_seconds=600, accepted=frozenset())

        window = max(3.0, args.rounds * 0.6)
        print(f"\nevent-loop lag, 1 ms ticker, {window:.0f} s each (ms late per wake-up):")
        cases: list[tuple[str, Callable[[], Awaitable[object]] | None]] = [
            ("idle (baseline)", None),
            ("voice stage, decoder process", in_process),
            ("pydub in a thread", in_thread),
        ]
        for name, work in cases:
            lags, held = await lag_while(work, window)
            print(
                f"  {name}: median {statistics.median(lags):.2f}, p99 {p99(lags):.2f},"
                f" max {max(lags):.2f} over {len(lags)} wake-ups; callbacks holding the loop"
                f" > 10 ms: {len(held)}" + (f" (longest {max(held):.1f} ms)" if held else "")
            )
    DECODERS.close()
    if args.offline:
        print()
        await offline(args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
