"""``HEAR x AS IMAGE | QRCODE | FILE | DOCUMENT | PDF``: what a waiting dialog gets from a
message with files, as General Bots gives it (its ``process_hear_input``).

* ``IMAGE``: the link to the first image of the message, a signed URL that expires
  (:class:`~storage.blob_urls.MediaUrls`: the store's presigned one, else the gateway's
  ``/media/{token}``). The image is opened first (:mod:`pipeline.media_content`): a bomb or
  a damaged file is refused here too, with its reply;
* ``QRCODE``: the text of the first QR code (or other barcode) in the first image, read
  with zxing-cpp from the normalized image in a parser process (zxing-cpp holds the GIL
  while it reads);
* ``FILE``, ``DOCUMENT``, ``PDF``: the link to the message's first file, whatever it is.

A message without what is asked for gives ``None``: the interpreter then asks again
(three times, as for any HEAR type) with the type's prompt.
"""

from __future__ import annotations

import logging
from typing import Any

from basic.errors import ScriptError
from pipeline.images import read_codes
from pipeline.kb.documents import UnreadableDocument
from pipeline.kb.parser_processes import PARSERS
from pipeline.media import StoredMedia
from pipeline.media_content import ReadImage, is_image, read_image, unreadable_reply
from pipeline.turn import Turn

log = logging.getLogger(__name__)

KINDS = ("image", "qrcode", "file")


async def media_url(turn: Turn, media: StoredMedia) -> str:
    """The signed link to a stored file of the turn."""
    intake = turn.services.media
    urls = intake.urls if intake is not None else None
    if urls is None:
        raise ScriptError("HEAR AS IMAGE/FILE needs links to stored files, and none are made here")
    return await urls.url(media.key, filename=media.filename, content_type=media.content_type)


async def receive(turn: Turn, kind: str, text: str) -> Any:
    """The value of ``HEAR x AS …`` for ``kind`` (``image``, ``qrcode``, ``file``)."""
    if kind == "file":
        return await media_url(turn, turn.media[0]) if turn.media else None
    first = next((m for m in turn.media if is_image(m)), None)
    if first is None:
        return None
    reading = await read_image(turn, first)
    if not isinstance(reading, ReadImage):
        await turn.say(unreadable_reply(reading))
        return None
    if kind == "image":
        return await media_url(turn, first)
    try:
        codes = await PARSERS.run("qrcode", read_codes, reading.image.data)
    except UnreadableDocument:
        codes = []  # its reader died on it: no code read
    if not codes:
        log.info(
            "HEAR AS QRCODE: no code in the image bot=%s message=%s",
            turn.bot.name,
            turn.message.external_id,
        )
        await turn.say("I couldn't find a QR code in that picture.")
        return None
    return codes[0]
