"""The voice stage: a voice note or audio file becomes what the user said.

After the media stage has kept the message's files, each audio file is decoded off the
event loop (:mod:`pipeline.audio_decode`) and transcribed by the bot's speech-to-text
engine (:mod:`pipeline.speech_config`). The transcript becomes the user's text for the
dialog and the model (after the caption, when the note had one), is kept in the blob store
beside the audio (``{audio key}.transcript.txt``) and noted on the user's history row
(the row's text, and the attachment's ``transcript``). A turn run again (it failed later
on) reads the kept transcript instead of transcribing the note a second time; a waiting
``HEAR x AS AUDIO`` (or ``VOICE``) gets it through :func:`heard_audio`.

What goes wrong, and what follows:

* no engine (no provider configured, and no offline engine installed), audio ffmpeg
  cannot read (corrupt, cut short, a content type that lies), a note over the bot's
  ``transcription-max-duration``, a provider that refuses the audio (a 4xx), a note with
  no words in it: the user is told in a reply, the reason is logged, and the turn goes on
  with whatever text the message had, or ends there when it had none;
* the provider failing (5xx, 429, a timeout) or the blob store failing: the turn fails
  and is run again later, the user's dialog left as it was.

It runs before the handoff stage, so that a person who has the conversation reads what a
voice note said; the bot then tells the user nothing, whatever went wrong.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace

from channels.base import MediaKind
from pipeline.audio_decode import AudioTooLong, UnreadableAudio, decode
from pipeline.media import StoredMedia
from pipeline.session_state import SessionStateError, read_state
from pipeline.speech import SpeechRefused
from pipeline.speech_config import BotSpeech
from pipeline.turn import Next, Turn
from storage.blobs_base import BlobNotFound, BlobStore

log = logging.getLogger(__name__)

TRANSCRIPT_SUFFIX = ".transcript.txt"

# Why a note was not understood (for the log), and what the user is told.
NO_ENGINE = "no_engine"
UNREADABLE = "unreadable"
TOO_LONG = "too_long"
REFUSED = "refused"
SILENT = "silent"

REPLIES = {
    NO_ENGINE: "I can't listen to voice notes here yet: this bot needs a speech-to-text "
    "service to understand them. Could you type your message instead?",
    UNREADABLE: "I couldn't play the audio you sent: the file seems damaged, or it isn't "
    "audio. Could you record it again?",
    TOO_LONG: "Your voice note is too long for me: I can listen to at most {limit}. "
    "Could you send a shorter one, or type your message?",
    REFUSED: "The speech-to-text service couldn't take your voice note, so I didn't "
    "understand it. Could you type your message instead?",
    SILENT: "I couldn't make out any words in your voice note. Could you say it again, or type it?",
}


def transcript_key(audio_key: str) -> str:
    """Where the transcript of the audio kept under ``audio_key`` is kept."""
    return audio_key + TRANSCRIPT_SUFFIX


async def _kept(blobs: BlobStore, key: str) -> str | None:
    try:
        async with blobs.open(key) as reader:
            data = b"".join([chunk async for chunk in reader.chunks()])
    except BlobNotFound:
        return None
    return data.decode("utf-8", errors="replace")


async def _read(blobs: BlobStore, key: str) -> bytes:
    async with blobs.open(key) as reader:
        return b"".join([chunk async for chunk in reader.chunks()])


async def _one_chunk(text: str) -> AsyncIterator[bytes]:
    yield text.encode()


async def listen(turn: Turn, audio: StoredMedia) -> tuple[str | None, str | None]:
    """``(transcript, None)`` for a note understood (kept, or heard now), else
    ``(None, reason)``. Provider and store failures are raised (the turn is run again)."""
    intake = turn.services.media
    assert intake is not None, "audio is only kept with a blob store"
    message = turn.message
    where = (
        f"channel={message.channel} bot={message.bot} message={message.external_id} "
        f"position={audio.position}"
    )
    return await hear(intake.blobs, turn.bot.speech, audio, where)


async def hear(
    blobs: BlobStore, speech: BotSpeech, audio: StoredMedia, where: str
) -> tuple[str | None, str | None]:
    """:func:`listen` on the store and the bot's speech settings (``where`` names the
    note in the log)."""
    key = transcript_key(audio.key)
    kept = await _kept(blobs, key)
    if kept is not None:
        log.info("voice: transcript reused %s", where)
        return (kept, None) if kept.strip() else (None, SILENT)
    engine = speech.engine
    if engine is None:
        log.warning("voice: note not understood %s: %s", where, speech.problem)
        return None, NO_ENGINE
    started = time.perf_counter()
    data = await _read(blobs, audio.key)
    try:
        prepared = await decode(data, max_seconds=speech.max_seconds, accepted=engine.accepted)
    except UnreadableAudio as e:
        log.warning(
            "voice: unreadable audio %s content_type=%s size=%d: %s",
            where,
            audio.content_type,
            audio.size,
            e,
        )
        return None, UNREADABLE
    except AudioTooLong as e:
        log.info("voice: note too long %s: %s", where, e)
        return None, TOO_LONG
    decoded = time.perf_counter()
    try:
        text = await engine.transcribe(prepared, language=speech.language)
    except SpeechRefused as e:
        log.warning("voice: the provider refused the note %s: %s", where, e)
        return None, REFUSED
    heard = time.perf_counter()
    await blobs.put(key, _one_chunk(text), content_type="text/plain")
    log.info(
        "voice: note transcribed %s by=%s seconds=%.1f format=%s sent=%s decode=%.0f ms "
        "provider=%.0f ms chars=%d",
        where,
        engine.name,
        prepared.seconds,
        prepared.source_format,
        "wav" if prepared.converted else "original",
        (decoded - started) * 1000,
        (heard - decoded) * 1000,
        len(text),
    )
    return (text, None) if text.strip() else (None, SILENT)


def user_text(text: str, transcripts: list[str]) -> str:
    """The user's text for the turn: the message's own (a caption) and then what it said."""
    parts = [part.strip() for part in (text, *transcripts) if part and part.strip()]
    return "\n\n".join(parts)


async def voice_stage(turn: Turn, next_: Next) -> None:
    """Hear the message's audio files (see the module's docstring), then go on."""
    audio = [m for m in turn.media if m.kind is MediaKind.AUDIO]
    if not audio:
        await next_(turn)
        return
    problems: list[str] = []
    for media in audio:
        text, problem = await listen(turn, media)
        if text is not None:
            turn.transcripts[media.position] = text
        if problem is not None:
            problems.append(problem)
    text = user_text(turn.message.text, list(turn.transcripts.values()))
    if turn.transcripts:
        turn.message = replace(turn.message, text=text)
        _note_on_user_row(turn, text)
    if _with_a_person(turn):
        # A person may have the conversation (the handoff stage, next, finds out): the
        # transcript is for them, the bot says nothing, and the message goes on to them.
        await next_(turn)
        return
    for reason in dict.fromkeys(problems):
        limit = f"{turn.bot.speech.max_seconds:g} seconds"
        await turn.say(REPLIES[reason].format(limit=limit))
    if not text:
        return  # nothing left to answer: the replies said why
    await next_(turn)


def _with_a_person(turn: Turn) -> bool:
    """Whether the conversation was handed to a person (``TRANSFER TO HUMAN``)."""
    if turn.session is None:
        return False
    try:
        return read_state(turn.session).needs_human
    except SessionStateError:
        return False


def _note_on_user_row(turn: Turn, text: str) -> None:
    for i, entry in enumerate(turn.history):
        if entry.role == "user":
            notes = tuple(
                replace(note, transcript=turn.transcripts.get(position))
                if note.kind == MediaKind.AUDIO.value and position in turn.transcripts
                else note
                for position, note in enumerate(entry.attachments)
            )
            turn.history[i] = replace(entry, content=text, attachments=notes)
            return


async def heard_audio(turn: Turn, text: str) -> str | None:
    """``HEAR x AS AUDIO|VOICE``: what the message's audio said (``None``, and the HEAR
    asks again, when it had none that was understood)."""
    if not turn.transcripts:
        return None
    return "\n\n".join(turn.transcripts.values())
