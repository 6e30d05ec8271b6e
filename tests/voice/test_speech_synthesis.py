"""Text to speech through the real ``openai`` SDK against a fake OpenAI ``audio/speech``
server on 127.0.0.1 (OpenAI's JSON in, the audio's bytes out); which provider a bot's
``config.csv`` and the environment choose (fail closed, never a key sent elsewhere); and
what of a reply's markdown is read aloud."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from config.packages import BotConfig
from pipeline.speech_synthesis import OpenAISpeaker, SynthesisRefused, SynthesisUnavailable
from pipeline.spoken_text import cut, speakable, spoken_text
from pipeline.voice_reply_config import DEFAULT_MAX_CHARS, VoiceReplies, bot_voice
from tests.llm.scripted import Fail, Hang
from tests.voice.fake_tts import API_KEY, FakeTextToSpeech
from tests.voice.speech_samples import need_tools

SENTENCE = "Your table for two is booked for seven tonight."


@pytest.fixture
async def tts() -> AsyncIterator[FakeTextToSpeech]:
    fake = FakeTextToSpeech()
    await fake.start()
    yield fake
    await fake.close()


def speaker(
    tts: FakeTextToSpeech, *, key: str = API_KEY, timeout: float = 5.0, voice: str = "nova"
) -> OpenAISpeaker:
    return OpenAISpeaker(
        api_key=key,
        model="tts-1-hd",
        voice=voice,
        base_url=tts.base_url,
        name="fake",
        timeout=timeout,
    )


async def ffprobe(data: bytes) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        "ffprobe",
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        "-",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate(data)
    assert process.returncode == 0
    info: dict[str, Any] = json.loads(out)
    return info


async def test_the_text_goes_as_openais_json_and_an_ogg_opus_note_comes_back(
    tts: FakeTextToSpeech,
) -> None:
    need_tools()
    engine = speaker(tts)
    try:
        data = await engine.synthesize(SENTENCE)
    finally:
        await engine.aclose()
    [call] = tts.calls
    assert call.authorization == f"Bearer {API_KEY}"
    assert call.body == {
        "model": "tts-1-hd",
        "voice": "nova",
        "input": SENTENCE,
        "response_format": "opus",
    }
    assert data == tts.spoken[0] and data.startswith(b"OggS")
    info = await ffprobe(data)
    streams = [stream["codec_name"] for stream in info["streams"]]
    assert (info["format"]["format_name"], streams) == ("ogg", ["opus"])


@pytest.mark.parametrize(
    ("outcome", "error", "status"),
    [
        (Fail(500, "The server had an error"), SynthesisUnavailable, 500),
        (Fail(503, "overloaded"), SynthesisUnavailable, 503),
        (Fail(429, "Rate limit reached"), SynthesisUnavailable, 429),
        (Fail(400, "Invalid voice"), SynthesisRefused, 400),
    ],
)
async def test_provider_errors_are_told_apart(
    tts: FakeTextToSpeech, outcome: Fail, error: type[Exception], status: int
) -> None:
    tts.script(outcome)
    engine = speaker(tts)
    try:
        with pytest.raises(error) as caught:
            await engine.synthesize("hello")
    finally:
        await engine.aclose()
    assert caught.value.status == status  # type: ignore[attr-defined]
    assert "fake" in str(caught.value)


async def test_a_wrong_key_is_refused_and_a_silent_provider_times_out(
    tts: FakeTextToSpeech,
) -> None:
    engine = speaker(tts, key="sk-wrong")
    try:
        with pytest.raises(SynthesisRefused, match="401"):
            await engine.synthesize("hello")
    finally:
        await engine.aclose()
    tts.script(Hang(5.0))
    engine = speaker(tts, timeout=0.5)
    try:
        with pytest.raises(SynthesisUnavailable, match="timed out"):
            await engine.synthesize("hello")
    finally:
        await engine.aclose()


async def test_an_answer_that_is_not_ogg_is_refused(tts: FakeTextToSpeech) -> None:
    tts.script(b"ID3\x04" + b"\x00" * 100)  # a server that ignored response_format: MP3
    engine = speaker(tts)
    try:
        with pytest.raises(SynthesisRefused, match="not an OGG file"):
            await engine.synthesize("hello")
    finally:
        await engine.aclose()


async def test_no_provider_to_be_reached_is_unavailable() -> None:
    engine = OpenAISpeaker(
        api_key="k", model="tts-1", voice="alloy", base_url="http://127.0.0.1:9/v1", timeout=2
    )
    try:
        with pytest.raises(SynthesisUnavailable, match="cannot connect"):
            await engine.synthesize("hello")
    finally:
        await engine.aclose()


# -- which provider ------------------------------------------------------------------------


def resolved(rows: Mapping[str, str], environ: Mapping[str, str]) -> tuple[object, ...]:
    voice = bot_voice(BotConfig(dict(rows)), environ)
    engine = voice.engine
    if engine is None:
        return (voice.mode, voice.problem)
    assert isinstance(engine, OpenAISpeaker)
    return (
        voice.mode,
        engine.name,
        engine.base_url,
        engine.model,
        engine.voice,
        engine._client.api_key,
    )


ON = {"voice-replies": "true"}


@pytest.mark.parametrize(
    ("rows", "environ", "expected"),
    [
        # The process's OpenAI key: tts-1 and alloy at OpenAI.
        (
            ON,
            {"OPENAI_API_KEY": "sk-env"},
            (
                VoiceReplies.TO_VOICE,
                "openai",
                "https://api.openai.com/v1",
                "tts-1",
                "alloy",
                "sk-env",
            ),
        ),
        # The environment's own endpoint comes first, with its model and voice.
        (
            {"voice-replies": "always"},
            {
                "TTS_URL": "http://kokoro:8880/v1",
                "TTS_KEY": "t",
                "TTS_MODEL": "kokoro",
                "TTS_VOICE": "af_bella",
                "OPENAI_API_KEY": "sk",
            },
            (VoiceReplies.ALWAYS, "kokoro", "http://kokoro:8880/v1", "kokoro", "af_bella", "t"),
        ),
        # The bot's model and voice over the environment's provider.
        (
            {**ON, "tts-model": "gpt-4o-mini-tts", "tts-voice": "coral"},
            {"OPENAI_API_KEY": "sk"},
            (
                VoiceReplies.TO_VOICE,
                "openai",
                "https://api.openai.com/v1",
                "gpt-4o-mini-tts",
                "coral",
                "sk",
            ),
        ),
        # A bot's own server, the whole endpoint named, with its key.
        (
            {**ON, "tts-url": "https://tts.example.com/v1/audio/speech", "tts-key": "b"},
            {"OPENAI_API_KEY": "sk-env"},
            (
                VoiceReplies.TO_VOICE,
                "tts.example.com",
                "https://tts.example.com/v1",
                "tts-1",
                "alloy",
                "b",
            ),
        ),
        # A server on this machine needs no key.
        (
            {**ON, "tts-url": "http://127.0.0.1:8000"},
            {},
            (
                VoiceReplies.TO_VOICE,
                "127.0.0.1",
                "http://127.0.0.1:8000/v1",
                "tts-1",
                "alloy",
                "no-key",
            ),
        ),
        # OpenAI named: the environment's key goes to OpenAI.
        (
            {**ON, "tts-provider": "openai", "tts-key": "${BOT_TTS_KEY}"},
            {"BOT_TTS_KEY": "sk-bot"},
            (
                VoiceReplies.TO_VOICE,
                "openai",
                "https://api.openai.com/v1",
                "tts-1",
                "alloy",
                "sk-bot",
            ),
        ),
    ],
)
def test_the_provider_comes_from_the_rows_then_the_environment(
    rows: dict[str, str], environ: dict[str, str], expected: tuple[object, ...]
) -> None:
    assert resolved(rows, environ) == expected


@pytest.mark.parametrize(
    ("rows", "environ", "mode", "problem"),
    [
        # Off by default, and then nothing is built, whatever the environment has.
        ({}, {"OPENAI_API_KEY": "sk"}, VoiceReplies.OFF, None),
        ({"voice-replies": "false"}, {"OPENAI_API_KEY": "sk"}, VoiceReplies.OFF, None),
        # On with no provider anywhere: the text goes alone.
        (ON, {}, VoiceReplies.TO_VOICE, "no text-to-speech provider"),
        # The process's key never goes to an address the bot names.
        (
            {**ON, "tts-url": "https://elsewhere.example/v1"},
            {"OPENAI_API_KEY": "sk"},
            VoiceReplies.OFF,
            "no key",
        ),
        ({**ON, "tts-provider": "azure"}, {}, VoiceReplies.OFF, "not supported"),
        ({**ON, "tts-key": "${NOT_SET}"}, {}, VoiceReplies.OFF, "NOT_SET"),
        ({**ON, "tts-timeout": "soon"}, {"OPENAI_API_KEY": "sk"}, VoiceReplies.OFF, "not a number"),
        ({"voice-replies": "sometimes"}, {"OPENAI_API_KEY": "sk"}, VoiceReplies.OFF, "sometimes"),
    ],
)
def test_a_voice_that_cannot_be_had_gives_none_and_says_why(
    rows: dict[str, str], environ: dict[str, str], mode: VoiceReplies, problem: str | None
) -> None:
    voice = bot_voice(BotConfig(rows), environ)
    assert (voice.engine, voice.mode, voice.on) == (None, mode, False)
    if problem is None:
        assert voice.problem is None
    else:
        assert problem in str(voice.problem)


def test_the_length_spoken_is_capped_by_the_row_and_by_openais_limit() -> None:
    env = {"OPENAI_API_KEY": "sk"}
    assert bot_voice(BotConfig(ON), env).max_chars == DEFAULT_MAX_CHARS
    assert bot_voice(BotConfig({**ON, "tts-max-chars": "300"}), env).max_chars == 300
    assert bot_voice(BotConfig({**ON, "tts-max-chars": "100000"}), env).max_chars == 4096


# -- what is read aloud ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "spoken"),
    [
        ("You said: *pizza*", "You said: pizza"),
        ("**Bold** and _italic_ and ~~gone~~", "Bold and italic and gone"),
        ("See [our menu](https://example.com/menu) today", "See our menu today"),
        ("Open https://example.com/x?y=1 now", "Open now"),
        ("Steps:\n\n- one\n- two", "Steps:\n\none\ntwo"),
        ("Run this:\n\n```\nrm -rf /\n```\n\nDone.", "Run this:\n\nDone."),
        ("# Title\n\n---\n\nText", "Title\n\nText"),
        ("Use `pip` here", "Use pip here"),
    ],
)
def test_markdown_is_read_as_plain_sentences(markdown: str, spoken: str) -> None:
    assert speakable(markdown) == spoken


def test_the_replies_are_joined_and_cut_at_a_sentence() -> None:
    assert spoken_text(["Hello.", "", "**How** are you?"], 100) == "Hello.\n\nHow are you?"
    text = "One sentence here. Another one there. And a third that is long."
    assert cut(text, 45) == "One sentence here. Another one there."
    assert cut("no sentence ends in this long line", 20) == "no sentence ends in"
    assert cut("x" * 50, 10) == "x" * 10
