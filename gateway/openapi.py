"""The OpenAPI 3.1 description of the gateway's whole HTTP API (``GET /api/openapi.json``).

Built as a dict here, so that the answers shared by many routes (the error body
and its statuses, the credentials a route takes) are written once. Every route
the application registers is in it, and nothing else; each request and answer
body has an example that validates against its schema
(``tests/gateway/test_openapi.py`` checks both). The WebSocket route is
described as the ``GET`` of its upgrade, its frames under ``x-websocket``;
the server-sent events of ``POST …/messages`` under ``x-events``.
"""

from __future__ import annotations

import copy
from typing import Any

from channels.base import MediaKind
from channels.web import MAX_TEXT, MAX_USER_ID
from gateway.rate_limits import route_limits
from storage.api_keys import ROLES

JSON = "application/json"
OPENAPI_VERSION = "3.1.0"

Schema = dict[str, Any]

_REF = "#/components/schemas/"

# Example values, shaped as the real ones.
SESSION_ID = "0197a3c5-6b1e-7c52-9d4e-2f1a8b7c6d5e"
VISITOR_USER = "web-4f9c2a7d1e8b6035c4a9d2e7f1b3c6a8"
VISITOR_TOKEN = f"bv1.{VISITOR_USER}.Qm9lX3NpZ25hdHVyZV9leGFtcGxlX29mXzQzX2NoYXI"
KEY_ID = "3f2a9c1d7e5b8a40"
API_KEY = f"bsk_{KEY_ID}_dGhpcy1pcy1hbi1leGFtcGxlLXNlY3JldC0xMjM0NTY"
AT = "2025-06-01T12:00:00.123456+00:00"


def _ref(name: str) -> Schema:
    return {"$ref": _REF + name}


def _object(properties: dict[str, Schema], *required: str, closed: bool = True) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "required": list(required)}
    if closed:
        schema["additionalProperties"] = False
    return schema


def _string(description: str | None = None, **more: Any) -> Schema:
    schema: Schema = {"type": "string", **more}
    if description:
        schema["description"] = description
    return schema


def _nullable(schema: Schema) -> Schema:
    out = dict(schema)
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"]
    return out


# -- schemas ------------------------------------------------------------------------------

_API_KEY_FIELDS: dict[str, Schema] = {
    "id": _string("The key's id (its public part).", pattern="^[0-9a-f]{16}$"),
    "bot": _nullable(_string("The only bot it is for; null: every bot.")),
    "role": {"type": "string", "enum": list(ROLES)},
    "user_id": _nullable(_string("The user a `user` key acts as; null for other roles.")),
    "name": _string("A label.", maxLength=200),
    "created_at": _string(format="date-time"),
    "revoked_at": _nullable(_string(format="date-time")),
}

_COUNT: Schema = {"type": "integer", "minimum": 0}

_REPLY_FILES: Schema = {
    "type": "array",
    "description": "The files the reply carries (`SEND FILE TO`, `PLAY`; absent when none).",
    "items": _object(
        {
            "kind": {"type": "string", "enum": ["image", "audio", "video", "document"]},
            "url": _string("Where to fetch it, until the link expires."),
            "filename": _nullable(_string()),
            "content_type": _nullable(_string(examples=["video/mp4"])),
            "size": _nullable({"type": "integer", "minimum": 0, "description": "Bytes."}),
        },
        "kind",
        "url",
    ),
}
_NUMBER_OPTION: Schema = {"type": ["number", "null"], "minimum": 0}
_INTEGER_OPTION: Schema = {"type": ["integer", "null"], "minimum": 0}
_PLAYER: Schema = _object(
    {
        "action": {
            "type": "string",
            "enum": ["play", "stop"],
            "description": "`play`: show the reply's file (or `url`) in a player; `stop`:"
            " close the player.",
        },
        "id": _string(),
        "content_type": _string(
            "General Bots' kind of content.",
            enum=[
                "video",
                "audio",
                "image",
                "presentation",
                "document",
                "code",
                "spreadsheet",
                "pdf",
                "markdown",
                "html",
                "iframe",
                "unknown",
            ],
        ),
        "title": _string(),
        "url": _nullable(_string("A page to link to (a video site), when no file is sent.")),
        "options": _object(
            {
                "autoplay": {"type": "boolean"},
                "loop": {"type": "boolean"},
                "fullscreen": {"type": "boolean"},
                "muted": {"type": "boolean"},
                "controls": {"type": "boolean"},
                "start": _NUMBER_OPTION,
                "end": _NUMBER_OPTION,
                "width": _INTEGER_OPTION,
                "height": _INTEGER_OPTION,
                "theme": _nullable(_string()),
                "page": _INTEGER_OPTION,
                "slide": _INTEGER_OPTION,
                "zoom": _NUMBER_OPTION,
            },
            "autoplay",
            "loop",
            "fullscreen",
            "muted",
            "controls",
        ),
    },
    "action",
    "options",
)
_REPLY: Schema = _object(
    {
        "text": _string("The bot's message (markdown)."),
        "suggestions": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Button labels; a tapped label goes back as the next message's text.",
        },
        "attachments": _REPLY_FILES,
        "player": {**_PLAYER, "description": "`PLAY` and `STOP`: the player to open or close."},
    },
    "text",
    "suggestions",
)

