"""Blob keys in General Bots' drive layout, every one scoped by bot.

General Bots gives each bot a bucket of its own (``{bot}.gbai``) and keeps each user's
files under ``users/{user}/…`` in it; one bucket serves all our bots, so the bot's name
is the first segment instead::

    {bot}/users/{user}@{channel}/inbox/{message}/{n}-{name}

``{user}@{channel}``: the same id on two channels (a Telegram chat and a generic user)
is two people, and gets two folders. Every segment is percent-encoded where it could be
read as a path (``/``, ``%``, a leading dot, ``@`` in the user's id, control characters),
so two different users, bots or messages never share a key, and no id leaves its folder.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from urllib.parse import quote

from storage.blobs_base import check_key

MAX_ID_SEGMENT = 120  # longer ids (a generic sender's 255 characters) are hashed
MAX_NAME = 80

# Kept as they are; everything else is percent-encoded (``~`` too: it marks a hashed id).
_SAFE = "-_.+=,!$&'()*;:"
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_EXTENSIONS = {
    # mimetypes' guesses that are wrong for what messaging apps send
    "audio/ogg": ".ogg",
    "audio/opus": ".opus",
    "audio/mpeg": ".mp3",
    "audio/mp4": ".m4a",
    "audio/amr": ".amr",
    "image/jpeg": ".jpg",
    "video/mp4": ".mp4",
    "text/plain": ".txt",
}


def segment(value: str) -> str:
    """``value`` as one path segment: percent-encoded, never ``.``/``..`` nor dot-led."""
    encoded = quote(value, safe=_SAFE).replace("~", "%7E")  # quote keeps "~" always
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if not encoded:
        encoded = "%00"  # an empty id still names a folder of its own
    if len(encoded) > MAX_ID_SEGMENT:
        digest = hashlib.sha256(value.encode()).hexdigest()[:32]
        head = re.sub(r"%[0-9A-F]?$", "", encoded[:60])
        encoded = f"{head}~{digest}"
    return encoded


def bot_prefix(bot: str) -> str:
    """The folder of every key of ``bot``."""
    return segment(bot) + "/"


def user_prefix(bot: str, channel: str, user: str) -> str:
    """The folder of one user's files with a bot: ``{bot}/users/{user}@{channel}/``."""
    return f"{bot_prefix(bot)}users/{segment(user)}@{segment(channel)}/"


def inbound_key(
    bot: str,
    channel: str,
    user: str,
    message_id: str,
    position: int,
    *,
    kind: str,
    filename: str | None,
    content_type: str | None,
) -> str:
    """Where attachment ``position`` of a user's message is kept.

    The same message and position always give the same key, so a turn run again finds
    what it stored the first time. The name is the sender's file name made safe, else
    the kind, with the extension its content type calls for.
    """
    name = file_name(filename, kind=kind, content_type=content_type)
    key = f"{user_prefix(bot, channel, user)}inbox/{segment(message_id)}/{position}-{name}"
    return check_key(key)


def file_name(filename: str | None, *, kind: str, content_type: str | None) -> str:
    """A name that is safe anywhere: letters, digits, ``._-``, an extension kept."""
    stem, ext = "", ""
    if filename:
        base = filename.replace("\\", "/").rsplit("/", 1)[-1].lstrip(".")
        stem, dot, ext = base.rpartition(".")
        if not dot:
            stem, ext = base, ""
        stem = _NAME_UNSAFE.sub("_", stem).strip("._")[: MAX_NAME - 12]
        ext = _NAME_UNSAFE.sub("", ext)[:10].lower()
    if not stem:
        stem = _NAME_UNSAFE.sub("_", kind).strip("._") or "file"
    if not ext:
        ext = extension(content_type).lstrip(".")
    return f"{stem}.{ext}" if ext else stem


def extension(content_type: str | None) -> str:
    """``.ogg`` for ``audio/ogg; codecs=opus`` and so on; ``""`` when unknown."""
    if not content_type:
        return ""
    media = content_type.partition(";")[0].strip().lower()
    return _EXTENSIONS.get(media) or mimetypes.guess_extension(media) or ""
