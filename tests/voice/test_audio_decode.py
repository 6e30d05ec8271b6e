"""Voice notes decoded for speech to text, on real audio espeak-ng spoke and ffmpeg or sox
encoded: every format phones send is read, sent as it is where OpenAI takes it and as
16 kHz mono WAV where not; damaged files, files that are not audio whatever their content
type, and notes over the limit are refused with the reason."""

from __future__ import annotations

import io
import os
import wave
from collections.abc import Callable

import pytest

from pipeline.audio_decode import (
    AudioProcesses,
    AudioTooLong,
    UnreadableAudio,
    decode,
    prepare,
    sniff,
)
from tests.voice.speech_samples import need_tools, silence, speak

SENTENCE = "Please book a table for two at seven tonight"


@pytest.fixture(scope="module")
def samples() -> dict[str, bytes]:
    need_tools()
    return {fmt: speak(SENTENCE, fmt) for fmt in ("ogg", "amr", "mp3", "m4a", "wav")}


@pytest.mark.parametrize(
    ("fmt", "sent_as", "content_type", "converted"),
    [
        ("ogg", "voice.ogg", "audio/ogg", False),  # Telegram's and WhatsApp's voice notes
        ("mp3", "voice.mp3", "audio/mpeg", False),
        ("m4a", "voice.m4a", "audio/mp4", False),  # iPhones
        ("wav", "voice.wav", "audio/wav", False),
        ("amr", "voice.wav", "audio/wav", True),  # older phones: not OpenAI's, so WAV
    ],
)
def test_each_format_is_read_and_sent_as_the_provider_takes_it(
    samples: dict[str, bytes], fmt: str, sent_as: str, content_type: str, converted: bool
) -> None:
    audio = prepare(samples[fmt], max_seconds=60)
    assert (audio.filename, audio.content_type, audio.converted) == (
        sent_as,
        content_type,
        converted,
    )
    assert 2.0 < audio.seconds < 4.0
    if not converted:
        assert audio.data == samples[fmt]  # the original, not re-encoded
    else:
        with wave.open(io.BytesIO(audio.data)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
            assert abs(w.getnframes() / 16000 - audio.seconds) < 0.05


def test_a_provider_that_takes_no_container_gets_wav_of_everything(
    samples: dict[str, bytes],
) -> None:
    audio = prepare(samples["ogg"], max_seconds=60, accepted=frozenset())
    assert (audio.filename, audio.converted, audio.source_format) == ("voice.wav", True, "ogg")


def test_the_content_type_is_never_trusted(samples: dict[str, bytes]) -> None:
    # The bytes decide: an OGG voice note is one whatever it was labelled, and a JPEG is
    # not audio though it came as audio/ogg.
    assert prepare(samples["ogg"], max_seconds=60).source_format == "ogg"
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + os.urandom(64)
    with pytest.raises(UnreadableAudio, match="no audio"):
        prepare(jpeg, max_seconds=60)


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("cut short", lambda data: data[: len(data) // 3]),
        ("cut to its header", lambda data: data[:200]),
        ("random bytes", lambda data: os.urandom(len(data))),
        ("empty", lambda data: b""),
        ("garbled past its header", lambda data: data[:100] + os.urandom(len(data) - 100)),
    ],
)
def test_damaged_audio_in_a_container_is_unreadable(
    samples: dict[str, bytes], name: str, damage: Callable[[bytes], bytes]
) -> None:
    for fmt in ("ogg", "m4a"):  # Telegram's and WhatsApp's notes, and iPhones'
        with pytest.raises(UnreadableAudio):
            prepare(damage(samples[fmt]), max_seconds=60)


def test_a_frame_stream_cut_short_is_read_up_to_the_cut(samples: dict[str, bytes]) -> None:
    # MP3 and AMR are bare frames with no length to check against: a file cut short is a
    # shorter recording (the user is answered about what arrived), but bytes that are no
    # such stream, or an empty file, are still unreadable.
    for fmt in ("mp3", "amr"):
        whole = prepare(samples[fmt], max_seconds=60).seconds
        cut = prepare(samples[fmt][: len(samples[fmt]) // 3], max_seconds=60).seconds
        assert 0 < cut < whole / 2
        for bad in (os.urandom(len(samples[fmt])), b""):
            with pytest.raises(UnreadableAudio):
                prepare(bad, max_seconds=60)


def test_a_note_over_the_limit_is_refused_without_decoding_all_of_it() -> None:
    # A voice note (known by its first bytes) is decoded no further than just past the
    # limit; a file ffprobe must look at is refused from its header.
    ogg, m4a = silence(40.0, "ogg"), silence(40.0, "m4a")
    with pytest.raises(AudioTooLong) as caught:
        prepare(ogg, max_seconds=30)
    assert 30 < caught.value.seconds <= 31.1
    assert caught.value.limit == 30
    with pytest.raises(AudioTooLong) as caught:
        prepare(m4a, max_seconds=30)
    assert 39.5 < caught.value.seconds < 40.5
    assert prepare(ogg, max_seconds=45).seconds == pytest.approx(40.0, abs=0.1)


@pytest.mark.parametrize(
    ("fmt", "known"),
    [
        ("ogg", ("ogg", "opus")),
        ("amr", ("amr", "amrnb")),
        ("mp3", ("mp3", "mp3")),
        ("m4a", None),
        ("wav", None),
    ],
)
def test_voice_formats_are_known_by_their_first_bytes(
    samples: dict[str, bytes], fmt: str, known: tuple[str, str] | None
) -> None:
    assert sniff(samples[fmt]) == known


async def test_decoding_runs_in_a_worker_process(samples: dict[str, bytes]) -> None:
    audio = await decode(samples["amr"], max_seconds=60)
    assert audio.converted and audio.data.startswith(b"RIFF")
    # Its refusals come back from the worker as they were raised there.
    with pytest.raises(UnreadableAudio, match="no audio"):
        await decode(b"not audio at all", max_seconds=60)
    with pytest.raises(AudioTooLong) as caught:
        await decode(samples["ogg"], max_seconds=1)
    assert caught.value.limit == 1 and "over the limit of 1 s" in str(caught.value)


async def test_a_file_that_kills_its_decoder_is_unreadable_and_the_next_one_is_read(
    samples: dict[str, bytes],
) -> None:
    processes = AudioProcesses(workers=1)
    try:
        with pytest.raises(UnreadableAudio, match="died"):
            await processes.run("a bomb", os._exit, 9)
        audio = await processes.run("a note", prepare, samples["ogg"], max_seconds=60)
        assert audio.source_format == "ogg"
    finally:
        processes.close()