SCHEMAS: dict[str, Schema] = {
    "SendRequest": {
        **_object(
            {
                "text": _string("The message (markdown).", minLength=1, maxLength=MAX_TEXT),
                "channel": _string(
                    "The channel to send on (telegram, whatsapp, twilio-whatsapp, twilio-sms,"
                    " generic), with `to`.",
                    maxLength=50,
                ),
                "to": _string(
                    "The address on that channel: a Telegram chat id, a phone number in E.164,"
                    " a generic webhook user id.",
                    maxLength=255,
                ),
                "user_id": _string(
                    "Instead of `channel` and `to`: a user the bot has seen, reached on the"
                    " channel it last talked on.",
                    maxLength=255,
                ),
                "message_id": _string(
                    "An idempotency key, as the `Idempotency-Key` header.", maxLength=200
                ),
                "template": _object(
                    {
                        "name": _string("The approved template's name.", maxLength=512),
                        "params": {
                            "description": "Body parameters: a list fills `{{1}}`, `{{2}}`…;"
                            " an object the named ones.",
                            "oneOf": [
                                {"type": "array", "items": {"type": "string"}},
                                {"type": "object", "additionalProperties": {"type": "string"}},
                            ],
                        },
                    },
                    "name",
                ),
            },
        ),
        "description": "Name either `channel` and `to`, or `user_id`; send either `text` or a"
        " WhatsApp `template` (in the bot's `whatsapp-template-language`, sent in the 24-hour"
        " window and out of it).",
        "allOf": [
            {"oneOf": [{"required": ["channel", "to"]}, {"required": ["user_id"]}]},
            {"oneOf": [{"required": ["text"]}, {"required": ["template"]}]},
        ],
    },
    "SendQueued": _object(
        {
            "outbox_id": {"type": "integer", "description": "The queued message's id."},
            "channel": _string("The channel it goes on."),
            "to": _string("The address it goes to."),
            "status": {"type": "string", "enum": ["queued"]},
            "duplicate": {
                "type": "boolean",
                "description": "True when the idempotency key named a message queued before"
                " (nothing new was queued).",
            },
        },
        "outbox_id",
        "channel",
        "to",
        "status",
        "duplicate",
    ),
    "GenericMessage": _object(
        {
            "user_id": _string("The user, as the sender knows them.", maxLength=255),
            "message_id": _string(
                "The sender's id of the message: the same id twice is one turn.", maxLength=255
            ),
            "text": _string("The message; may be empty with attachments.", maxLength=MAX_TEXT),
            "attachments": {
                "type": "array",
                "maxItems": 10,
                "items": _object(
                    {
                        "kind": {
                            "type": "string",
                            "enum": [kind.value for kind in MediaKind],
                        },
                        "url": _string("An http or https URL of the file.", format="uri"),
                        "content_type": _string(),
                        "filename": _string(),
                        "caption": _string(),
                    },
                    "kind",
                    "url",
                ),
            },
        },
        "user_id",
        "message_id",
        closed=False,
    ),
    "GenericAccepted": _object(
        {
            "accepted": {
                "type": "boolean",
                "description": "False for a `message_id` received before (nothing new runs).",
            },
            "message_id": _string(),
        },
        "accepted",
        "message_id",
    ),
    "Error": {
        **_object(
            {
                "error": _string(
                    "A stable code: bad_request, unauthorized, forbidden, not_found,"
                    " unknown_bot, unknown_session, unknown_key, unknown_recipient, channel_off,"
                    " unknown_handoff, held_by_another, not_taken, revoked, replayed, rate_limited,"
                    " method_not_allowed, body_too_large, unsupported_media_type, queued,"
                    " message_failed, turn_failed, unavailable, internal."
                ),
                "message": _string("What is wrong, for a person."),
            },
            "error",
            "message",
        ),
        "description": "The body of every refusal.",
    },
    "MessageRequest": {
        **_object(
            {
                "text": _string(
                    "The user's message (or a suggestion's label); not blank.",
                    minLength=1,
                    maxLength=MAX_TEXT,
                ),
                "session_id": _nullable(
                    _string(
                        "A session of this user and bot to continue; null or absent: the"
                        " user's active session (or a new one).",
                        maxLength=64,
                    )
                ),
                "user_id": _string(
                    "The user, named only by a caller with the `app` or `admin` role (then"
                    " required); from anyone else it is ignored: the user is the credential's.",
                    minLength=1,
                    maxLength=MAX_USER_ID,
                ),
                "message_id": {
                    "type": ["string", "integer", "null"],
                    "description": "The client's id of the message: sent again, it runs no"
                    " second turn and answers with the replies of the first, and the message"
                    " is kept before its turn runs (a worker runs it should the answer be"
                    " lost). Without one, a JSON request's message is written with its"
                    " turn's outcome, in one commit.",
                },
            },
            "text",
            closed=False,
        ),
        "description": "Other fields are ignored.",
    },
    "Reply": _REPLY,
    "MessageResponse": _object(
        {
            "session_id": _string(),
            "replies": {"type": "array", "items": _ref("Reply")},
        },
        "session_id",
        "replies",
    ),
    "Delta": _object({"text": _string("Partial text of a streamed reply.")}, "text"),
    "Done": _object(
        {"session_id": _string(), "replies": {"type": "array", "items": _ref("Reply")}},
        "session_id",
        "replies",
    ),
    "Visitor": _object(
        {
            "visitor_token": _string(
                "The visitor's credential (`Authorization: Bearer …`).",
                pattern=r"^bv1\.web-[0-9a-f]{32}\.[A-Za-z0-9_-]{43}$",
            ),
            "user_id": _string(pattern="^web-[0-9a-f]{32}$"),
        },
        "visitor_token",
        "user_id",
    ),
    "History": _object(
        {
            "session_id": _string(),
            "messages": {
                "type": "array",
                "description": "Oldest first.",
                "items": _object(
                    {
                        "id": _string(
                            "The message's cursor: `?after=` it answers what came later.",
                            pattern="^[0-9]+$",
                        ),
                        "role": {
                            "type": "string",
                            "enum": ["user", "assistant", "bot", "system", "agent"],
                            "description": "`user` the user's messages, `assistant` the bot's,"
                            " `agent` a person's in a handoff.",
                        },
                        "text": _string(),
                        "at": _nullable(_string(format="date-time")),
                        "attachments": {
                            "type": "array",
                            "description": "The files the message carried (absent when"
                            " none), each fetched once from its provider and kept.",
                            "items": _ref("Attachment"),
                        },
                    },
                    "id",
                    "role",
                    "text",
                    "at",
                ),
            },
            "next": _nullable(
                _string(
                    "The cursor to ask `?after=` with next: the last message's id (or the"
                    " `after` given, when nothing came since); null for an empty history.",
                    pattern="^[0-9]+$",
                )
            ),
        },
        "session_id",
        "messages",
        "next",
    ),
    "Attachment": _object(
        {
            "kind": {"type": "string", "enum": ["image", "audio", "video", "document"]},
            "content_type": _nullable(_string(examples=["image/jpeg"])),
            "size": _nullable({"type": "integer", "minimum": 0, "description": "Bytes."}),
            "filename": _nullable(_string()),
            "caption": _nullable(_string()),
            "url": _string(
                "Where to fetch it, until it expires (`BOTSERVER_MEDIA_URL_TTL`, an hour):"
                " the gateway's `/media/{token}` (a path unless `BOTSERVER_PUBLIC_URL` is"
                " set), or the S3 store's presigned URL. Absent when it was not kept.",
            ),
            "error": _string(
                "Why it was not kept: `too_large` (over the channel's limit), `gone`"
                " (the provider no longer had it), `refused` (a private address, a URL not"
                " the provider's), `no_source` (a channel that cannot fetch files).",
                enum=["too_large", "gone", "refused", "no_source"],
            ),
            "transcript": _string(
                "What a voice note or audio file said, as the speech-to-text provider heard"
                " it (the user's text for the turn). Absent when it was not transcribed."
            ),
        },
        "kind",
        "content_type",
        "size",
    ),
    "Reload": _object(
        {
            "bot": _string(),
            "dialogs": {"type": "array", "items": _string(), "description": "Sorted."},
            "errors": {
                "type": "array",
                "items": _string(),
                "description": "`file:line:col: message` of each dialog that did not compile.",
            },
        },
        "bot",
        "dialogs",
        "errors",
    ),
    "ChannelState": _object(
        {
            "channel": {
                "type": "string",
                "examples": ["telegram", "whatsapp", "twilio-whatsapp", "twilio-sms"],
            },
            "configured": {"type": "boolean", "description": "On (every row it needs is set)."},
            "note": _nullable(_string("Why it is off.")),
            "mode": {
                "type": ["string", "null"],
                "enum": ["webhook", "polling", None],
                "description": "null when the channel is off.",
            },
            "webhook": _nullable(
                _string("Where Telegram delivers (`unknown` if it did not say); null otherwise.")
            ),
            "last_inbound_at": _nullable(_string(format="date-time")),
            "queue": _object(
                {
                    "pending": {"type": "integer", "minimum": 0},
                    "running": {"type": "integer", "minimum": 0},
                },
                "pending",
                "running",
            ),
            "dead_messages": {"type": "integer", "minimum": 0},
            "parked_sends": {"type": "integer", "minimum": 0},
        },
        "channel",
        "configured",
        "note",
        "mode",
        "webhook",
        "last_inbound_at",
        "queue",
        "dead_messages",
        "parked_sends",
    ),
    "Channels": _object(
        {"bot": _string(), "channels": {"type": "array", "items": _ref("ChannelState")}},
        "bot",
        "channels",
    ),
    "ApiKey": {
        **_object(dict(_API_KEY_FIELDS), *_API_KEY_FIELDS),
        "description": "A key as listed: never its secret.",
    },
    "NewApiKey": {
        **_object(
            {
                **_API_KEY_FIELDS,
                "key": _string(
                    "The key itself, shown this once.",
                    pattern=r"^bsk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$",
                ),
            },
            *_API_KEY_FIELDS,
            "key",
        ),
    },
    "ApiKeyList": _object(
        {"bot": _string(), "keys": {"type": "array", "items": _ref("ApiKey")}}, "bot", "keys"
    ),
    "CreateKeyRequest": _object(
        {
            "role": {"type": "string", "enum": list(ROLES)},
            "name": _string(maxLength=200),
            "user_id": _string(
                "The user a `user` key acts as: required for `user`, refused for other roles.",
                minLength=1,
                maxLength=255,
            ),
        },
        "role",
        closed=False,
    ),
    "KeyRevoked": _object({"id": _string(), "revoked": {"const": True}}, "id", "revoked"),
    "LlmCacheState": _object(
        {
            "bot": _string(),
            "enabled": {"type": "boolean", "description": "`llm-cache` (default false)."},
            "semantic": {
                "type": "boolean",
                "description": "The similarity tier runs: `llm-cache-semantic` (default true)"
                " and an embedding model installed.",
            },
            "threshold": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "ttl": {"type": "number", "exclusiveMinimum": 0, "description": "Seconds."},
            "max_entries": {"type": "integer", "minimum": 1},
            "embedding_model": _nullable(_string("The question's embedding model.")),
            "counters": _object(
                {
                    "exact": _object({"hits": _COUNT, "misses": _COUNT}, "hits", "misses"),
                    "similar": _object(
                        {"hits": _COUNT, "misses": _COUNT, "refused": _COUNT},
                        "hits",
                        "misses",
                        "refused",
                    ),
                    "stored": _COUNT,
                    "skipped": _COUNT,
                    "errors": _COUNT,
                },
                "exact",
                "similar",
                "stored",
                "skipped",
                "errors",
            ),
        },
        "bot",
        "enabled",
        "semantic",
        "threshold",
        "ttl",
        "max_entries",
        "embedding_model",
        "counters",
    ),
    # -- human handoff ----------------------------------------------------------------------
    "Handoff": _object(
        {
            "session_id": _string("The conversation's session."),
            "channel": _string("The conversation's channel: where the agent's messages go."),
            "user_id": _string("The user on that channel (a chat id, a phone number…)."),
            "status": {
                "type": "string",
                "enum": ["waiting", "active", "resolved", "abandoned"],
                "description": "`waiting` for an agent, `active` held by one; then `resolved`"
                " (released to the bot) or `abandoned` (returned by the queue timeout).",
            },
            "attendant": _nullable(_string("A person the bot asked for by name.")),
            "department": _nullable(_string("The department the bot asked for.")),
            "priority": {"type": "string", "enum": ["low", "normal", "high", "urgent"]},
            "reason": _nullable(_string("Why the bot transferred it.")),
            "context": _nullable(_string("What the bot told the agent about it.")),
            "agent": {
                "type": ["object", "null"],
                "properties": {"id": _string(), "name": _string()},
                "required": ["id", "name"],
                "additionalProperties": False,
                "description": "The agent holding (or who last held) it.",
            },
            "requested_at": _string(format="date-time"),
            "taken_at": _nullable(_string(format="date-time")),
            "agent_active_at": _string(
                "The transfer, the take or the agent's last message: the queue timeout"
                " (`queue-timeout-minutes`) counts from it.",
                format="date-time",
            ),
            "resolved_at": _nullable(_string(format="date-time")),
            "release_mode": {
                "type": ["string", "null"],
                "enum": ["continue", "restart", None],
                "description": "How the bot took it back: its dialog went on, or started over.",
            },
            "last_message": _object(
                {"text": _string(), "at": _nullable(_string(format="date-time"))},
                "text",
                "at",
            ),
        },
        "session_id",
        "channel",
        "user_id",
        "status",
        "attendant",
        "department",
        "priority",
        "reason",
        "context",
        "agent",
        "requested_at",
        "taken_at",
        "agent_active_at",
        "resolved_at",
        "release_mode",
    ),
    "HandoffList": _object(
        {
            "bot": _string(),
            "handoffs": {
                "type": "array",
                "items": _ref("Handoff"),
                "description": "Waiting first (by priority, then age), then those held; each"
                " with the user's last message.",
            },
        },
        "bot",
        "handoffs",
    ),
    "HandoffAnswer": _object({"handoff": _ref("Handoff")}, "handoff"),
    "HandoffTaken": _object(
        {
            "handoff": _ref("Handoff"),
            "taken": {
                "type": "boolean",
                "description": "False when this agent already held it: nothing changed.",
            },
        },
        "handoff",
        "taken",
    ),
    "AgentMessageRequest": _object(
        {"text": _string("The agent's message (markdown).", minLength=1, maxLength=4096 * 4)},
        "text",
        closed=False,
    ),
    "AgentMessageSent": _object(
        {
            "id": _string(
                "Its history id (a cursor of the session's history).", pattern="^[0-9]+$"
            ),
            "at": _string(format="date-time"),
            "outbox_id": {
                "type": "integer",
                "description": "Its outbox row: on a provider channel the delivery worker sends"
                " it (paced, retried, WhatsApp's window and template); on the web it went to"
                " the user's open sockets and is replayed from the history.",
            },
            "handoff": _ref("Handoff"),
        },
        "id",
        "at",
        "outbox_id",
        "handoff",
    ),
    "ReleaseRequest": _object(
        {
            "mode": {
                "type": "string",
                "enum": ["continue", "restart"],
                "description": "`continue`: the dialog goes on where it waited; `restart`: the"
                " conversation starts over. Default: the bot's `handoff-release-mode`"
                " (continue).",
            },
            "message": _string(
                "A last message from the agent to the user.", minLength=1, maxLength=4096 * 4
            ),
        },
        closed=False,
    ),
    "AgentWsAuthFrame": _object(
        {
            "type": {"const": "auth"},
            "token": _string(
                "An agent's (or admin's) credential; may be left out when the upgrade"
                " carried `Authorization`."
            ),
        },
        "type",
        closed=False,
    ),
    "AgentWsQueueRequest": _object({"type": {"const": "queue"}}, "type"),
    "AgentWsReadyFrame": _object(
        {
            "type": {"const": "ready"},
            "agent": _object({"id": _string(), "name": _string()}, "id", "name"),
        },
        "type",
        "agent",
    ),
    "AgentWsQueueFrame": _object(
        {"type": {"const": "queue"}, "handoffs": {"type": "array", "items": _ref("Handoff")}},
        "type",
        "handoffs",
    ),
    "AgentWsHandoffFrame": _object(
        {
            "type": {"const": "handoff"},
            "action": {
                "type": "string",
                "enum": ["transferred", "taken", "released", "abandoned"],
            },
            "handoff": _ref("Handoff"),
        },
        "type",
        "action",
        "handoff",
    ),
    "AgentWsMessageFrame": _object(
        {
            "type": {"const": "message"},
            "session_id": _string(),
            "role": {
                "type": "string",
                "enum": ["user", "agent", "assistant"],
                "description": "The user's, an agent's, or the bot's (the timeout's notice).",
            },
            "text": _string(),
            "at": _string(format="date-time"),
            "agent": {
                "type": ["object", "null"],
                "properties": {"id": _string(), "name": _string()},
                "required": ["id", "name"],
                "additionalProperties": False,
            },
        },
        "type",
        "session_id",
        "role",
        "text",
        "at",
    ),
    "Health": _object({"status": {"const": "ok"}}, "status"),
    "Ready": _object(
        {
            "status": {"type": "string", "enum": ["ready", "unavailable"]},
            "checks": {
                "type": "object",
                "description": "`postgres` always, `redis` when configured: whether each answers.",
                "properties": {"postgres": {"type": "boolean"}, "redis": {"type": "boolean"}},
                "required": ["postgres"],
                "additionalProperties": {"type": "boolean"},
            },
        },
        "status",
        "checks",
    ),
    "OpenApiDocument": {
        "type": "object",
        "required": ["openapi", "info", "paths"],
        "properties": {"openapi": {"type": "string", "pattern": r"^3\.1\.\d+$"}},
    },
    # -- WebSocket frames ------------------------------------------------------------------
    "WsAuthFrame": _object(
        {
            "type": {"const": "auth"},
            "token": _string(
                "The credential; may be left out when the upgrade carried `Authorization`."
            ),
            "session_id": _nullable(_string("A session of the caller's to resume.", maxLength=64)),
            "user_id": _nullable(
                _string("The user, from an `app` or `admin` only.", maxLength=MAX_USER_ID)
            ),
        },
        "type",
        closed=False,
    ),
    "WsMessageFrame": _object(
        {
            "type": {"const": "message", "description": "May be left out."},
            "text": _string(minLength=1, maxLength=MAX_TEXT),
            "session_id": _nullable(_string(maxLength=64)),
            "user_id": _string(
                "From an `app` or `admin` only (else ignored).", maxLength=MAX_USER_ID
            ),
            "message_id": {"type": ["string", "integer", "null"]},
        },
        "text",
        closed=False,
    ),
    "WsReadyFrame": _object(
        {"type": {"const": "ready"}, "user_id": _nullable(_string())}, "type", "user_id"
    ),
    "WsDeltaFrame": _object({"type": {"const": "delta"}, "text": _string()}, "type", "text"),
    "WsReplyFrame": _object(
        {
            "type": {"const": "message"},
            "text": _string(),
            "suggestions": {
                "type": "array",
                "items": _object({"key": _string(), "label": _string()}, "key", "label"),
            },
            "from": {
                "type": "string",
                "enum": ["agent", "bot"],
                "description": "On a message between turns: an agent's (a person has the"
                " conversation), or the bot's (a handoff that timed out).",
            },
            "agent": _string("The agent's name, on an agent's message."),
            "attachments": _REPLY_FILES,
            "player": {**_PLAYER, "description": "`PLAY` and `STOP`: the player to open or close."},
        },
        "type",
        "text",
        "suggestions",
    ),
    "WsDoneFrame": _object(
        {"type": {"const": "done"}, "session_id": _string()}, "type", "session_id"
    ),
    "WsErrorFrame": _object(
        {
            "type": {"const": "error"},
            "error": _string(),
            "message": _string(),
            "retry_after": {
                "type": "integer",
                "minimum": 1,
                "description": "With `rate_limited`: seconds until the next message fits.",
            },
        },
        "type",
        "error",
        "message",
    ),
    # -- provider webhooks ----------------------------------------------------------------
    "TelegramUpdate": {
        "type": "object",
        "description": "A Bot API `Update` (https://core.telegram.org/bots/api#update).",
        "required": ["update_id"],
        "properties": {"update_id": {"type": "integer"}, "message": {"type": "object"}},
    },
    "WhatsAppNotification": {
        "type": "object",
        "description": "A Cloud API webhook notification: messages and statuses, maybe batched.",
        "required": ["object", "entry"],
        "properties": {
            "object": {"const": "whatsapp_business_account"},
            "entry": {"type": "array", "items": {"type": "object"}},
        },
    },
    "TwilioForm": {
        "type": "object",
        "description": "Twilio's form: a message (`Body`/`NumMedia`) or a status callback"
        " (`MessageStatus`, no `Body`).",
        "required": ["MessageSid"],
        "properties": {
            "MessageSid": _string(),
            "From": _string("`whatsapp:+…` for WhatsApp, a bare number for SMS."),
            "To": _string(),
            "Body": _string(),
            "ButtonPayload": _string(),
            "NumMedia": _string(pattern="^[0-9]+$"),
            "MessageStatus": _string(),
            "ErrorCode": _string(),
            "ErrorMessage": _string(),
        },
        "additionalProperties": {"type": "string"},
    },
}


