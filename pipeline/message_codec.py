"""Normalized messages as JSON data, for the inbox and outbox rows that carry them."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from channels.base import (
    Attachment,
    InboundMessage,
    MediaKind,
    OutboundMessage,
    Player,
    PlayerOptions,
    Suggestion,
    TemplateRef,
)


def _attachment(a: Attachment) -> dict[str, Any]:
    data = {
        "kind": a.kind.value,
        "content_type": a.content_type,
        "url": a.url,
        "provider_id": a.provider_id,
        "filename": a.filename,
        "size": a.size,
        "caption": a.caption,
    }
    if a.key is not None:  # a file a bot sends, in the blob store
        data["key"] = a.key
    return data


def _attachment_from(data: dict[str, Any]) -> Attachment:
    return Attachment(
        kind=MediaKind(data["kind"]),
        content_type=data.get("content_type"),
        url=data.get("url"),
        provider_id=data.get("provider_id"),
        filename=data.get("filename"),
        size=data.get("size"),
        caption=data.get("caption"),
        key=data.get("key"),
    )


def inbound_to_json(message: InboundMessage) -> dict[str, Any]:
    """The message as the inbox keeps it (``raw`` included: adapters keep it small)."""
    return {
        "channel": message.channel,
        "bot": message.bot,
        "conversation": message.conversation,
        "sender": message.sender,
        "external_id": message.external_id,
        "text": message.text,
        "attachments": [_attachment(a) for a in message.attachments],
        "received_at": message.received_at.isoformat(),
        "session_id": message.session_id,
        "raw": dict(message.raw),
    }


def inbound_from_json(data: dict[str, Any]) -> InboundMessage:
    return InboundMessage(
        channel=data["channel"],
        bot=data["bot"],
        conversation=data["conversation"],
        sender=data["sender"],
        external_id=data["external_id"],
        text=data["text"],
        attachments=tuple(_attachment_from(a) for a in data.get("attachments", ())),
        received_at=datetime.fromisoformat(data["received_at"]),
        session_id=data.get("session_id"),
        raw=data.get("raw") or {},
    )


def outbound_to_json(message: OutboundMessage, *, session_id: str | None = None) -> dict[str, Any]:
    """The reply as the outbox keeps it; ``session_id`` lets a waiting client find it."""
    data: dict[str, Any] = {
        "channel": message.channel,
        "bot": message.bot,
        "conversation": message.conversation,
        "text": message.text,
        "suggestions": [[s.key, s.label] for s in message.suggestions],
        "reply_to": message.reply_to,
    }
    if message.attachments:
        data["attachments"] = [_attachment(a) for a in message.attachments]
    if message.template is not None:
        t = message.template
        data["template"] = {
            "name": t.name,
            "language": t.language,
            "params": list(t.params),
            "named": [[k, v] for k, v in t.named],
        }
    if message.player is not None:
        data["player"] = player_to_json(message.player)
    if session_id is not None:
        data["session_id"] = session_id
    return data


def player_to_json(player: Player) -> dict[str, Any]:
    """A player (PLAY / STOP) as JSON: as the outbox keeps it and the web channel shows it."""
    return {
        "action": player.action,
        "id": player.id,
        "content_type": player.content_type,
        "title": player.title,
        "url": player.url,
        "options": dataclasses.asdict(player.options),
    }


def _player_from(data: dict[str, Any] | None) -> Player | None:
    if data is None:
        return None
    known = {f.name for f in dataclasses.fields(PlayerOptions)}
    options = {k: v for k, v in (data.get("options") or {}).items() if k in known}
    return Player(
        action=data["action"],
        id=data.get("id", ""),
        content_type=data.get("content_type", "unknown"),
        title=data.get("title", ""),
        url=data.get("url"),
        options=PlayerOptions(**options),
    )


def outbound_from_json(data: dict[str, Any]) -> OutboundMessage:
    return OutboundMessage(
        channel=data["channel"],
        bot=data["bot"],
        conversation=data["conversation"],
        text=data["text"],
        suggestions=tuple(Suggestion(key, label) for key, label in data.get("suggestions", ())),
        attachments=tuple(_attachment_from(a) for a in data.get("attachments", ())),
        reply_to=data.get("reply_to"),
        template=_template_from(data.get("template")),
        player=_player_from(data.get("player")),
    )


def _template_from(data: dict[str, Any] | None) -> TemplateRef | None:
    if data is None:
        return None
    return TemplateRef(
        name=data["name"],
        language=data["language"],
        params=tuple(data.get("params", ())),
        named=tuple((k, v) for k, v in data.get("named", ())),
    )
