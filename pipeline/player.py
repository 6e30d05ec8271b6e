"""``PLAY source [WITH OPTIONS "…"]`` and ``STOP``: General Bots' content player.

General Bots opens a player in its web client for a file of the bot's drive or a URL: the
kind of content comes from the name's extension (its ``ContentType::from_extension``;
YouTube and Vimeo links are videos, Imgur, Unsplash and Pexels ones images, any other URL
without a known extension a page), and the options are its comma-separated words
(``autoplay``, ``loop``, ``fullscreen``, ``muted``, ``nocontrols``, ``linenumbers``) and
``key=value`` pairs (``start``, ``end``, ``width``, ``height``, ``theme``, ``slide``,
``page``, ``zoom``, ``highlight``), anything else ignored. ``STOP`` closes the player.

Here the file is found and kept as ``SEND FILE TO`` finds it (see
:mod:`pipeline.outbound_files`): a path of the bot's drive, a stored file's URL or key,
or a URL, fetched through the dialogs' guarded HTTP client. On the web the reply carries
the file and a :class:`~channels.base.Player` saying how to show it; every other channel
sends the file natively, as ``SEND FILE TO`` would, and has nothing to stop. A page (a
video site, a URL with no file behind it) is a link: on the web a player that links to
it, elsewhere its address in a message. A file that is not in the drive is the dialog's
error, which ``ON ERROR RESUME NEXT`` catches (General Bots would open a player on a
link that leads nowhere); a URL that cannot be fetched goes as a link.

``PLAY``'s value is, as General Bots', the JSON text of what the player was given.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import uuid
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from basic.errors import ScriptError
from channels.base import Attachment, Player, PlayerOptions
from pipeline.outbound_files import FileNotSendable, OutboundFiles
from pipeline.turn import Turn

log = logging.getLogger(__name__)

WEB = "web"


class ContentType(enum.StrEnum):
    """General Bots' kinds of content, each shown by its own player component."""

    VIDEO = "video"
    AUDIO = "audio"
    IMAGE = "image"
    PRESENTATION = "presentation"
    DOCUMENT = "document"
    CODE = "code"
    SPREADSHEET = "spreadsheet"
    PDF = "pdf"
    MARKDOWN = "markdown"
    HTML = "html"
    IFRAME = "iframe"
    UNKNOWN = "unknown"

    @property
    def component(self) -> str:
        """General Bots' name of the component that shows it (``video-player``…)."""
        if self is ContentType.UNKNOWN:
            return "generic-viewer"
        suffix = "player" if self in (ContentType.VIDEO, ContentType.AUDIO) else "viewer"
        return f"{self.value}-{suffix}"


def _extensions(kind: ContentType, names: str) -> dict[str, ContentType]:
    return dict.fromkeys(names.split(), kind)


# General Bots' table (.ogg is a video there)
_BY_EXTENSION = {
    **_extensions(ContentType.VIDEO, "mp4 webm ogg mov avi mkv m4v"),
    **_extensions(ContentType.AUDIO, "mp3 wav flac aac m4a wma"),
    **_extensions(ContentType.IMAGE, "jpg jpeg png gif webp svg bmp ico"),
    **_extensions(ContentType.PRESENTATION, "pptx ppt odp key"),
    **_extensions(ContentType.DOCUMENT, "docx doc odt rtf"),
    **_extensions(ContentType.SPREADSHEET, "xlsx xls csv ods"),
    **_extensions(ContentType.PDF, "pdf"),
    **_extensions(ContentType.CODE, "rs py js ts java c cpp h go rb php swift kt scala r sql sh"),
    **_extensions(ContentType.CODE, "bash zsh ps1 yaml yml toml json xml bas basic"),
    **_extensions(ContentType.MARKDOWN, "md markdown"),
    **_extensions(ContentType.HTML, "html htm"),
}
_VIDEO_SITES = ("youtube.com", "youtu.be", "vimeo.com")
_IMAGE_SITES = ("imgur.com", "unsplash.com", "pexels.com")


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _extension(path: str) -> str:
    return PurePosixPath(path).suffix[1:].lower()


def content_type_of(source: str) -> ContentType:
    """What ``source`` shows, from its name (General Bots' ``detect_content_type``)."""
    if _is_url(source):
        if any(site in source for site in _VIDEO_SITES):
            return ContentType.VIDEO
        if any(site in source for site in _IMAGE_SITES):
            return ContentType.IMAGE
        path = source.split("?", 1)[0]
        if _extension(path):
            return _BY_EXTENSION.get(_extension(path), ContentType.UNKNOWN)
        return ContentType.IFRAME
    return _BY_EXTENSION.get(_extension(source), ContentType.UNKNOWN)


def content_type_of_media(media: str) -> ContentType:
    """What a file of type ``media`` shows (General Bots' ``ContentType::from_mime``)."""
    if media.startswith("video/"):
        return ContentType.VIDEO
    if media.startswith("audio/"):
        return ContentType.AUDIO
    if media.startswith("image/"):
        return ContentType.IMAGE
    if media == "application/pdf":
        return ContentType.PDF
    if "presentation" in media or "powerpoint" in media:
        return ContentType.PRESENTATION
    if "spreadsheet" in media or "excel" in media:
        return ContentType.SPREADSHEET
    if "document" in media or "word" in media:
        return ContentType.DOCUMENT
    if media.startswith("text/"):
        if "html" in media:
            return ContentType.HTML
        return ContentType.MARKDOWN if "markdown" in media else ContentType.CODE
    return ContentType.UNKNOWN


