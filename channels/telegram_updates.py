"""Telegram updates read into normalized messages, with python-telegram-bot's own types.

One update carries at most one message. What becomes an :class:`InboundMessage`:

- a ``message`` with text (``/commands`` included: the text is kept as sent,
  the command is in ``raw["command"]``) or with a voice note, audio, photo,
  video, video note, animation or document (an :class:`Attachment` whose
  ``provider_id`` is the ``file_id``; the caption is the text when there is
  no text);
- an ``edited_message``: a new message (``raw["edited"]``), since the user
  changed what they said; its update has its own ``update_id``;
- a ``callback_query`` from an inline keyboard button: the text is the
  button's key (see :func:`callback_data`).

Everything else (stickers, polls, locations, reactions, ``my_chat_member``,
service messages, …) is acknowledged and named in ``WebhookResult.ignored``.

``external_id`` is the ``update_id``: Telegram redelivers an update with the
same id, webhook or polling alike, so it is the key that drops duplicates.

``raw`` holds ``update_id``, ``message_id`` and ``chat_type``, and when they
apply ``command``/``command_args``, ``edited``/``edit_date``,
``media_group_id``, ``message_thread_id``, ``callback_query_id``/``callback_data``.

Albums: Telegram sends each photo or video of an album as its own update with
a shared ``media_group_id``, exposed as ``raw["media_group_id"]`` so that the
inbox can merge the items that arrive within a short window into one turn.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from telegram import Bot, CallbackQuery, Message, MessageEntity, Update

from channels.base import (
    Attachment,
    InboundMessage,
    MediaKind,
    PayloadError,
    Suggestion,
    WebhookResult,
)

NAME = "telegram"
# The updates we read; Telegram is asked for no others (reactions, member changes, …).
READ_UPDATES = ("message", "edited_message", "callback_query")
MAX_CALLBACK_DATA = 64  # bytes, Bot API limit on InlineKeyboardButton.callback_data

# "#" and 16 url-safe base64 characters: 96 bits of SHA-256, no collision in practice.
_HASHED = re.compile(r"#[A-Za-z0-9_-]{16}")

# Message fields that every kind of message may carry: what is left names its kind.
_COMMON_FIELDS = frozenset(
    {
        "message_id",
        "message_thread_id",
        "from",
        "sender_chat",
        "sender_boost_count",
        "sender_business_bot",
        "date",
        "business_connection_id",
        "chat",
        "forward_origin",
        "is_topic_message",
        "is_automatic_forward",
        "reply_to_message",
        "external_reply",
        "quote",
        "reply_to_story",
        "via_bot",
        "edit_date",
        "has_protected_content",
        "is_from_offline",
        "media_group_id",
        "author_signature",
        "entities",
        "caption_entities",
        "link_preview_options",
        "show_caption_above_media",
        "has_media_spoiler",
        "effect_id",
        "reply_markup",
    }
)


def callback_data(key: str) -> str:
    """The ``callback_data`` of a button that answers ``key``.

    Telegram carries at most 64 bytes back. A longer key (or one that looks like
    a hash itself, so the two can never be confused) is replaced by ``#`` and 16
    characters of its SHA-256. The key is then recovered from what Telegram
    sends back with the press: the message that carried the keyboard, whose
    button label becomes the text, and ``raw["callback_data"]``, which
    :func:`suggestion_for` matches against the suggestions the dialog offered.
    Nothing is stored, so any instance, before or after a restart, reads it.
    """
    if len(key.encode()) <= MAX_CALLBACK_DATA and not _HASHED.fullmatch(key):
        return key
    digest = hashlib.sha256(key.encode()).digest()[:12]
    return "#" + base64.urlsafe_b64encode(digest).decode()


def suggestion_for(data: str, offered: Sequence[Suggestion]) -> Suggestion | None:
    """The offered suggestion whose button sent ``data`` (a key or its hash), if any."""
    return next((s for s in offered if callback_data(s.key) == data), None)


def decode_update(body: bytes) -> dict[str, Any]:
    """The JSON object of a webhook body; :class:`PayloadError` unless it is an update."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise PayloadError(f"body is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise PayloadError("body must be a JSON object")
    update_id = data.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise PayloadError("not a Telegram update: no integer update_id")
    return data


def to_update(payload: Mapping[str, Any], bot: Bot) -> Update:
    """PTB's :class:`Update` for a decoded payload; :class:`PayloadError` if it is malformed."""
    try:
        return Update.de_json(dict(payload), bot)
    except Exception as e:
        # de_json reports a missing or mistyped field with whatever the access raised.
        raise PayloadError(f"update {payload.get('update_id')} is malformed: {e!r}") from e


def update_kind(payload: Mapping[str, Any]) -> str:
    """The update's one optional field: ``message``, ``poll``, ``my_chat_member``, …"""
    return next((key for key in payload if key != "update_id"), "empty update")


def read_update(bot: str, update: Update, payload: Mapping[str, Any]) -> WebhookResult:
    """The message an update carries, or the name of what was ignored."""
    kind = update_kind(payload)
    read: InboundMessage | str
    if update.message is not None:
        read = _message(bot, update.update_id, update.message, _fields(payload, "message"))
    elif update.edited_message is not None:
        read = _message(
            bot,
            update.update_id,
            update.edited_message,
            _fields(payload, "edited_message"),
            edited=True,
        )
    elif update.callback_query is not None:
        read = _callback(bot, update.update_id, update.callback_query)
    else:
        read = kind
    if isinstance(read, str):
        return WebhookResult(ignored=(read,))
    return WebhookResult(messages=(read,))