# -- shared answers ----------------------------------------------------------------------

MEDIA_URL = (
    "/media/MQoxODAwMDAwMDAwCnJlY2VpcHQuanBnCmRlZmF1bHQvdXNlcnMvNDI0MjQyQHRlbGVncmFtL2lu"
    "Ym94LzE3LzAtcmVjZWlwdC5qcGc.3oT1u4mY7bGQy3nq3Jv0yXJH2Qm6pQvS8yX2e9YcF1o"
)

_ERROR_TEXT = {
    "bad_request": "field 'text' is required",
    "unauthorized": "this endpoint needs a credential: a visitor token (the web widget's, from"
    " POST /api/v1/visitors), a JWT, or an API key",
    "forbidden": "this credential is for bot 'shop', not 'default'",
    "not_found": "Not Found",
    "unknown_bot": "no bot named 'nobody'",
    "unknown_session": f"no session {SESSION_ID!r} for this user and bot",
    "unknown_key": f"no key {KEY_ID!r} of bot 'default'",
    "channel_off": "bot 'default' has no telegram channel on",
    "revoked": f"key {KEY_ID!r} is already revoked",
    "replayed": "this signed request was received before",
    "unknown_recipient": "user 'u-9' has not talked to bot 'default' on a channel it can send on",
    "unknown_handoff": f"no conversation {SESSION_ID!r} of bot 'default' was handed to a person",
    "held_by_another": f"conversation {SESSION_ID!r} is held by Grace",
    "not_taken": f"take conversation {SESSION_ID!r} before answering it",
    "body_too_large": "Maximum request body size 1048576 exceeded, actual body size 1048577",
    "unsupported_media_type": "send the message as application/json",
    "queued": "message 'm-1' is queued; its replies will be in the session's history",
    "message_failed": "the message was dead: refused: unknown_session: no session 'x' for"
    " this user and bot",
    "turn_failed": "the turn failed; it is logged and will be retried",
    "unavailable": "the message could not be stored; send it again",
    "internal": "internal error; the error is logged",
    "rate_limited": "too many requests from this address; try again in 2 s",
}

_RETRY_AFTER = {
    "description": "Seconds to wait before sending again.",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
    "example": "1",
}
_WWW_AUTHENTICATE = {
    "description": "The bearer challenge.",
    "schema": {"type": "string"},
    "example": 'Bearer realm="botserver"',
}


def _error(description: str, *codes: str, headers: dict[str, Any] | None = None) -> Schema:
    """A JSON error answer, one example per code it may carry."""
    examples = {code: {"value": {"error": code, "message": _ERROR_TEXT[code]}} for code in codes}
    response: Schema = {
        "description": description,
        "content": {JSON: {"schema": _ref("Error"), "examples": examples}},
    }
    if headers:
        response["headers"] = headers
    return response


RESPONSES: dict[str, Schema] = {
    "BadRequest": _error("Malformed JSON, a wrong type, a missing or empty field.", "bad_request"),
    "Unauthorized": _error(
        "No credential where one is needed, or one that is malformed, forged, expired,"
        " revoked or not for us.",
        "unauthorized",
        headers={"WWW-Authenticate": _WWW_AUTHENTICATE},
    ),
    "Forbidden": _error(
        "A valid credential without the role or the bot (e.g. an agent key sending messages,"
        " another bot's key).",
        "forbidden",
    ),
    "AdminForbidden": _error(
        "Not an admin of this bot; also to everyone when no admin credential is configured"
        " at all (admin fails closed: `… is disabled`).",
        "forbidden",
    ),
    "UnknownBot": _error("No such bot.", "unknown_bot"),
    "TooLarge": _error("The body is over `BOTSERVER_MAX_BODY_BYTES` (1 MiB).", "body_too_large"),
    "Unavailable": _error(
        "A store could not be written, or an issuer's JWKS could not be fetched to check a"
        " JWT: send it again.",
        "unavailable",
        headers={"Retry-After": _RETRY_AFTER},
    ),
    "Internal": _error("An unexpected failure, logged.", "internal"),
    "RateLimited": _error(
        "Over a rate limit (token buckets per client address and per credential, shared by"
        " every instance through Redis when configured): `Retry-After` says in how many"
        " seconds the next request fits.",
        "rate_limited",
        headers={"Retry-After": _RETRY_AFTER},
    ),
}


