"""Albums and bursts: messages of a conversation that arrive together answered as one turn.

Telegram sends each photo or video of an album as an update of its own, sharing a
``media_group_id``; WhatsApp has no album at all: several photos picked at once arrive as
separate messages, a moment apart. Answered one by one they would each start a turn (and
the caption, on the first item only, would go with one photo). Some users also write in
bursts, a thought in three lines sent in two seconds.

A message that may be part of such a group is marked when it is accepted
(:meth:`GatherPolicy.mark`): its inbox row is held back from the workers for the group's
window, counted from when it was written. When the worker leases the first message of
the group, the pending messages of the conversation written after it within the window
that belong with it (:func:`gather`: the same album; any plain message, for a burst),
consecutive, are folded into its row (:meth:`storage.base.Inbox.gather`) and the turn runs
on the merged message (:func:`merge`): the texts joined in order, every attachment in
order with its own caption. The folded rows share the outcome of the row that carries
them, so a redelivery of any of them is still a duplicate, and a crash before or after
the fold neither loses one nor answers one twice.

The window is anchored on the first message, not renewed by each new one: a user who
keeps writing is answered at most one window late. A message written after the window
runs a turn of its own (and may start a group of its own).

Per bot in ``config.csv``, in milliseconds (General Bots has no such keys):

* ``album-window`` (default 1000): Telegram albums, and WhatsApp photos and videos sent
  one after another (through Meta or Twilio); ``0`` turns it off. Only album items are
  held back, so nothing else waits. Telegram delivers an album's updates within a
  fraction of a second (the aiogram and python-telegram-bot recipes wait 0.1-2 s in
  memory; this waits in the inbox).
* ``burst-window`` (default 0, off): plain text and media messages. Off by default
  because it holds back every message by the window, and because a dialog waiting at a
  HEAR for one answer would get two lines in one; a bot that talks to a model, where
  three lines are one question, turns it on (1000-3000 ms is usual).

Commands, button presses and edits are never gathered: each is an action of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from channels.base import InboundMessage, MediaKind
from pipeline.message_codec import inbound_from_json, inbound_to_json

log = logging.getLogger(__name__)

ALBUM_WINDOW_KEY = "album-window"
BURST_WINDOW_KEY = "burst-window"
DEFAULT_ALBUM_WINDOW = 1.0
DEFAULT_BURST_WINDOW = 0.0
MAX_WINDOW = 30.0  # seconds: a longer wait is a misconfiguration, not a window

# The key of the mark in the inbox row's message (see :meth:`GatherPolicy.mark`).
TAG = "gather"

# The channels whose messages may be gathered: the providers' (the web answers each
# request on its own; a backend's signed message is one request, one message).
GATHERED_CHANNELS = frozenset({"telegram", "whatsapp", "twilio-whatsapp", "twilio-sms"})

_WHATSAPP_ALBUM_KINDS = frozenset({MediaKind.IMAGE, MediaKind.VIDEO})
# WhatsApp delivers photos picked together one message each, through Meta and Twilio alike.
_WHATSAPP_CHANNELS = frozenset({"whatsapp", "twilio-whatsapp"})


@dataclass(frozen=True, slots=True)
class GatherPolicy:
    """One bot's windows, in seconds (``0``: off)."""

    album_window: float = DEFAULT_ALBUM_WINDOW
    burst_window: float = DEFAULT_BURST_WINDOW

    @classmethod
    def from_config(cls, bot: str, config: Mapping[str, str]) -> GatherPolicy:
        """The windows of ``album-window`` and ``burst-window`` (milliseconds); a value
        that is not a number of milliseconds from 0 to 30000 is logged and the default
        kept."""
        return cls(
            album_window=_window(bot, config, ALBUM_WINDOW_KEY, DEFAULT_ALBUM_WINDOW),
            burst_window=_window(bot, config, BURST_WINDOW_KEY, DEFAULT_BURST_WINDOW),
        )

    def mark(self, message: InboundMessage) -> tuple[dict[str, Any], float] | None:
        """How ``message`` may be gathered: the mark its inbox row carries and the seconds
        it is held back; ``None`` when it is never gathered (it runs at once)."""
        if message.channel not in GATHERED_CHANNELS or not _plain(message):
            return None
        album = album_key(message) if self.album_window > 0 else None
        burst = self.burst_window > 0
        hold = max(self.album_window if album else 0.0, self.burst_window if burst else 0.0)
        if hold <= 0:
            return None
        tag: dict[str, Any] = {"album": album, "album_window": self.album_window}
        if burst:
            tag["burst_window"] = self.burst_window
        return tag, hold