def _fields(payload: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = payload.get(name)
    return value if isinstance(value, dict) else {}


def _message(
    bot: str,
    update_id: int,
    message: Message,
    fields: Mapping[str, Any],
    *,
    edited: bool = False,
) -> InboundMessage | str:
    attachments = _attachments(message)
    text = message.text or message.caption or ""
    if not text and not attachments:
        kind = next((key for key in fields if key not in _COMMON_FIELDS), "empty message")
        return f"edited {kind}" if edited else kind
    raw: dict[str, Any] = {
        "update_id": update_id,
        "message_id": message.message_id,
        "chat_type": str(message.chat.type),
    }
    if message.media_group_id:
        raw["media_group_id"] = message.media_group_id
    if message.message_thread_id is not None:
        raw["message_thread_id"] = message.message_thread_id
    command = _command(message)
    if command is not None:
        raw["command"], raw["command_args"] = command
    received = message.date
    if edited:
        raw["edited"] = True
        if message.edit_date is not None:
            raw["edit_date"] = int(message.edit_date.timestamp())
            received = message.edit_date
    return InboundMessage(
        channel=NAME,
        bot=bot,
        conversation=str(message.chat.id),
        sender=_sender(message),
        external_id=str(update_id),
        text=text,
        attachments=attachments,
        received_at=received or datetime.now(UTC),
        raw=raw,
    )


def _sender(message: Message) -> str:
    if message.from_user is not None:
        return str(message.from_user.id)
    # Channel posts and anonymous group admins speak as a chat.
    chat = message.sender_chat or message.chat
    return str(chat.id)


def _command(message: Message) -> tuple[str, str] | None:
    """``("/start", "payload")`` for ``/start@shop_bot payload``: the bot's name is dropped
    so that a command reads the same in a group as in a private chat."""
    text = message.text
    if not text:
        return None
    for entity in message.entities:
        if entity.type == MessageEntity.BOT_COMMAND and entity.offset == 0:
            # Offsets count UTF-16 units; a command at 0 is ASCII, where they equal characters.
            word = text[: entity.length]
            return word.split("@", 1)[0], text[entity.length :].strip()
    return None


def _attachments(message: Message) -> tuple[Attachment, ...]:
    caption = message.caption
    if message.photo:
        # The sizes of one photo, smallest first: keep the largest.
        photo = max(message.photo, key=lambda p: p.width * p.height)
        # Telegram re-encodes every photo as JPEG.
        return (
            _attachment(MediaKind.IMAGE, photo.file_id, "image/jpeg", photo.file_size, caption),
        )
    if message.voice is not None:
        voice = message.voice
        mime = voice.mime_type or "audio/ogg"  # voice notes are OGG/Opus
        return (_attachment(MediaKind.AUDIO, voice.file_id, mime, voice.file_size, caption),)
    if message.audio is not None:
        audio = message.audio
        return (
            _attachment(
                MediaKind.AUDIO,
                audio.file_id,
                audio.mime_type,
                audio.file_size,
                caption,
                audio.file_name,
            ),
        )
    if message.video is not None:
        video = message.video
        return (
            _attachment(
                MediaKind.VIDEO,
                video.file_id,
                video.mime_type,
                video.file_size,
                caption,
                video.file_name,
            ),
        )
    if message.video_note is not None:
        note = message.video_note
        return (_attachment(MediaKind.VIDEO, note.file_id, "video/mp4", note.file_size),)
    if message.animation is not None:
        # An animation also fills ``document`` for old clients: read it once, as video.
        gif = message.animation
        return (
            _attachment(
                MediaKind.VIDEO, gif.file_id, gif.mime_type, gif.file_size, caption, gif.file_name
            ),
        )
    if message.document is not None:
        doc = message.document
        return (
            _attachment(
                MediaKind.DOCUMENT,
                doc.file_id,
                doc.mime_type,
                doc.file_size,
                caption,
                doc.file_name,
            ),
        )
    return ()


def _attachment(
    kind: MediaKind,
    file_id: str,
    content_type: str | None,
    size: int | None,
    caption: str | None = None,
    filename: str | None = None,
) -> Attachment:
    return Attachment(
        kind=kind,
        content_type=content_type,
        provider_id=file_id,
        filename=filename,
        size=size,
        caption=caption,
    )


def _callback(bot: str, update_id: int, query: CallbackQuery) -> InboundMessage | str:
    if query.data is None:
        return "callback_query game" if query.game_short_name else "callback_query"
    message = query.message
    raw: dict[str, Any] = {
        "update_id": update_id,
        "callback_query_id": query.id,
        "callback_data": query.data,
    }
    text = query.data
    if message is not None:
        # The message with the keyboard: the pipeline may edit it to remove the buttons.
        raw["message_id"] = message.message_id
        conversation = str(message.chat.id)
        if _HASHED.fullmatch(query.data) and isinstance(message, Message):
            text = _label(message, query.data) or text
    else:
        # A button on an inline-mode message has no chat: answer the user privately.
        conversation = str(query.from_user.id)
        if query.inline_message_id:
            raw["inline_message_id"] = query.inline_message_id
    return InboundMessage(
        channel=NAME,
        bot=bot,
        conversation=conversation,
        sender=str(query.from_user.id),
        external_id=str(update_id),
        text=text,
        raw=raw,
    )


def _label(message: Message, data: str) -> str | None:
    markup = message.reply_markup
    if markup is None:
        return None
    for row in markup.inline_keyboard:
        for button in row:
            if button.callback_data == data:
                return button.text
    return None