def _media_error(description: str, code: str, message: str) -> Schema:
    return {
        "description": description,
        "content": {
            JSON: {
                "schema": _ref("Error"),
                "examples": {code: {"value": {"error": code, "message": message}}},
            }
        },
    }


def _response(name: str) -> Schema:
    return {"$ref": "#/components/responses/" + name}


def _json(description: str, schema: str, examples: dict[str, Any], **more: Any) -> Schema:
    return {
        "description": description,
        "content": {
            JSON: {
                "schema": _ref(schema),
                "examples": {name: {"value": value} for name, value in examples.items()},
            }
        },
        **more,
    }


# -- credentials -------------------------------------------------------------------------

SECURITY_SCHEMES: dict[str, Schema] = {
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "`BOTSERVER_ADMIN_TOKEN`: admin of every bot.",
    },
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "bsk_<id>_<secret>",
        "description": "An API key (`botserver keys create`, or `POST /api/v1/bots/{bot}/keys`):"
        " its role (admin, agent, app or user), for one bot or every bot; a `user` key is the"
        " user it names. Only its SHA-256 is stored; revoked keys are refused at once.",
    },
    "visitorToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "bv1.<user id>.<signature>",
        "description": "An anonymous visitor (`web-…`), role `user`, every bot: from"
        " `GET /chat/{bot}` or `POST /api/v1/visitors`. It does not expire.",
    },
    "jwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "HS256 with `BOTSERVER_JWT_SECRET`, or RS256/ES256… from"
        " `BOTSERVER_JWKS_URL` or the JWKS of `BOTSERVER_OIDC_ISSUER`'s discovery document"
        " (with issuer and audience). The user is its `sub`; its roles are"
        " those of `BOTSERVER_JWT_ROLES_CLAIM` (default `roles`), `user` when none of ours;"
        " its bots those of `BOTSERVER_JWT_BOTS_CLAIM` (default `bots`), every bot when"
        " absent. `exp` and `sub` required; `nbf`, `iss`, `aud` checked.",
    },
    "telegramSecretToken": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Telegram-Bot-Api-Secret-Token",
        "description": "The bot's `telegram-webhook-secret`, compared in constant time.",
    },
    "whatsappSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Hub-Signature-256",
        "description": "`sha256=` and the hex HMAC-SHA256 of the raw body under"
        " `whatsapp-app-secret`.",
    },
    "genericSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Botserver-Signature",
        "description": "`sha256=` and the hex HMAC-SHA256, under the bot's `webhook-secret`, of"
        " `X-Botserver-Timestamp` (unix seconds), a `.` and the raw body. Refused when older"
        " than 5 minutes, more than 1 minute ahead, or seen before. Callbacks to the bot's"
        " `webhook-callback-url` are signed the same way.",
    },
    "whatsappVerifyToken": {
        "type": "apiKey",
        "in": "query",
        "name": "hub.verify_token",
        "description": "The bot's `whatsapp-verify-token` (the subscription handshake).",
    },
    "twilioSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Twilio-Signature",
        "description": "Twilio's signature over the public URL (`twilio-public-url`) and the"
        " form, checked by the SDK's `RequestValidator` with `twilio-auth-token`.",
    },
}

# Roles named per scheme (OpenAPI 3.1: role names for non-OAuth schemes).
ANY_CALLER = [
    {"visitorToken": ["user"]},
    {"apiKey": ["user", "app", "admin"]},
    {"jwt": []},
    {"adminToken": ["admin"]},
]
READER = [
    {"visitorToken": ["user"]},
    {"apiKey": ["user", "app", "agent", "admin"]},
    {"jwt": []},
    {"adminToken": ["admin"]},
]
ADMIN = [{"adminToken": ["admin"]}, {"apiKey": ["admin"]}, {"jwt": ["admin"]}]
AGENT = [
    {"apiKey": ["agent", "admin"]},
    {"jwt": ["agent", "admin"]},
    {"adminToken": ["admin"]},
]
PUBLIC: list[dict[str, list[str]]] = []


def _path_param(name: str, description: str, example: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
        "example": example,
    }


BOT = _path_param("bot", "The bot's name (its `name.gbai` package).", "default")


# -- operations --------------------------------------------------------------------------

_SSE_EXAMPLE = (
    'event: delta\ndata: {"text":"Hello"}\n\n'
    'event: message\ndata: {"text":"Hello! What is your name?","suggestions":[]}\n\n'
    f'event: done\ndata: {{"session_id":"{SESSION_ID}",'
    '"replies":[{"text":"Hello! What is your name?","suggestions":[]}]}\n\n'
)

_WS_DESCRIPTION = """\
A WebSocket of JSON text frames (`x-websocket` lists them with their schemas).
Nothing that identifies the caller goes in the URL: `user_id`, `session_id`,
`token` or `visitor_token` in the query is a 400 before the upgrade.

1. The client's first frame, within 10 s: `{"type": "auth", "token", "session_id"?,
   "user_id"?}` (`token` may be left out when the upgrade request carried
   `Authorization: Bearer …`; `user_id` is an app's). A refused or missing credential
   gets an `unauthorized` error frame and the socket is closed with 1008.
2. The server answers `{"type": "ready", "user_id"}`; a `session_id` resumes that
   session if it is the caller's (else an `unknown_session` error frame).
3. Then client `message` frames; for each turn the server sends `delta` frames
   (streamed model output), `message` frames (whole replies, suggestions with key and
   label) and `done` with the session id. A refused message or a failed turn is an
   `error` frame (`{"type": "error", "error", "message"}`) and the socket stays open.
   Each message frame counts against the address's and the credential's rate limits;
   one over them gets a `rate_limited` error frame with `retry_after` (seconds), is not
   run, and the socket stays open.

With `?format=html` each server frame is sent rendered as an htmx out-of-band HTML
fragment (the widget's mode): the user's own message is echoed, and a resumed
session's recent history is replayed. The server closes with 1001 on shutdown.
"""


def _frames(**named: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        name: {"schema": _ref(schema), "examples": examples}
        for name, (schema, examples) in named.items()
    }