def _number(value: str, kind: type[int] | type[float]) -> Any:
    try:
        number = kind(value)
    except ValueError:
        return None  # General Bots' `value.parse().ok()`: a bad number is no number
    return number if number >= 0 else None


def parse_options(text: str) -> PlayerOptions:
    """General Bots' ``PlayOptions::from_string``: unknown words and keys are ignored."""
    fields: dict[str, Any] = {}
    for word in (w.strip().lower() for w in text.split(",")):
        if word in ("autoplay", "loop", "fullscreen", "muted"):
            fields[word] = True
        elif word == "nocontrols":
            fields["controls"] = False
        elif "=" in word:
            key, value = (part.strip() for part in word.split("=", 1))
            if key in ("start", "end", "zoom"):
                fields[key] = _number(value, float)
            elif key in ("width", "height", "slide", "page"):
                fields[key] = _number(value, int)
            elif key == "theme":
                fields[key] = value
    return PlayerOptions(**fields)


def title_of(source: str) -> str:
    """The file's name without its extension (General Bots' ``extract_title_from_source``)."""
    path = urlsplit(source).path if _is_url(source) else source.split("?", 1)[0]
    stem = PurePosixPath(path.replace("\\", "/")).stem
    return stem or "Untitled"


async def play(turn: Turn, files: OutboundFiles | None, source: Any, options: str) -> str:
    """``PLAY source [WITH OPTIONS options]`` in this conversation (see the module's doc)."""
    name = str(source if source is not None else "").strip()
    if not name:
        raise ScriptError("PLAY needs a file of the bot's drive or a URL")
    kind = content_type_of(name)
    player = Player(
        action="play",
        id=str(uuid.uuid4()),
        content_type=kind.value,
        title=title_of(name),
        options=parse_options(options),
    )
    attachment = None
    if files is None and not _is_url(name):
        raise ScriptError("PLAY: no files can be sent here, only a URL")
    if files is not None and not (_is_url(name) and _is_page(name, kind)):
        attachment = await _attachment(turn, files, name)
    if attachment is None:
        player = dataclasses.replace(player, url=name)
        await _show_link(turn, name, player)
    else:
        assert files is not None
        if kind is ContentType.UNKNOWN and attachment.content_type:
            kind = content_type_of_media(attachment.content_type)
            player = dataclasses.replace(player, content_type=kind.value)
        attachment = await _show_file(turn, files, attachment, player)
    log.info(
        "bot %s: PLAY %s (%s) on %s",
        turn.bot.name,
        name,
        player.content_type,
        turn.message.channel,
    )
    return _value(player, kind, attachment)


async def _show_link(turn: Turn, url: str, player: Player) -> None:
    """A page: on the web a player that links to it, elsewhere its address (which the
    channel may preview)."""
    if turn.message.channel == WEB:
        await turn.say_player(url, player)
    else:
        await turn.say(url)


async def _show_file(
    turn: Turn, files: OutboundFiles, attachment: Attachment, player: Player
) -> Attachment:
    """A file: on the web with its link and the player that shows it, elsewhere sent
    natively, as SEND FILE TO sends it. Returns the attachment as sent."""
    if turn.message.channel != WEB:
        await turn.say_file("", attachment)
        return attachment
    if files.urls is not None and attachment.key is not None:
        url = await files.urls.url(
            attachment.key, filename=attachment.filename, content_type=attachment.content_type
        )
        attachment = dataclasses.replace(attachment, url=url)
    await turn.say_file("", attachment, player=player)
    return attachment


async def stop(turn: Turn) -> None:
    """``STOP``: close the web widget's player; other channels have none to close."""
    if turn.message.channel != WEB:
        log.debug("bot %s: STOP on %s: no player to stop", turn.bot.name, turn.message.channel)
        return
    await turn.say_player("", Player(action="stop"))


def _is_page(name: str, kind: ContentType) -> bool:
    """A URL with no file a player could show behind it: a video site, a web page."""
    return kind in (ContentType.IFRAME, ContentType.HTML) or any(
        site in name for site in _VIDEO_SITES
    )


async def _attachment(turn: Turn, files: OutboundFiles, name: str) -> Attachment | None:
    """The file ``name`` names, kept to send; ``None`` for a URL that cannot be fetched
    (it goes as a link)."""
    message = turn.message
    try:
        return await files.attachment(turn.bot, message.channel, message.conversation, name)
    except FileNotSendable as e:
        if _is_url(name):
            log.info("bot %s: PLAY %s goes as a link: %s", turn.bot.name, name, e)
            return None
        log.warning("bot %s: PLAY %s: %s", turn.bot.name, name, e)
        raise ScriptError(f"PLAY: {e}") from e


def _value(player: Player, kind: ContentType, attachment: Attachment | None) -> str:
    """General Bots' ``PlayResponse`` as JSON: what PLAY gives a dialog."""
    options = player.options
    source = player.url or (attachment.url if attachment is not None else None) or ""
    return json.dumps(
        {
            "player_id": player.id,
            "content_type": kind.value,
            "component": kind.component,
            "source_url": source,
            "title": player.title,
            "options": {
                "autoplay": options.autoplay,
                "loop_content": options.loop,
                "fullscreen": options.fullscreen,
                "muted": options.muted,
                "controls": options.controls,
                "start_time": options.start,
                "end_time": options.end,
                "width": options.width,
                "height": options.height,
                "theme": options.theme,
                "slide": options.slide,
                "page": options.page,
                "zoom": options.zoom,
            },
        }
    )