def _window(bot: str, config: Mapping[str, str], key: str, default: float) -> float:
    value = config.get(key, "").strip()
    if not value:
        return default
    try:
        ms = float(value)
    except ValueError:
        ms = -1.0
    if not 0 <= ms <= MAX_WINDOW * 1000:
        log.warning(
            "bot %s: %s must be 0 to %d milliseconds, not %r: %d ms used",
            bot,
            key,
            MAX_WINDOW * 1000,
            value,
            default * 1000,
        )
        return default
    return ms / 1000


def album_key(message: InboundMessage) -> str | None:
    """What the items of ``message``'s album share: Telegram's ``media_group_id``; on
    WhatsApp (Meta's or Twilio's), being a photo or a video (its albums are photos sent
    one after another)."""
    if message.channel == "telegram":
        group = message.raw.get("media_group_id")
        return f"telegram:{group}" if group else None
    if message.channel in _WHATSAPP_CHANNELS and any(
        a.kind in _WHATSAPP_ALBUM_KINDS for a in message.attachments
    ):
        return f"{message.channel}:media"
    return None


def _plain(message: InboundMessage) -> bool:
    """Whether ``message`` is something said (text or media), not an action: a command,
    a button press, an edit."""
    raw = message.raw
    if any(key in raw for key in ("command", "callback_query_id", "edited", "ButtonPayload")):
        return False
    if message.channel == "whatsapp":
        kind = (raw.get("message") or {}).get("type")
        return kind not in ("interactive", "button")
    return True


def gather(
    head: dict[str, Any], following: Sequence[tuple[dict[str, Any], float]]
) -> tuple[int, dict[str, Any]] | None:
    """The :data:`storage.base.Gatherer` of the message path: how many of ``following``
    (the pending messages after ``head``, with the seconds between their writes) belong
    with ``head``, consecutively, and the merged message; ``None`` when none does."""
    tag = head.get(TAG)
    if not isinstance(tag, dict):
        return None
    taken: list[InboundMessage] = []
    for data, after in following:
        other = data.get(TAG)
        if not isinstance(other, dict) or not _belongs(tag, other, after):
            break
        try:
            taken.append(inbound_from_json(data))
        except (KeyError, TypeError, ValueError) as e:
            log.warning("inbox message not gathered, unreadable: %s", e)
            break
    if not taken:
        return None
    try:
        first = inbound_from_json(head)
    except (KeyError, TypeError, ValueError):
        return None  # its turn finds it unreadable and parks it, alone
    merged = inbound_to_json(merge(first, taken))
    merged[TAG] = tag
    return len(taken), merged


def _belongs(head: Mapping[str, Any], other: Mapping[str, Any], after: float) -> bool:
    album = head.get("album")
    if album and other.get("album") == album and after <= float(head.get("album_window", 0)):
        return True
    burst = float(head.get("burst_window", 0))
    return burst > 0 and float(other.get("burst_window", 0)) > 0 and after <= burst


def merge(first: InboundMessage, rest: Sequence[InboundMessage]) -> InboundMessage:
    """One message of ``first`` and ``rest``, in order: ``first``'s ids and time, the
    texts joined by new lines, every attachment (each keeps its caption), and the ids of
    the messages folded in under ``raw["merged"]``."""
    messages = [first, *rest]
    raw = dict(first.raw)
    raw["merged"] = [*raw.get("merged", ()), *(m.external_id for m in rest)]
    return replace(
        first,
        text="\n".join(m.text for m in messages if m.text),
        attachments=tuple(a for m in messages for a in m.attachments),
        raw=raw,
    )