def _paths() -> dict[str, Any]:
    errors_500 = {"500": _response("Internal")}
    history_param = _path_param("session_id", "A session of this bot.", SESSION_ID)
    reply = {"text": "Hello! What is your name?", "suggestions": []}
    menu = {"text": "What would you like?", "suggestions": ["Prices", "Opening hours"]}
    key = {
        "id": KEY_ID,
        "bot": "default",
        "role": "app",
        "user_id": None,
        "name": "mobile backend",
        "created_at": AT,
        "revoked_at": None,
    }
    channel = {
        "channel": "telegram",
        "configured": True,
        "note": None,
        "mode": "webhook",
        "webhook": "https://bots.example.com/webhooks/telegram/default",
        "last_inbound_at": AT,
        "queue": {"pending": 0, "running": 1},
        "dead_messages": 0,
        "parked_sends": 0,
    }
    webhook_errors = {
        "403": _error(
            "The signature or secret token is missing or wrong: nothing of the request is read.",
            "forbidden",
        ),
        "404": _error(
            "No such bot, or the bot has this channel off (also when some of its rows are"
            " missing: fail closed).",
            "unknown_bot",
            "channel_off",
        ),
        "413": _response("TooLarge"),
        "503": _response("Unavailable"),
        **errors_500,
    }
    return {
        "/api/v1/bots/{bot}/messages": {
            "post": {
                "operationId": "postMessage",
                "tags": ["web"],
                "summary": "Run one turn of the conversation",
                "description": (
                    "The user is the credential's (a visitor token's, a JWT's subject, a user"
                    " key's); only an `app` or `admin` names it in the body's `user_id`"
                    " (required then), from anyone else `user_id` is ignored. An agent key"
                    " is 403. With `Accept: text/event-stream` the same turn streams as"
                    " server-sent events (see `x-events`): `delta` (partial text), `message`"
                    " (one whole reply), then `done` with the session id and every reply, or"
                    " `error` (`{error, message}`) when the turn fails after the stream"
                    " began (with the first event, or as the model starts to answer); a"
                    " refusal before that is a plain JSON error."
                ),
                "security": ANY_CALLER,
                "parameters": [BOT],
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": _ref("MessageRequest"),
                            "examples": {
                                "user": {"value": {"text": "hi", "session_id": None}},
                                "app": {
                                    "summary": "An app names the user",
                                    "value": {"text": "hi", "user_id": "u-42"},
                                },
                                "retry": {
                                    "summary": "A client retrying after a lost answer",
                                    "value": {
                                        "text": "Ada",
                                        "session_id": SESSION_ID,
                                        "message_id": "m-7",
                                    },
                                },
                            },
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "The turn's replies (or, for a `message_id` sent"
                        " again, those of its first delivery).",
                        "content": {
                            JSON: {
                                "schema": _ref("MessageResponse"),
                                "examples": {
                                    "greeting": {
                                        "value": {"session_id": SESSION_ID, "replies": [reply]}
                                    },
                                    "menu": {
                                        "value": {"session_id": SESSION_ID, "replies": [menu]}
                                    },
                                },
                            },
                            "text/event-stream": {
                                "schema": {"type": "string"},
                                "examples": {"stream": {"value": _SSE_EXAMPLE}},
                            },
                        },
                        "x-events": {
                            "delta": _ref("Delta"),
                            "message": _ref("Reply"),
                            "done": _ref("Done"),
                            "error": _ref("Error"),
                        },
                    },
                    "202": _error(
                        "An earlier message of the conversation kept this one waiting past"
                        " 30 s: a worker runs it and its replies land in the history.",
                        "queued",
                    ),
                    "400": _response("BadRequest"),
                    "401": _response("Unauthorized"),
                    "403": _response("Forbidden"),
                    "404": _error(
                        "No such bot, or a `session_id` that does not exist or is another"
                        " user's or bot's.",
                        "unknown_bot",
                        "unknown_session",
                    ),
                    "409": _error(
                        "A `message_id` whose first delivery was refused or parked.",
                        "message_failed",
                    ),
                    "413": _response("TooLarge"),
                    "415": _error("A body that is not JSON.", "unsupported_media_type"),
                    "503": _error(
                        "`turn_failed`: a failure on our side, the message stays in the inbox"
                        " and is retried (send it again with the same `message_id` to get its"
                        " replies); `unavailable`: the message could not be stored, or a"
                        " JWKS could not be fetched.",
                        "turn_failed",
                        "unavailable",
                        headers={"Retry-After": _RETRY_AFTER},
                    ),
                    **errors_500,
                },
            }
        },
        "/api/v1/bots/{bot}/sessions/{session_id}/messages": {
            "get": {
                "operationId": "getHistory",
                "tags": ["web"],
                "summary": "A session's history",
                "description": "A user reads only its own sessions; an `app`, `agent` or"
                " `admin` any session of its bot. Someone else's session is 404, as one that"
                " does not exist.",
                "security": READER,
                "parameters": [
                    BOT,
                    history_param,
                    {
                        "name": "user_id",
                        "in": "query",
                        "required": False,
                        "description": "For an app, agent or admin: must be the session's"
                        " user (else 404). Ignored for a user.",
                        "schema": {"type": "string"},
                        "example": "u-42",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "At most this many messages: the latest, or with"
                        " `after` the first after it (clamped to 1…500).",
                        "schema": {"type": "integer", "default": 50},
                        "example": 50,
                    },
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "description": "A message's `id` (a `next` answered before): only the"
                        " messages stored after it, oldest first.",
                        "schema": {"type": "string", "pattern": "^[0-9]+$"},
                        "example": "1041",
                    },
                ],
                "responses": {
                    "200": _json(
                        "The session's messages.",
                        "History",
                        {
                            "history": {
                                "session_id": SESSION_ID,
                                "messages": [
                                    {"id": "1040", "role": "user", "text": "hi", "at": AT},
                                    {
                                        "id": "1041",
                                        "role": "user",
                                        "text": "my receipt",
                                        "at": AT,
                                        "attachments": [
                                            {
                                                "kind": "image",
                                                "content_type": "image/jpeg",
                                                "size": 48213,
                                                "filename": "receipt.jpg",
                                                "caption": "my receipt",
                                                "url": MEDIA_URL,
                                            },
                                            {
                                                "kind": "video",
                                                "content_type": "video/mp4",
                                                "size": None,
                                                "filename": None,
                                                "caption": None,
                                                "error": "too_large",
                                            },
                                        ],
                                    },
                                    {
                                        "id": "1042",
                                        "role": "assistant",
                                        "text": reply["text"],
                                        "at": AT,
                                    },
                                ],
                                "next": "1042",
                            },
                            "caught_up": {"session_id": SESSION_ID, "messages": [], "next": "1041"},
                        },
                    ),
                    "400": _error(
                        "`limit` is not an integer, or `after` not an id.", "bad_request"
                    ),
                    "401": _response("Unauthorized"),
                    "403": _response("Forbidden"),
                    "404": _error("No such session for this bot (and user).", "unknown_session"),
                    "503": _response("Unavailable"),
                    **errors_500,
                },
            }
        },
        "/api/v1/visitors": {
            "post": {
                "operationId": "newVisitor",
                "tags": ["web"],
                "summary": "A new anonymous visitor",
                "description": "No credential needed; no body read. The token is the"
                " visitor's credential from then on.",
                "security": PUBLIC,
                "responses": {
                    "201": _json(
                        "The visitor's token and user id.",
                        "Visitor",
                        {"visitor": {"visitor_token": VISITOR_TOKEN, "user_id": VISITOR_USER}},
                    ),
                    **errors_500,
                },
            }
        },
        "/api/v1/bots/{bot}/reload": {
            "post": {
                "operationId": "reloadBot",
                "tags": ["admin"],
                "summary": "Read a bot's package again",
                "description": "Reloads dialogs, configuration and channels; no body read.",
                "security": ADMIN,
                "parameters": [BOT],
                "responses": {
                    "200": _json(
                        "The bot's dialogs and compile errors.",
                        "Reload",
                        {
                            "reloaded": {
                                "bot": "default",
                                "dialogs": ["start.bas"],
                                "errors": [],
                            },
                            "with_errors": {
                                "bot": "shop",
                                "dialogs": ["order.bas", "start.bas"],
                                "errors": ["order.bas:3:7: expected THEN"],
                            },
                        },
                    ),
                    "401": _response("Unauthorized"),
                    "403": _response("AdminForbidden"),
                    "404": _response("UnknownBot"),
                    "503": _response("Unavailable"),
                    **errors_500,
                },
            }
        },
        "/api/v1/bots/{bot}/send": {
            "post": {
                "operationId": "sendProactive",
                "tags": ["proactive"],
                "summary": "Queue a message the user did not ask for",
                "description": "To an address on a channel, or to a user the bot has seen (on"
                " the channel they last talked on), through the outbox: paced, retried, parked"
                " after the limit, and on WhatsApp outside the 24-hour window as the bot's"
                " `whatsapp-template`. The same `Idempotency-Key` (or `message_id`) sent again"
                " answers with the first request's row and queues nothing. Roles `app` or"
                " `admin` of the bot.",
                "security": [
                    {"apiKey": ["app", "admin"]},
                    {"jwt": ["app", "admin"]},
                    {"adminToken": ["admin"]},
                ],
                "parameters": [
                    BOT,
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "The sender's key of this message (1 to 200 characters).",
                        "schema": {"type": "string", "maxLength": 200},
                        "example": "reminder-2026-12-03-u42",
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": _ref("SendRequest"),
                            "examples": {
                                "address": {
                                    "value": {
                                        "channel": "telegram",
                                        "to": "42",
                                        "text": "Your order has shipped.",
                                    }
                                },
                                "user": {
                                    "value": {"user_id": "+15551234567", "text": "See you at 3."}
                                },
                                "template": {
                                    "value": {
                                        "channel": "whatsapp",
                                        "to": "+15551234567",
                                        "template": {
                                            "name": "table_ready",
                                            "params": {"customer": "Ada", "table": "4"},
                                        },
                                    }
                                },
                            },
                        }
                    },
                },
                "responses": {
                    "202": _json(
                        "Queued (or, for a key sent before, the row it queued then).",
                        "SendQueued",
                        {
                            "queued": {
                                "outbox_id": 1207,
                                "channel": "telegram",
                                "to": "42",
                                "status": "queued",
                                "duplicate": False,
                            }
                        },
                    ),
                    "400": _response("BadRequest"),
                    "401": _response("Unauthorized"),
                    "403": _response("Forbidden"),
                    "404": _error(
                        "No such bot, a channel the bot has off, or a user it has not seen on a"
                        " channel it can send on.",
                        "unknown_bot",
                        "channel_off",
                        "unknown_recipient",
                    ),
                    "413": _response("TooLarge"),
                    "415": _error("The body is not JSON.", "unsupported_media_type"),
                    "503": _response("Unavailable"),
                    **errors_500,
                },
            }
        },
        "/api/v1/bots/{bot}/channels": {
            "get": {
                "operationId": "botChannels",
                "tags": ["admin"],
                "summary": "Each provider channel's state",
                "description": "On or why not, webhook, last inbound message, queue, parked"
                " messages and sends.",
                "security": ADMIN,
                "parameters": [BOT],
                "responses": {
                    "200": _json(
                        "The bot's provider channels.",
                        "Channels",
                        {
                            "telegram": {"bot": "default", "channels": [channel]},
                            "off": {
                                "bot": "shop",
                                "channels": [
                                    {
                                        **channel,
                                        "channel": "whatsapp",
                                        "configured": False,
                                        "note": "missing whatsapp-app-secret",
                                        "mode": None,
                                        "webhook": None,
                                        "last_inbound_at": None,
                                        "queue": {"pending": 0, "running": 0},
                                    }
                                ],
                            },
                        },
                    ),
                    "401": _response("Unauthorized"),
                    "403": _response("AdminForbidden"),
                    "404": _response("UnknownBot"),
                    "503": _response("Unavailable"),
                    **errors_500,
                },
            }
        },
        "/api/v1/bots/{bot}/llm-cache": {
            "get": {
                "operationId": "llmCacheState",
                "tags": ["admin"],
                "summary": "The bot's semantic LLM cache",
                "description": "Its settings (config.csv) and this process's counters since it"
                " started: hits and misses by tier, near matches the guard refused (negation,"
                " numbers, names, other words), answers stored, turns that could not use it.",
                "security": ADMIN,
                "parameters": [BOT],
                "responses": {
                    "200": _json(
                        "The bot's cache.",
                        "LlmCacheState",
                        {
                            "on": {
                                "bot": "default",
                                "enabled": True,
                                "semantic": True,
                                "threshold": 0.95,
                                "ttl": 3600.0,
                                "max_entries": 100,
                                "embedding_model": "all-MiniLM-L6-v2-onnx-int8",
                                "counters": {
                                    "exact": {"hits": 12, "misses": 9},
                                    "similar": {"hits": 3, "misses": 6, "refused": 1},
                                    "stored": 6,
                                    "skipped": 4,
                                    "errors": 0,
                                },
                            }
                        },
                    ),
                    "401": _response("Unauthorized"),
                    "403": _response("AdminForbidden"),
                    "404": _response("UnknownBot"),
                    **errors_500,
                },
            }
        },
        "/api/v1/bots/{bot}/keys": {
            "get": {
                "operationId": "listKeys",
                "tags": ["admin"],
                "summary": "The bot's API keys and those of every bot",
                "description": "Revoked keys included; never their secrets.",
                "security": ADMIN,
                "parameters": [BOT],
                "responses": {
                    "200": _json(
                        "The keys.",
                        "ApiKeyList",
                        {
                            "keys": {
                                "bot": "default",
                                "keys": [
                                    key,
                                    {
                                        **key,
                                        "id": "a1b2c3d4e5f60718",
                                        "bot": None,
                                        "role": "user",
                                        "user_id": "u-42",
                                        "name": "",
                                        "revoked_at": AT,
                                    },
                                ],
                            }
                        },
                    ),
                    "401": _response("Unauthorized"),
                    "403": _response("AdminForbidden"),
                    "404": _response("UnknownBot"),
                    "503": _response("Unavailable"),
                    **errors_500,
                },
            },
            "post": {
                "operationId": "createKey",
                "tags": ["admin"],
                "summary": "Make an API key for the bot",
                "description": "The key is in the answer, this once. A key for every bot is"
                " made only with `botserver keys create --all-bots`.",
                "security": ADMIN,
                "parameters": [BOT],
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": _ref("CreateKeyRequest"),
                            "examples": {
                                "app": {"value": {"role": "app", "name": "mobile backend"}},
                                "user": {"value": {"role": "user", "user_id": "u-42"}},
                            },
                        }
                    },
                },
                "responses": {
                    "201": _json(
                        "The new key, with its secret.",
                        "NewApiKey",
                        {"created": {**key, "key": API_KEY}},
                    ),
                    "400": _error(
                        "Malformed JSON, an unknown role, a name over 200 characters, a"
                        " `user_id` missing for a user key or given for another role.",
                        "bad_request",
                    ),
                    "401": _response("Unauthorized"),
                    "403": _response("AdminForbidden"),
                    "404": _response("UnknownBot"),
                    "413": _response("TooLarge"),
                    "503": _response("Unavailable"),
                    **errors_500,
                },
            },
        },
        "/api/v1/bots/{bot}/keys/{key_id}": {
            "delete": {
                "operationId": "revokeKey",
                "tags": ["admin"],
                "summary": "Revoke a key",
                "description": "Takes effect on the next request, on every instance. A key of"
                " every bot only by an admin of every bot.",
                "security": ADMIN,
                "parameters": [BOT, _path_param("key_id", "The key's id.", KEY_ID)],
                "responses": {
                    "200": _json(
                        "Revoked.", "KeyRevoked", {"revoked": {"id": KEY_ID, "revoked": True}}
                    ),
                    "401": _response("Unauthorized"),
                    "403": _response("AdminForbidden"),
                    "404": _error(
                        "No such bot, or no such key of it.", "unknown_bot", "unknown_key"
                    ),
                    "409": _error("Already revoked.", "revoked"),
                    "503": _response("Unavailable"),
                    **errors_500,
                },
            }
        },
        "/ws/{bot}": {
            "get": {
                "operationId": "websocket",
                "tags": ["web"],
                "summary": "The conversation as a WebSocket",
                "description": _WS_DESCRIPTION,
                "security": [*ANY_CALLER, {}],
                "parameters": [
                    BOT,
                    {
                        "name": "format",
                        "in": "query",
                        "required": False,
                        "description": "`html`: frames rendered for the widget.",
                        "schema": {"type": "string", "enum": ["json", "html"], "default": "json"},
                        "example": "json",
                    },
                ],
                "responses": {
                    "101": {"description": "Switching protocols: the WebSocket is open."},
                    "400": _error(
                        "A credential, user or session in the query string.", "bad_request"
                    ),
                    "401": _response("Unauthorized"),
                    "403": _response("Forbidden"),
                    "404": _response("UnknownBot"),
                    "503": _response("Unavailable"),
                    **errors_500,
                },
                "x-websocket": {
                    "auth_timeout_seconds": 10,
                    "close_codes": {
                        "1001": "server shutdown",
                        "1008": "refused or missing credential, or a malformed auth frame",
                    },
                    "client_frames": _frames(
                        auth=(
                            "WsAuthFrame",
                            [
                                {"type": "auth", "token": VISITOR_TOKEN},
                                {"type": "auth", "token": VISITOR_TOKEN, "session_id": SESSION_ID},
                                {"type": "auth", "token": API_KEY, "user_id": "u-42"},
                            ],
                        ),
                        message=(
                            "WsMessageFrame",
                            [
                                {"type": "message", "text": "hi"},
                                {"type": "message", "text": "hi", "user_id": "u-42"},
                            ],
                        ),
                    ),
                    "server_frames": _frames(
                        ready=("WsReadyFrame", [{"type": "ready", "user_id": VISITOR_USER}]),
                        delta=("WsDeltaFrame", [{"type": "delta", "text": "Hel"}]),
                        message=(
                            "WsReplyFrame",
                            [
                                {
                                    "type": "message",
                                    "text": "What would you like?",
                                    "suggestions": [{"key": "prices", "label": "Prices"}],
                                }
                            ],
                        ),
                        done=("WsDoneFrame", [{"type": "done", "session_id": SESSION_ID}]),
                        error=(
                            "WsErrorFrame",
                            [
                                {
                                    "type": "error",
                                    "error": "unauthorized",
                                    "message": "invalid visitor token",
                                },
                                {
                                    "type": "error",
                                    "error": "rate_limited",
                                    "message": "too many requests from this user; try again in 1 s",
                                    "retry_after": 1,
                                },
                            ],
                        ),
                    ),
                },
            }
        },
        "/webhooks/telegram/{bot}": {
            "post": {
                "operationId": "telegramWebhook",
                "tags": ["webhooks"],
                "summary": "Telegram Bot API updates",
                "description": "Each message is claimed in the inbox before the answer; the"
                " turn runs in a worker. A verified body we cannot read, or an update kind"
                " we do not handle, is 200 (logged): Telegram would only send it again.",
                "security": [{"telegramSecretToken": []}],
                "parameters": [BOT],
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": _ref("TelegramUpdate"),
                            "examples": {
                                "message": {
                                    "value": {
                                        "update_id": 10001,
                                        "message": {
                                            "message_id": 5,
                                            "date": 1748779200,
                                            "chat": {"id": 42, "type": "private"},
                                            "from": {
                                                "id": 42,
                                                "is_bot": False,
                                                "first_name": "Ada",
                                            },
                                            "text": "hi",
                                        },
                                    }
                                }
                            },
                        }
                    },
                },
                "responses": {
                    "200": {"description": "Claimed (or acknowledged); empty body."},
                    **webhook_errors,
                },
            }
        },
        "/webhooks/whatsapp/{bot}": {
            "get": {
                "operationId": "whatsappHandshake",
                "tags": ["webhooks"],
                "summary": "Meta's subscription handshake",
                "description": "Echoes `hub.challenge` when `hub.mode` is `subscribe` and"
                " `hub.verify_token` is the bot's `whatsapp-verify-token`; 403 otherwise.",
                "security": [{"whatsappVerifyToken": []}],
                "parameters": [
                    BOT,
                    {
                        "name": "hub.mode",
                        "in": "query",
                        "required": True,
                        "schema": {"const": "subscribe"},
                        "example": "subscribe",
                    },
                    {
                        "name": "hub.verify_token",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                        "example": "my-verify-token",
                    },
                    {
                        "name": "hub.challenge",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1},
                        "example": "1158201444",
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The challenge, echoed.",
                        "content": {
                            "text/plain": {
                                "schema": {"type": "string"},
                                "examples": {"challenge": {"value": "1158201444"}},
                            }
                        },
                    },
                    **{k: v for k, v in webhook_errors.items() if k != "413"},
                },
            },
            "post": {
                "operationId": "whatsappWebhook",
                "tags": ["webhooks"],
                "summary": "WhatsApp Cloud API notifications",
                "description": "Messages and delivery statuses (every message of a batched"
                " notification). A verified body we cannot read is 200 (logged).",
                "security": [{"whatsappSignature": []}],
                "parameters": [BOT],
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": _ref("WhatsAppNotification"),
                            "examples": {
                                "message": {
                                    "value": {
                                        "object": "whatsapp_business_account",
                                        "entry": [
                                            {
                                                "id": "102290129340398",
                                                "changes": [
                                                    {
                                                        "field": "messages",
                                                        "value": {
                                                            "messaging_product": "whatsapp",
                                                            "metadata": {
                                                                "phone_number_id": "106540352242922"
                                                            },
                                                            "messages": [
                                                                {
                                                                    "from": "5511999990000",
                                                                    "id": "wamid.HBgN",
                                                                    "timestamp": "1748779200",
                                                                    "type": "text",
                                                                    "text": {"body": "hi"},
                                                                }
                                                            ],
                                                        },
                                                    }
                                                ],
                                            }
                                        ],
                                    }
                                }
                            },
                        }
                    },
                },
                "responses": {
                    "200": {"description": "Claimed (or acknowledged); empty body."},
                    **webhook_errors,
                },
            },
        },
        "/webhooks/generic/{bot}": {
            "post": {
                "operationId": "genericWebhook",
                "tags": ["webhooks"],
                "summary": "A message from any backend, signed with the bot's secret",
                "description": "Claimed in the inbox before the answer (the same `message_id`"
                " is one turn however often it comes); the turn runs in a worker, and the bot's"
                " replies and events are POSTed, signed, to its `webhook-callback-url`.",
                "security": [{"genericSignature": []}],
                "parameters": [
                    BOT,
                    {
                        "name": "X-Botserver-Timestamp",
                        "in": "header",
                        "required": True,
                        "description": "Unix seconds when the request was signed.",
                        "schema": {"type": "string", "pattern": "^[0-9]+$"},
                        "example": "1780000000",
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": _ref("GenericMessage"),
                            "examples": {
                                "text": {
                                    "value": {"user_id": "u-42", "message_id": "m-1", "text": "hi"}
                                },
                                "photo": {
                                    "value": {
                                        "user_id": "u-42",
                                        "message_id": "m-2",
                                        "text": "",
                                        "attachments": [
                                            {
                                                "kind": "image",
                                                "url": "https://files.example.com/p/1.jpg",
                                            }
                                        ],
                                    }
                                },
                            },
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        "Claimed; `accepted` false for a message received before.",
                        "GenericAccepted",
                        {
                            "new": {"accepted": True, "message_id": "m-1"},
                            "again": {"accepted": False, "message_id": "m-1"},
                        },
                    ),
                    "400": _response("BadRequest"),
                    **webhook_errors,
                    "403": _error(
                        "The signature is missing, wrong or stale, or the same signed request"
                        " came before: nothing of it is run.",
                        "forbidden",
                        "replayed",
                    ),
                },
            }
        },
        "/webhooks/twilio/{bot}": {
            "post": {
                "operationId": "twilioWebhook",
                "tags": ["webhooks"],
                "summary": "Twilio messages and status callbacks (WhatsApp and SMS)",
                "description": "One webhook for the account's WhatsApp sender and SMS number."
                " A verified form we cannot read is 200 with an empty body (logged).",
                "security": [{"twilioSignature": []}],
                "parameters": [BOT],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": _ref("TwilioForm"),
                            "examples": {
                                "message": {
                                    "value": {
                                        "MessageSid": "SM0123456789abcdef0123456789abcdef",
                                        "From": "whatsapp:+5511999990000",
                                        "To": "whatsapp:+14155238886",
                                        "Body": "hi",
                                        "NumMedia": "0",
                                    }
                                },
                                "status": {
                                    "value": {
                                        "MessageSid": "SM0123456789abcdef0123456789abcdef",
                                        "MessageStatus": "delivered",
                                        "To": "+5511999990000",
                                    }
                                },
                            },
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "Claimed (or acknowledged): an empty TwiML answer.",
                        "content": {
                            "text/xml": {
                                "schema": {"type": "string"},
                                "examples": {
                                    "twiml": {
                                        "value": '<?xml version="1.0" encoding="UTF-8"?>'
                                        "<Response></Response>"
                                    }
                                },
                            }
                        },
                    },
                    **webhook_errors,
                },
            }
        },
        **_handoff_paths(),
        "/chat/{bot}": {
            "get": {
                "operationId": "chatPage",
                "tags": ["widget"],
                "summary": "The chat widget",
                "description": "An HTML page (htmx and its WebSocket extension, served from"
                " `/static/`) carrying a fresh visitor token in `data-visitor-token`; it"
                " connects to `/ws/{bot}?format=html`. Strict CSP, no inline code.",
                "security": PUBLIC,
                "parameters": [BOT],
                "responses": {
                    "200": {
                        "description": "The page.",
                        "headers": {
                            "Content-Security-Policy": {
                                "schema": {"type": "string"},
                                "example": "default-src 'none'; script-src 'self'",
                            }
                        },
                        "content": {
                            "text/html": {
                                "schema": {"type": "string"},
                                "examples": {"page": {"value": "<!doctype html>\n<html>…</html>"}},
                            }
                        },
                    },
                    "404": {
                        "description": "No such bot: HTML, or the JSON error when the request"
                        " accepts `application/json` and not `text/html`.",
                        "content": {
                            "text/html": {
                                "schema": {"type": "string"},
                                "examples": {
                                    "page": {"value": "<!doctype html><h1>Bot not found</h1>"}
                                },
                            },
                            JSON: {
                                "schema": _ref("Error"),
                                "examples": {
                                    "unknown_bot": {
                                        "value": {
                                            "error": "unknown_bot",
                                            "message": _ERROR_TEXT["unknown_bot"],
                                        }
                                    }
                                },
                            },
                        },
                    },
                    **errors_500,
                },
            }
        },
        "/static/{path}": {
            "get": {
                "operationId": "staticFile",
                "tags": ["widget"],
                "summary": "The widget's static files",
                "description": "`chat.js`, `chat.css`, `vendor/htmx-2.0.11.min.js`,"
                " `vendor/htmx-ext-ws-2.0.4.min.js`, and the agents' console's `agent.js` and"
                " `agent.css` (the path may hold `/`; the pages link them with a `?v=` content"
                " hash).",
                "security": PUBLIC,
                "x-static-directory": True,
                "parameters": [_path_param("path", "A file under gateway/static.", "chat.js")],
                "responses": {
                    "200": {
                        "description": "The file.",
                        "content": {
                            "text/javascript": {
                                "schema": {"type": "string"},
                                "examples": {"script": {"value": '"use strict";\n…'}},
                            },
                            "text/css": {
                                "schema": {"type": "string"},
                                "examples": {"style": {"value": ".chat { display: flex; }"}},
                            },
                        },
                    },
                    "404": _error("No such file.", "not_found"),
                    **errors_500,
                },
            }
        },
        "/media/{token}": {
            "get": {
                "operationId": "getMedia",
                "tags": ["media"],
                "summary": "A stored file, by its signed link",
                "description": "The links the history (and, later, bots' replies) give to"
                " files users sent: the token signs the file's key, an expiry and its name"
                " (HMAC-SHA256 under `BOTSERVER_MEDIA_SECRET` or a key kept in the"
                " database), so it needs no other credential. The file streams with its"
                " content type and length; `Range: bytes=a-b` (one range) answers 206."
                " Served as inert: `nosniff`, a sandboxing `Content-Security-Policy`, and"
                " `inline` only for images (not SVG), audio, video, PDF and plain text.",
                "security": PUBLIC,
                "parameters": [
                    _path_param(
                        "token",
                        "The signed token of a media link.",
                        MEDIA_URL.removeprefix("/media/"),
                    ),
                    {
                        "name": "Range",
                        "in": "header",
                        "required": False,
                        "description": "One byte range; several are answered whole.",
                        "schema": {"type": "string"},
                        "example": "bytes=0-1023",
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The file.",
                        "headers": {
                            "Content-Disposition": {
                                "description": "`inline` or `attachment`, with its name.",
                                "schema": {"type": "string"},
                                "example": 'inline; filename="receipt.jpg"; '
                                "filename*=UTF-8''receipt.jpg",
                            },
                            "Accept-Ranges": {"schema": {"type": "string"}, "example": "bytes"},
                        },
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "contentMediaType": "*/*"},
                                "examples": {"bytes": {"value": "(the file's bytes)"}},
                            }
                        },
                    },
                    "206": {
                        "description": "The range asked for.",
                        "headers": {
                            "Content-Range": {
                                "schema": {"type": "string"},
                                "example": "bytes 0-1023/48213",
                            }
                        },
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "contentMediaType": "*/*"},
                                "examples": {"bytes": {"value": "(the range's bytes)"}},
                            }
                        },
                    },
                    "403": _media_error(
                        "A token that was forged, changed or has expired.",
                        "forbidden",
                        "this media link is not valid or has expired",
                    ),
                    "404": _media_error(
                        "The file was deleted since.", "not_found", "this file no longer exists"
                    ),
                    "416": {
                        "description": "A range past the end of the file.",
                        "headers": {
                            "Content-Range": {
                                "schema": {"type": "string"},
                                "example": "bytes */48213",
                            }
                        },
                    },
                    "503": _response("Unavailable"),
                    **errors_500,
                },
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "tags": ["operations"],
                "summary": "The process is up",
                "security": PUBLIC,
                "responses": {
                    "200": _json("Up.", "Health", {"ok": {"status": "ok"}}),
                    **errors_500,
                },
            }
        },
        "/ready": {
            "get": {
                "operationId": "ready",
                "tags": ["operations"],
                "summary": "Every store answers",
                "security": PUBLIC,
                "responses": {
                    "200": _json(
                        "Ready.",
                        "Ready",
                        {"ready": {"status": "ready", "checks": {"postgres": True}}},
                    ),
                    "503": _json(
                        "A store does not answer.",
                        "Ready",
                        {
                            "unavailable": {
                                "status": "unavailable",
                                "checks": {"postgres": True, "redis": False},
                            }
                        },
                    ),
                    **errors_500,
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "tags": ["operations"],
                "summary": "This document",
                "security": PUBLIC,
                "responses": {
                    "200": _json(
                        "The OpenAPI 3.1 description of the HTTP API.",
                        "OpenApiDocument",
                        {
                            "document": {
                                "openapi": OPENAPI_VERSION,
                                "info": {"title": "botserver", "version": "0.1.0"},
                                "paths": {},
                            }
                        },
                    ),
                    **errors_500,
                },
            }
        },
    }


