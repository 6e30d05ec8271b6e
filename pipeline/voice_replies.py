"""The voice-reply stage: a turn's replies, also spoken as one voice note.

With ``voice-replies`` on (:mod:`pipeline.voice_reply_config`), once the inner stages have
answered, the text of the turn's replies (:mod:`pipeline.spoken_text`) is spoken by the
bot's text-to-speech engine, kept in the blob store as an OGG/Opus file and sent as the
turn's last message: Telegram's sendVoice, a WhatsApp audio message, a
Twilio WhatsApp ``MediaUrl``, an audio player in the web widget. The text is still sent
first, as usual (it may already have been streamed live), with the turn's buttons: the
voice comes in addition, for who would rather listen.

``true`` speaks to a message that was a voice note or an audio file, ``always`` to every
message, on the channels that take voice notes (:data:`VOICE_CHANNELS`: not SMS, not the
generic webhook; not Twilio's WhatsApp without a public URL for it to fetch the file
from). Nothing is spoken while a person has the conversation, nor for a turn that said
nothing (the reply stage's fallback, outside this stage, goes as text).

The voice note is kept under ``{bot}/users/{user}@{channel}/voice/{message}/{digest}.ogg``,
the digest of the engine's model and voice and the text: a turn run again (it failed
after this stage) that says the same finds it and does not ask the provider again.

A voice note that cannot be made never costs the text: a provider that fails (5xx,
timeout, no connection), refuses (4xx) or answers something other than OGG/Opus, or a
blob store that fails, is logged (``voice reply:`` lines with channel, bot, message id)
and the turn's text goes alone. The turn is not failed for it: running it again would
send its text a second time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import AsyncIterator

from channels.base import Attachment, MediaKind
from pipeline.outbound_files import OutboundFiles
from pipeline.speech_synthesis import VOICE_CONTENT_TYPE, SynthesisError, TextToSpeech
from pipeline.spoken_text import spoken_text
from pipeline.turn import Next, Turn
from pipeline.voice_reply_config import BotVoice, VoiceReplies
from storage.blob_keys import segment, user_prefix
from storage.blobs_base import BlobError, check_key

log = logging.getLogger(__name__)

WEB = "web"
# The channels that send a bot's OGG/Opus file as a voice note or a player; an SMS would
# get a link, the generic webhook a file to fetch.
VOICE_CHANNELS = frozenset({"telegram", "whatsapp", "twilio-whatsapp", WEB})
_BY_URL = frozenset({"twilio-whatsapp", WEB})  # the file goes as a URL, not uploaded
FILENAME = "reply.ogg"


async def voice_reply_stage(turn: Turn, next_: Next) -> None:
    """Run the inner stages, then speak their replies (see the module's docstring)."""
    await next_(turn)
    voice = turn.bot.voice
    if voice.mode is VoiceReplies.OFF or not _wanted(turn, voice):
        return
    files = turn.services.files
    if voice.engine is None or files is None:
        log.debug(
            "voice reply: none for channel=%s bot=%s message=%s: %s",
            turn.message.channel,
            turn.bot.name,
            turn.message.external_id,
            voice.problem or "no blob store",
        )
        return
    text = spoken_text(turn.reply_texts(), voice.max_chars)
    if not text:
        return
    key = voice_key(turn, voice.engine, text)
    reachable, url = await _reach(turn, files, key)
    if not reachable:
        return
    attachment = await _voice_note(turn, files, voice.engine, text, key)
    if attachment is not None:
        if url is not None:
            attachment = dataclasses.replace(attachment, url=url)
        await turn.say_file_last(attachment)


def _wanted(turn: Turn, voice: BotVoice) -> bool:
    """Whether this turn is answered with a voice note too."""
    message = turn.message
    if turn.held or message.channel not in VOICE_CHANNELS:
        return False
    if voice.mode is VoiceReplies.ALWAYS:
        return True
    return any(a.kind is MediaKind.AUDIO for a in message.attachments)


def voice_key(turn: Turn, engine: TextToSpeech, text: str) -> str:
    """Where the voice note of ``text`` for this turn's message is kept."""
    message = turn.message
    digest = hashlib.sha256(f"{engine.model}\n{engine.voice}\n{text}".encode()).hexdigest()
    folder = user_prefix(turn.bot.name, message.channel, message.conversation)
    return check_key(f"{folder}voice/{segment(message.external_id)}/{digest[:32]}.ogg")


async def _voice_note(
    turn: Turn, files: OutboundFiles, engine: TextToSpeech, text: str, key: str
) -> Attachment | None:
    """The stored voice note of ``text`` (kept before, or spoken now); ``None``, logged,
    when it cannot be had."""
    message = turn.message
    where = f"channel={message.channel} bot={turn.bot.name} message={message.external_id}"
    started = time.perf_counter()
    try:
        stat = await files.blobs.stat(key)
        if stat is not None:
            log.info("voice reply: reused %s key=%s", where, key)
            size = stat.size
        else:
            data = await engine.synthesize(text)
            spoken = time.perf_counter()
            stored = await files.blobs.put(key, _one_chunk(data), content_type=VOICE_CONTENT_TYPE)
            size = stored.size
            log.info(
                "voice reply: spoken %s by=%s model=%s voice=%s chars=%d bytes=%d provider=%.0f ms",
                where,
                engine.name,
                engine.model,
                engine.voice,
                len(text),
                size,
                (spoken - started) * 1000,
            )
    except SynthesisError as e:
        log.warning("voice reply: not spoken %s, the text goes alone: %s", where, e)
        return None
    except BlobError as e:
        log.warning("voice reply: not kept %s, the text goes alone: %s", where, e)
        return None
    return Attachment(
        kind=MediaKind.AUDIO,
        content_type=VOICE_CONTENT_TYPE,
        filename=FILENAME,
        size=size,
        key=key,
    )


async def _reach(turn: Turn, files: OutboundFiles, key: str) -> tuple[bool, str | None]:
    """Whether the channel can get the voice note, and the URL it goes with (the web's,
    which the widget plays; ``None`` elsewhere). Twilio fetches files itself: with no
    public address to give it, no voice note is made, rather than one sent as a dead link."""
    channel = turn.message.channel
    if channel not in _BY_URL:
        return True, None
    url = None
    if files.urls is not None:
        try:
            url = await files.urls.url(key, filename=FILENAME, content_type=VOICE_CONTENT_TYPE)
        except BlobError as e:
            log.warning("voice reply: no URL for %s: %s", key, e)
    if url is not None and (channel == WEB or url.startswith(("http://", "https://"))):
        return True, url if channel == WEB else None  # Twilio's is signed when it is sent
    log.warning(
        "voice reply: not sent channel=%s bot=%s message=%s: no URL %s can fetch it from"
        " (set BOTSERVER_PUBLIC_URL, or keep files on S3)",
        channel,
        turn.bot.name,
        turn.message.external_id,
        channel,
    )
    return False, None


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data
