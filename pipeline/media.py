"""The media stage: every attachment of a message fetched once, kept, and on the record.

Providers' media URLs and ids expire (Telegram's file links after an hour, WhatsApp's
URLs after minutes), so each attachment is fetched from its channel as the turn runs,
streamed into the blob store under the user's folder
(``{bot}/users/{user}@{channel}/inbox/{message}/{n}-{name}``), recorded in
``media_objects``, and noted on the user's history row. A turn that runs again (it failed
after storing) finds the record and does not fetch the file a second time.

What goes wrong, and what follows:

* over the channel's size limit (said by the provider, or found while streaming: the
  download is cut off there), gone from the provider (404, an expired link), or refused
  (a private address): the user is told in a reply, the history row notes why, and the
  turn goes on (the dialog still gets the message);
* the provider failing (5xx, timeout, a download cut short, a digest that does not
  match) or the store failing: the turn fails and is run again later.

Later stages read :attr:`pipeline.turn.Turn.media` (voice to text, images for the
model, documents).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from channels.base import (
    Attachment,
    InboundMessage,
    MediaGone,
    MediaKind,
    MediaRefused,
    MediaSource,
    MediaTooLarge,
    MediaUnavailable,
)
from pipeline.turn import Next, Turn
from storage.base import HistoryAttachment, MediaRecord, MediaRecords
from storage.blob_keys import inbound_key
from storage.blob_urls import MediaUrls
from storage.blobs_base import BlobStore, BlobTooLarge, StoredBlob

log = logging.getLogger(__name__)

MediaSources = Callable[[str, str], MediaSource | None]

# Why an attachment was not kept (the history row's ``error``).
TOO_LARGE = "too_large"
GONE = "gone"
REFUSED = "refused"
NO_SOURCE = "no_source"

REPLIES = {
    TOO_LARGE: "That file is too large for me: {what} can be at most {limit}. "
    "Could you send a smaller one?",
    GONE: "I couldn't download the file you sent (the link may have expired). "
    "Could you send it again?",
    REFUSED: "I couldn't fetch the file you sent from where it is.",
    NO_SOURCE: "I can't receive files on this channel yet.",
}
_KIND_NAMES = {
    MediaKind.IMAGE: "images",
    MediaKind.AUDIO: "audio files",
    MediaKind.VIDEO: "videos",
    MediaKind.DOCUMENT: "documents",
}


@dataclass(frozen=True, slots=True)
class StoredMedia:
    """An attachment of the turn's message, in the blob store under ``key``.

    ``fetched`` is False when an earlier run of this turn had stored it already.
    """

    position: int
    kind: MediaKind
    key: str
    content_type: str
    size: int
    sha256: str
    filename: str | None = None
    caption: str | None = None
    fetched: bool = True


@dataclass(frozen=True, slots=True)
class MediaProblem:
    """An attachment that was not kept, and why (one of the reasons above)."""

    position: int
    attachment: Attachment
    reason: str
    limit: int | None = None


class MediaIntake:
    """Fetches, stores and records a message's attachments (see the module's docstring).

    ``sources`` gives the channel adapter that can fetch a bot's attachments on a
    channel (``None``: that channel cannot); ``urls`` makes the links that expire to the
    stored files (``HEAR x AS IMAGE``), where there are any (not in the terminal chat).
    """

    def __init__(
        self,
        blobs: BlobStore,
        records: MediaRecords,
        sources: MediaSources,
        *,
        urls: MediaUrls | None = None,
    ) -> None:
        self.blobs = blobs
        self.records = records
        self.urls = urls
        self._sources = sources

    async def take(self, message: InboundMessage) -> tuple[list[StoredMedia], list[MediaProblem]]:
        """Every attachment of ``message`` stored, or the reason it is not.

        Raises :class:`~channels.base.MediaUnavailable` or
        :class:`~storage.blobs_base.BlobError` for failures worth running the turn again.
        """
        done = {
            r.position: r
            for r in await self.records.find(message.bot, message.channel, message.external_id)
        }
        stored: list[StoredMedia] = []
        problems: list[MediaProblem] = []
        for position, attachment in enumerate(message.attachments):
            record = done.get(position)
            if record is not None:
                stored.append(_stored(record, attachment, fetched=False))
                continue
            result = await self._fetch(message, position, attachment)
            if isinstance(result, MediaProblem):
                problems.append(result)
                log.warning(
                    "attachment not kept channel=%s bot=%s message=%s position=%d kind=%s: %s",
                    message.channel,
                    message.bot,
                    message.external_id,
                    position,
                    attachment.kind.value,
                    result.reason,
                )
            else:
                stored.append(result)
        return stored, problems

    async def _fetch(
        self, message: InboundMessage, position: int, attachment: Attachment
    ) -> StoredMedia | MediaProblem:
        source = self._sources(message.bot, message.channel)
        if source is None:
            return MediaProblem(position, attachment, NO_SOURCE)
        limit = source.media_limit(attachment.kind)
        try:
            async with source.fetch_media(attachment) as download:
                info = download.info
                key = inbound_key(
                    message.bot,
                    message.channel,
                    message.conversation,
                    message.external_id,
                    position,
                    kind=attachment.kind.value,
                    filename=info.filename or attachment.filename,
                    content_type=info.content_type or attachment.content_type,
                )
                blob = await self.blobs.put(
                    key,
                    download.chunks(),
                    content_type=info.content_type or attachment.content_type,
                    max_bytes=limit,
                )
        except (MediaTooLarge, BlobTooLarge) as e:
            log.info("attachment over the limit of %d bytes: %s", limit, e)
            return MediaProblem(position, attachment, TOO_LARGE, limit=limit)
        except MediaGone as e:
            log.info("attachment gone from the provider: %s", e)
            return MediaProblem(position, attachment, GONE)
        except MediaRefused as e:
            log.info("attachment refused: %s", e)
            return MediaProblem(position, attachment, REFUSED)
        if info.sha256 and info.sha256.lower() != blob.sha256:
            await self.blobs.delete(blob.key)
            raise MediaUnavailable(
                f"{message.channel}: the file received does not match the provider's SHA-256"
            )
        record = await self.records.add(_record(message, position, attachment, blob, info.filename))
        log.info(
            "attachment stored channel=%s bot=%s message=%s position=%d kind=%s size=%d key=%s",
            message.channel,
            message.bot,
            message.external_id,
            position,
            attachment.kind.value,
            record.size,
            record.key,
        )
        return _stored(record, attachment, fetched=True)


def _record(
    message: InboundMessage,
    position: int,
    attachment: Attachment,
    blob: StoredBlob,
    filename: str | None,
) -> MediaRecord:
    return MediaRecord(
        bot_id=message.bot,
        channel=message.channel,
        message_id=message.external_id,
        position=position,
        user_id=message.conversation,
        kind=attachment.kind.value,
        key=blob.key,
        content_type=blob.content_type,
        size=blob.size,
        sha256=blob.sha256,
        filename=(filename or attachment.filename or None),
    )


def _stored(record: MediaRecord, attachment: Attachment, *, fetched: bool) -> StoredMedia:
    return StoredMedia(
        position=record.position,
        kind=attachment.kind,
        key=record.key,
        content_type=record.content_type,
        size=record.size,
        sha256=record.sha256,
        filename=record.filename,
        caption=attachment.caption,
        fetched=fetched,
    )


def problem_reply(problem: MediaProblem, channel: str) -> str:
    """What the user is told about an attachment that was not kept."""
    what = _KIND_NAMES.get(problem.attachment.kind, "files")
    limit = f"{problem.limit / (1024 * 1024):g} MB" if problem.limit else "the channel's limit"
    return REPLIES[problem.reason].format(what=f"{what} on {channel}", limit=limit)


def history_attachments(
    stored: list[StoredMedia], problems: list[MediaProblem]
) -> tuple[HistoryAttachment, ...]:
    """What the user's history row notes, in the message's order."""
    notes: list[tuple[int, HistoryAttachment]] = [
        (
            m.position,
            HistoryAttachment(
                kind=m.kind.value,
                key=m.key,
                content_type=m.content_type,
                size=m.size,
                sha256=m.sha256,
                filename=m.filename,
                caption=m.caption,
            ),
        )
        for m in stored
    ]
    notes += [
        (
            p.position,
            HistoryAttachment(
                kind=p.attachment.kind.value,
                key=None,
                content_type=p.attachment.content_type,
                size=p.attachment.size,
                filename=p.attachment.filename,
                caption=p.attachment.caption,
                error=p.reason,
            ),
        )
        for p in problems
    ]
    return tuple(note for _, note in sorted(notes, key=lambda n: n[0]))


async def media_stage(turn: Turn, next_: Next) -> None:
    """Take the message's attachments (see the module's docstring), then go on."""
    message = turn.message
    if message.attachments:
        intake = turn.services.media
        if intake is None:
            # A process without a blob store (the terminal chat): nothing is kept.
            problems = [MediaProblem(i, a, NO_SOURCE) for i, a in enumerate(message.attachments)]
            stored: list[StoredMedia] = []
        else:
            stored, problems = await intake.take(message)
        turn.media = stored
        _note_on_user_row(turn, history_attachments(stored, problems))
        for reason in dict.fromkeys(p.reason for p in problems):
            first = next(p for p in problems if p.reason == reason)
            await turn.say(problem_reply(first, message.channel))
    await next_(turn)


def _note_on_user_row(turn: Turn, notes: tuple[HistoryAttachment, ...]) -> None:
    for i, entry in enumerate(turn.history):
        if entry.role == "user":
            turn.history[i] = replace(entry, attachments=notes)
            return