_HANDOFF = {
    "session_id": SESSION_ID,
    "channel": "telegram",
    "user_id": "424242",
    "status": "waiting",
    "attendant": None,
    "department": "support",
    "priority": "high",
    "reason": "asked for a person",
    "context": None,
    "agent": None,
    "requested_at": AT,
    "taken_at": None,
    "agent_active_at": AT,
    "resolved_at": None,
    "release_mode": None,
    "last_message": {"text": "Can a person help me?", "at": AT},
}
_HELD = {
    **_HANDOFF,
    "status": "active",
    "agent": {"id": f"key:{KEY_ID}", "name": "Grace"},
    "taken_at": AT,
}
_RELEASED = {**_HELD, "status": "resolved", "resolved_at": AT, "release_mode": "continue"}

_AGENT_WS_DESCRIPTION = """\
The agents' live feed, a WebSocket of JSON text frames (`x-websocket` lists them). As on
`/ws/{bot}`, the credential is the first frame, never the URL: `{"type": "auth", "token"}`
within 10 s, from an `agent` or `admin` of the bot (a `token` in the query is a 400). A
refused credential gets an `unauthorized` or `forbidden` error frame and a 1008 close.

The server answers `ready` (the agent), then `queue` (the conversations waiting and held,
as `GET /api/v1/bots/{bot}/handoffs`), then, as they happen on any instance, `handoff`
frames (transferred, taken, released, abandoned) and `message` frames (the user's messages
while a person has the conversation, the agents' messages, the timeout's notice). A client
`{"type": "queue"}` frame asks for the queue again.
"""


