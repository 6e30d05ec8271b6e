"""The offline speech-to-text engine (the ``offline-speech`` extra: faster-whisper with
Whisper tiny.en shipped in a registry package), on sentences espeak-ng spoke: it hears
them with no network, in a process of its own, and is every bot's engine when no provider
is configured. Skipped when the extra is not installed (the ``test`` extra leaves it out:
about 400 MB)."""

from __future__ import annotations

import re

import pytest

from config.packages import BotConfig
from pipeline.audio_decode import decode
from pipeline.speech_config import bot_speech
from pipeline.speech_local import LocalTranscriber, installed, offline_engine
from tests.voice.speech_samples import need_tools, speak

pytestmark = pytest.mark.skipif(
    not installed(),
    reason="the offline-speech extra is not installed (pip install -e '.[offline-speech]')",
)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


async def test_it_hears_english_sentences_offline() -> None:
    need_tools()
    engine = LocalTranscriber(threads=1)
    try:
        for sentence in (
            "What is the weather like in London tomorrow",
            "My password does not work anymore",
        ):
            audio = await decode(speak(sentence, "ogg"), max_seconds=60, accepted=engine.accepted)
            assert audio.converted  # the engine reads 16 kHz mono WAV only
            assert words(await engine.transcribe(audio, language="en")) == words(sentence)
    finally:
        engine.close()


def test_it_is_the_engine_of_a_bot_with_no_provider() -> None:
    speech = bot_speech(BotConfig({}), {})
    assert speech.engine is offline_engine() and speech.problem is None
    asked = bot_speech(BotConfig({"transcription-provider": "local"}), {"OPENAI_API_KEY": "sk"})
    assert asked.engine is offline_engine()
    # A provider configured comes first.
    assert bot_speech(BotConfig({}), {"OPENAI_API_KEY": "sk"}).engine is not offline_engine()
