"""Speech to text through the real ``openai`` SDK against a fake OpenAI transcription
server on 127.0.0.1 (OpenAI's multipart form in, JSON out), and which provider a bot's
``config.csv`` and the environment choose: fail closed, never a key sent elsewhere."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import pytest

from config.packages import BotConfig
from pipeline.audio_decode import prepare
from pipeline.speech import OpenAITranscriber, SpeechRefused, SpeechUnavailable
from pipeline.speech_config import GROQ_BASE_URL, bot_speech
from pipeline.speech_local import installed as offline_installed
from tests.llm.scripted import Fail, Hang
from tests.voice.fake_stt import API_KEY, FakeSpeechToText
from tests.voice.speech_samples import need_tools, speak

SENTENCE = "What is the weather like in London tomorrow"


@pytest.fixture
async def stt() -> AsyncIterator[FakeSpeechToText]:
    fake = FakeSpeechToText()
    await fake.start()
    yield fake
    await fake.close()


def transcriber(
    stt: FakeSpeechToText, *, key: str = API_KEY, timeout: float = 5.0
) -> OpenAITranscriber:
    return OpenAITranscriber(
        api_key=key, model="whisper-1", base_url=stt.base_url, name="fake", timeout=timeout
    )


async def test_a_voice_note_goes_as_openais_multipart_form_and_its_text_comes_back(
    stt: FakeSpeechToText,
) -> None:
    need_tools()
    note = prepare(speak(SENTENCE, "ogg"), max_seconds=60)
    stt.script(" What is the weather like in London tomorrow? ")
    engine = transcriber(stt)
    try:
        assert await engine.transcribe(note, language="en") == (
            "What is the weather like in London tomorrow?"
        )
    finally:
        await engine.aclose()
    [call] = stt.calls
    assert (call.model, call.filename, call.content_type) == ("whisper-1", "voice.ogg", "audio/ogg")
    assert call.fields == {"model": "whisper-1", "language": "en", "response_format": "json"}
    assert call.data == note.data
    assert call.format_name == "ogg" and call.seconds == pytest.approx(note.seconds, abs=0.1)


async def test_amr_reaches_the_provider_as_wav(stt: FakeSpeechToText) -> None:
    need_tools()
    note = prepare(speak(SENTENCE, "amr"), max_seconds=60)
    stt.script("heard")
    engine = transcriber(stt)
    try:
        assert await engine.transcribe(note) == "heard"
    finally:
        await engine.aclose()
    [call] = stt.calls
    assert (call.filename, call.content_type, call.format_name) == ("voice.wav", "audio/wav", "wav")
    assert "language" not in call.fields


@pytest.mark.parametrize(
    ("outcome", "error", "status"),
    [
        (Fail(500, "The server had an error"), SpeechUnavailable, 500),
        (Fail(503, "overloaded"), SpeechUnavailable, 503),
        (Fail(429, "Rate limit reached"), SpeechUnavailable, 429),
        (Fail(400, "Audio file is too short."), SpeechRefused, 400),
        (Fail(413, "Maximum content size limit exceeded"), SpeechRefused, 413),
    ],
)
async def test_provider_errors_are_told_apart(
    stt: FakeSpeechToText, outcome: Fail, error: type[Exception], status: int
) -> None:
    need_tools()
    note = prepare(speak("hello", "ogg"), max_seconds=60)
    stt.script(outcome)
    engine = transcriber(stt)
    try:
        with pytest.raises(error) as caught:
            await engine.transcribe(note)
    finally:
        await engine.aclose()
    assert caught.value.status == status  # type: ignore[attr-defined]
    assert "fake" in str(caught.value)


async def test_a_wrong_key_is_refused_and_a_silent_provider_times_out(
    stt: FakeSpeechToText,
) -> None:
    need_tools()
    note = prepare(speak("hello", "ogg"), max_seconds=60)
    engine = transcriber(stt, key="sk-wrong")
    try:
        with pytest.raises(SpeechRefused, match="401"):
            await engine.transcribe(note)
    finally:
        await engine.aclose()
    stt.script(Hang(5.0))
    engine = transcriber(stt, timeout=0.5)
    try:
        with pytest.raises(SpeechUnavailable, match="timed out"):
            await engine.transcribe(note)
    finally:
        await engine.aclose()


async def test_bytes_that_are_not_audio_are_refused_by_the_provider(
    stt: FakeSpeechToText,
) -> None:
    from pipeline.audio_decode import SpeechAudio

    engine = transcriber(stt)
    try:
        with pytest.raises(SpeechRefused, match="Invalid file format"):
            await engine.transcribe(SpeechAudio(b"not audio", "voice.ogg", "audio/ogg", 1.0))
    finally:
        await engine.aclose()


async def test_no_provider_to_be_reached_is_unavailable() -> None:
    from pipeline.audio_decode import SpeechAudio

    engine = OpenAITranscriber(
        api_key="k", model="whisper-1", base_url="http://127.0.0.1:9/v1", name="gone", timeout=2
    )
    try:
        with pytest.raises(SpeechUnavailable, match="cannot connect"):
            await engine.transcribe(SpeechAudio(b"x", "voice.ogg", "audio/ogg", 1.0))
    finally:
        await engine.aclose()


# -- which provider ------------------------------------------------------------------------


def resolved(rows: Mapping[str, str], environ: Mapping[str, str]) -> tuple[object, ...]:
    speech = bot_speech(BotConfig(rows), environ)
    engine = speech.engine
    if engine is None:
        return (None, speech.problem)
    assert isinstance(engine, OpenAITranscriber)
    return (engine.name, engine.base_url, engine.model, engine._client.api_key)


@pytest.mark.parametrize(
    ("rows", "environ", "expected"),
    [
        # The process's OpenAI key: Whisper at OpenAI.
        (
            {},
            {"OPENAI_API_KEY": "sk-env"},
            ("openai", "https://api.openai.com/v1", "whisper-1", "sk-env"),
        ),
        # Groq's key alone: Whisper at Groq.
        ({}, {"GROQ_API_KEY": "gsk"}, ("groq", GROQ_BASE_URL, "whisper-large-v3-turbo", "gsk")),
        # The environment's own endpoint comes first.
        (
            {},
            {
                "TRANSCRIPTION_URL": "http://whisper:8000",
                "TRANSCRIPTION_KEY": "t",
                "OPENAI_API_KEY": "sk",
            },
            ("whisper", "http://whisper:8000/v1", "whisper-1", "t"),
        ),
        # A bot's own server, named with its key and model.
        (
            {
                "transcription-url": "https://stt.example.com/v1/audio/transcriptions",
                "transcription-key": "b",
                "transcription-model": "large-v3",
            },
            {"OPENAI_API_KEY": "sk-env"},
            ("stt.example.com", "https://stt.example.com/v1", "large-v3", "b"),
        ),
        # A server on this machine needs no key.
        (
            {"transcription-url": "http://127.0.0.1:9000", "transcription-model": "tiny"},
            {},
            ("127.0.0.1", "http://127.0.0.1:9000/v1", "tiny", "no-key"),
        ),
        # Groq named: the environment's Groq key goes to Groq.
        (
            {"transcription-provider": "groq"},
            {"GROQ_API_KEY": "gsk"},
            ("groq", GROQ_BASE_URL, "whisper-large-v3-turbo", "gsk"),
        ),
        # ${VAR} in a row.
        (
            {"transcription-provider": "openai", "transcription-key": "${BOT_STT_KEY}"},
            {"BOT_STT_KEY": "sk-bot"},
            ("openai", "https://api.openai.com/v1", "whisper-1", "sk-bot"),
        ),
    ],
)
def test_the_provider_comes_from_the_rows_then_the_environment(
    rows: dict[str, str], environ: dict[str, str], expected: tuple[object, ...]
) -> None:
    assert resolved(rows, environ) == expected


@pytest.mark.parametrize(
    ("rows", "environ", "problem"),
    [
        # The process's key never goes to an address the bot names.
        ({"transcription-url": "https://elsewhere.example/v1"}, {"OPENAI_API_KEY": "sk"}, "no key"),
        ({"transcription-provider": "groq"}, {"OPENAI_API_KEY": "sk"}, "no key for groq"),
        ({"transcription-provider": "azure"}, {}, "not supported"),
        ({"transcription-key": "${NOT_SET}"}, {}, "NOT_SET"),
        ({"transcription-max-duration": "ten"}, {"OPENAI_API_KEY": "sk"}, "not a number"),
        (
            {"transcription-url": "https://x.example/v1", "transcription-key": "k"},
            {},
            "needs a transcription-model",
        ),
    ],
)
def test_a_provider_that_cannot_be_used_gives_none_and_says_why(
    rows: dict[str, str], environ: dict[str, str], problem: str
) -> None:
    engine, why = resolved(rows, environ)
    assert engine is None
    assert problem in str(why)
    assert bot_speech(BotConfig(rows), environ).named  # a warning at load, not a note


def test_no_provider_at_all_says_what_the_bot_needs() -> None:
    if offline_installed():
        pytest.skip("the offline speech extra is installed: it is the bot's engine then")
    engine, why = resolved({}, {})
    assert engine is None
    assert "transcription-url" in str(why) and "OPENAI_API_KEY" in str(why)
    assert not bot_speech(BotConfig({}), {}).named


def test_language_and_limit_rows() -> None:
    speech = bot_speech(
        BotConfig({"transcription-language": "pt-BR", "transcription-max-duration": "45"}),
        {"OPENAI_API_KEY": "sk"},
    )
    assert (speech.language, speech.max_seconds) == ("pt", 45.0)