def _handoff_paths() -> dict[str, Any]:
    """Human handoff: the agents' API, their live feed and their console."""
    errors_500 = {"500": _response("Internal")}
    session = _path_param("session_id", "A conversation (session) of this bot.", SESSION_ID)
    not_found = _error(
        "No such bot, or no handoff of this bot for that conversation (also another bot's"
        " conversation: nothing of it is read or changed).",
        "unknown_bot",
        "unknown_handoff",
    )
    common = {
        "401": _response("Unauthorized"),
        "403": _error(
            "A credential without the agent or admin role, or another bot's.", "forbidden"
        ),
        "404": not_found,
        "503": _response("Unavailable"),
        **errors_500,
    }
    held = _error("Another agent holds the conversation.", "held_by_another")
    return {
        "/api/v1/bots/{bot}/handoffs": {
            "get": {
                "operationId": "listHandoffs",
                "tags": ["handoff"],
                "summary": "The conversations waiting for a person, and those held",
                "description": "Waiting first, by priority then age, then those agents hold;"
                " each with the user's last message. `/agent-ws/{bot}` tells of changes live.",
                "security": AGENT,
                "parameters": [BOT],
                "responses": {
                    "200": _json(
                        "The queue.",
                        "HandoffList",
                        {
                            "queue": {"bot": "default", "handoffs": [_HANDOFF, _HELD]},
                            "empty": {"bot": "default", "handoffs": []},
                        },
                    ),
                    **common,
                    "404": _response("UnknownBot"),
                },
            }
        },
        "/api/v1/bots/{bot}/handoffs/{session_id}": {
            "get": {
                "operationId": "getHandoff",
                "tags": ["handoff"],
                "summary": "A conversation's handoff",
                "description": "The open one, else its last.",
                "security": AGENT,
                "parameters": [BOT, session],
                "responses": {
                    "200": _json(
                        "The handoff.",
                        "HandoffAnswer",
                        {"waiting": {"handoff": _HANDOFF}, "released": {"handoff": _RELEASED}},
                    ),
                    **common,
                },
            }
        },
        "/api/v1/bots/{bot}/handoffs/{session_id}/take": {
            "post": {
                "operationId": "takeHandoff",
                "tags": ["handoff"],
                "summary": "Hold a waiting conversation",
                "description": "From then on only this agent answers it (an admin too). Taking"
                " it again answers the same and changes nothing; when two agents take it at"
                " once, one gets it and the other a 409. No body read.",
                "security": AGENT,
                "parameters": [BOT, session],
                "responses": {
                    "200": _json(
                        "Held by the caller.",
                        "HandoffTaken",
                        {
                            "taken": {"handoff": _HELD, "taken": True},
                            "again": {"handoff": _HELD, "taken": False},
                        },
                    ),
                    **common,
                    "404": _error(
                        "No such bot, or the conversation does not wait for a person (never"
                        " transferred, released, or another bot's).",
                        "unknown_bot",
                        "unknown_handoff",
                    ),
                    "409": held,
                },
            }
        },
        "/api/v1/bots/{bot}/handoffs/{session_id}/messages": {
            "post": {
                "operationId": "sayInHandoff",
                "tags": ["handoff"],
                "summary": "Answer the user, as a person",
                "description": "The message reaches the user through the conversation's own"
                " channel: the outbox and the delivery worker for Telegram, WhatsApp, Twilio and"
                " the generic webhook; the user's open sockets (on any instance) for the web,"
                " and the history either way. The queue timeout counts again from it.",
                "security": AGENT,
                "parameters": [BOT, session],
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": _ref("AgentMessageRequest"),
                            "examples": {
                                "answer": {"value": {"text": "Hi, I am Grace. How can I help?"}}
                            },
                        }
                    },
                },
                "responses": {
                    "201": _json(
                        "Written, and on its way.",
                        "AgentMessageSent",
                        {
                            "sent": {
                                "id": "1042",
                                "at": AT,
                                "outbox_id": 1207,
                                "handoff": _HELD,
                            }
                        },
                    ),
                    "400": _response("BadRequest"),
                    **common,
                    "409": _error(
                        "Another agent holds it, or nobody took it yet.",
                        "held_by_another",
                        "not_taken",
                    ),
                    "413": _response("TooLarge"),
                    "415": _error("The body is not JSON.", "unsupported_media_type"),
                },
            }
        },
        "/api/v1/bots/{bot}/handoffs/{session_id}/release": {
            "post": {
                "operationId": "releaseHandoff",
                "tags": ["handoff"],
                "summary": "Hand the conversation back to the bot",
                "description": "By the agent holding it (an admin, or any agent while it still"
                " waits). The user's next message goes to the bot: to its dialog where it"
                " waited (`continue`), or to a conversation started over (`restart`). A"
                " `message` is sent to the user first. The body may be empty.",
                "security": AGENT,
                "parameters": [BOT, session],
                "requestBody": {
                    "required": False,
                    "content": {
                        JSON: {
                            "schema": _ref("ReleaseRequest"),
                            "examples": {
                                "continue": {"value": {}},
                                "restart": {
                                    "value": {
                                        "mode": "restart",
                                        "message": "Glad I could help. The assistant is back.",
                                    }
                                },
                            },
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        "Back with the bot.", "HandoffAnswer", {"released": {"handoff": _RELEASED}}
                    ),
                    "400": _error("A `mode` that is not continue or restart.", "bad_request"),
                    **common,
                    "409": held,
                    "413": _response("TooLarge"),
                    "415": _error("The body is not JSON.", "unsupported_media_type"),
                },
            }
        },
        "/agent-ws/{bot}": {
            "get": {
                "operationId": "agentSocket",
                "tags": ["handoff"],
                "summary": "The agents' live feed as a WebSocket",
                "description": _AGENT_WS_DESCRIPTION,
                "security": [*AGENT, {}],
                "parameters": [BOT],
                "responses": {
                    "101": {"description": "Switching protocols: the WebSocket is open."},
                    "400": _error("A credential in the query string.", "bad_request"),
                    "401": _response("Unauthorized"),
                    "403": _response("Forbidden"),
                    "404": _response("UnknownBot"),
                    "503": _response("Unavailable"),
                    **errors_500,
                },
                "x-websocket": {
                    "auth_timeout_seconds": 10,
                    "close_codes": {
                        "1001": "server shutdown",
                        "1008": "refused or missing credential, not an agent of the bot",
                    },
                    "client_frames": _frames(
                        auth=("AgentWsAuthFrame", [{"type": "auth", "token": API_KEY}]),
                        queue=("AgentWsQueueRequest", [{"type": "queue"}]),
                    ),
                    "server_frames": _frames(
                        ready=(
                            "AgentWsReadyFrame",
                            [{"type": "ready", "agent": {"id": f"key:{KEY_ID}", "name": "Grace"}}],
                        ),
                        queue=("AgentWsQueueFrame", [{"type": "queue", "handoffs": [_HANDOFF]}]),
                        handoff=(
                            "AgentWsHandoffFrame",
                            [{"type": "handoff", "action": "taken", "handoff": _HELD}],
                        ),
                        message=(
                            "AgentWsMessageFrame",
                            [
                                {
                                    "type": "message",
                                    "session_id": SESSION_ID,
                                    "role": "user",
                                    "text": "Are you there?",
                                    "at": AT,
                                },
                                {
                                    "type": "message",
                                    "session_id": SESSION_ID,
                                    "role": "agent",
                                    "text": "Yes, I am here.",
                                    "at": AT,
                                    "agent": {"id": f"key:{KEY_ID}", "name": "Grace"},
                                },
                            ],
                        ),
                        error=(
                            "WsErrorFrame",
                            [
                                {
                                    "type": "error",
                                    "error": "forbidden",
                                    "message": "the agents' feed needs the agent or admin role",
                                }
                            ],
                        ),
                    ),
                },
            }
        },
        "/agent/{bot}": {
            "get": {
                "operationId": "agentConsole",
                "tags": ["handoff"],
                "summary": "The agents' console",
                "description": "An HTML page (`/static/agent.js`, `/static/agent.css`): the"
                " agent signs in with an agent key or JWT (kept in the tab's sessionStorage,"
                " sent in the live feed's first frame and as the REST calls' bearer, never in"
                " a URL), sees the queue live, takes a conversation, answers and releases it."
                " Strict CSP, no inline code.",
                "security": PUBLIC,
                "parameters": [BOT],
                "responses": {
                    "200": {
                        "description": "The page.",
                        "content": {
                            "text/html": {
                                "schema": {"type": "string"},
                                "examples": {"page": {"value": "<!doctype html>\n<html>…</html>"}},
                            }
                        },
                    },
                    "404": {
                        "description": "No such bot (HTML, or JSON as the widget's page).",
                        "content": {
                            "text/html": {
                                "schema": {"type": "string"},
                                "examples": {
                                    "page": {"value": "<!doctype html><h1>Bot not found</h1>"}
                                },
                            },
                            JSON: {
                                "schema": _ref("Error"),
                                "examples": {
                                    "unknown_bot": {
                                        "value": {
                                            "error": "unknown_bot",
                                            "message": _ERROR_TEXT["unknown_bot"],
                                        }
                                    }
                                },
                            },
                        },
                    },
                    **errors_500,
                },
            }
        },
    }


_DESCRIPTION = """\
The HTTP API of the botserver gateway: the web channel (JSON, server-sent
events, a WebSocket), the chat widget, the provider webhooks, the admin
endpoints and health checks.

Every call of the web API brings one credential, `Authorization: Bearer …` (on
the WebSocket, its first frame): an API key `bsk_…`, a visitor token `bv1.…`,
a JWT, or the admin token. Roles: `admin` (reload, keys, channel state, and what
an app or an agent may), `agent` (human handoff: takes, answers and releases the
conversations its bot hands to people; reads its bot's sessions), `app` (names the
user of each message, reads its bot's sessions), `user` (itself only). The role names in each
operation's `security` are those the credential must have; a JWT of any role is
a user (of its `sub`) unless it has `app` or `admin`.

Errors are JSON, `{"error": code, "message": text}`. Any path that is no route
is 404 `not_found`; a route with another method is 405 `method_not_allowed`.
Every `GET` also answers `HEAD`.

Rate limits (token buckets per client address and per credential; see the README's
settings) answer 429 `rate_limited` with `Retry-After` on every route that lists it.
Browser pages of the origins in `BOTSERVER_CORS_ORIGINS` may call `/api/` routes: a
preflight `OPTIONS` is answered there for any route, and refused (403, no CORS
header) for other origins.
"""


def _rate_limited(paths: dict[str, Any]) -> dict[str, Any]:
    """The 429 answer on every operation of a route the rate limits cover (the same
    classification the gateway's middleware uses, so the two cannot drift)."""
    for path, item in paths.items():
        if route_limits(path) is None:
            continue
        for operation in item.values():
            operation["responses"]["429"] = _response("RateLimited")
            operation["responses"] = dict(sorted(operation["responses"].items()))
    return paths


def build() -> dict[str, Any]:
    """The OpenAPI 3.1 document, as a fresh dict."""
    return copy.deepcopy(
        {
            "openapi": OPENAPI_VERSION,
            "info": {
                "title": "botserver",
                "version": "0.1.0",
                "summary": "A messaging-channel bot gateway",
                "description": _DESCRIPTION,
            },
            "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
            "servers": [{"url": "http://127.0.0.1:8080", "description": "botserver serve"}],
            "tags": [
                {"name": "web", "description": "The web channel: messages, history, WebSocket."},
                {"name": "admin", "description": "Reload, channel state, API keys."},
                {"name": "webhooks", "description": "Provider webhooks, signed by each provider."},
                {
                    "name": "proactive",
                    "description": "Messages the user did not ask for, to any channel.",
                },
                {"name": "widget", "description": "The chat page and its files."},
                {
                    "name": "handoff",
                    "description": "Human handoff: the agents' queue, API, live feed, console.",
                },
                {"name": "media", "description": "Files users sent, by signed links."},
                {"name": "operations", "description": "Health, readiness, this document."},
            ],
            "paths": _rate_limited(_paths()),
            "components": {
                "schemas": SCHEMAS,
                "responses": RESPONSES,
                "securitySchemes": SECURITY_SCHEMES,
            },
        }
    )
