"""HTTP routes: messages (JSON or server-sent events), proactive sends, history, bot reload,
health."""

from __future__ import annotations

import logging

from aiohttp import web

from channels import web as web_channel
from channels.base import PayloadError, TemplateRef
from config.env_values import without_secrets
from config.packages import valid_bot_name
from gateway.auth import (
    Forbidden,
    Principal,
    message_user,
    require_admin,
    require_caller,
    without_user_id,
)
from gateway.keys import (
    AUTH,
    BOTS,
    CHANNELS,
    DELIVERY,
    INGESTER,
    MEDIA_URLS,
    MESSAGE_PATH,
    POLLERS,
    PROACTIVE,
    SETTINGS,
    STORES,
    WEBSITES,
)
from gateway.responses import json_error, json_response
from gateway.sinks import CollectingSink, EventStreamSink, reply_json
from gateway.webhooks import channel_states
from pipeline import templates
from pipeline.bots import Bot
from pipeline.errors import TurnFailed, TurnRejected, UnknownBot, UnknownSession
from pipeline.message_path import MessageFailed, MessageQueued
from pipeline.proactive import MAX_ADDRESS
from storage.base import HistoryAttachment

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


def _wants_event_stream(request: web.Request) -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


@routes.post("/api/v1/bots/{bot}/messages")
async def post_message(request: web.Request) -> web.StreamResponse:
    """Run one turn; answer ``{"session_id", "replies"}`` or stream it as server-sent events.

    A ``message_id`` sent again answers with the replies of its first delivery: such a
    message is written before its turn runs. One without (its sender cannot send it again)
    answered as JSON is written with its turn's outcome, in one commit.
    Needs a credential (401 without): the user is the credential's own, and
    only an ``app`` or ``admin`` names it in the body's ``user_id``.
    """
    bot = request.match_info["bot"]
    if request.app[BOTS].get(bot) is None:
        raise UnknownBot(bot)
    user = message_user(await require_caller(request, bot))
    if request.content_type not in ("application/json", "application/octet-stream", ""):
        raise web.HTTPUnsupportedMediaType(text="send the message as application/json")
    data = web_channel.decode_json_object(await request.read())
    if user is not None:
        data = without_user_id(data)  # a user's id is its credential's, never the body's
    message = web_channel.parse_message(bot, data, user_id=user)
    path = request.app[MESSAGE_PATH]
    if not _wants_event_stream(request):
        result = await path.run_inline(
            message, CollectingSink(), written_after=data.get("message_id") in (None, "")
        )
        return json_response(
            {"session_id": result.session_id, "replies": [reply_json(r) for r in result.replies]}
        )

    stream = EventStreamSink(request)
    try:
        result = await path.run_inline(message, stream)
    except (TurnRejected, TurnFailed, MessageQueued, MessageFailed) as e:
        if stream.response is None:
            raise  # nothing sent yet: a plain JSON error answer
        code = e.code if isinstance(e, TurnRejected) else "turn_failed"
        await stream.send("error", {"error": code, "message": str(e)})
        return stream.response
    if result.recorded:  # the turn ran elsewhere: its recorded replies
        for reply in result.replies:
            await stream.message(reply)
    replies = [reply_json(r) for r in result.replies]
    await stream.send("done", {"session_id": result.session_id, "replies": replies})
    assert stream.response is not None
    await stream.response.write_eof()
    return stream.response


@routes.post("/api/v1/bots/{bot}/send")
async def send_proactive(request: web.Request) -> web.Response:
    """Queue a message the user did not ask for: 202 ``{"outbox_id", "channel", "to"}``.

    ``{"channel", "to", "text"}`` names the address; ``{"user_id", "text"}`` a user the bot
    has seen, reached on the channel it last talked on. An ``Idempotency-Key`` header (or
    ``message_id``) sent again answers with the first request's row and queues nothing.
    Only an ``app`` or ``admin`` of the bot may send.
    """
    bot = request.match_info["bot"]
    if request.app[BOTS].get(bot) is None:
        raise UnknownBot(bot)
    principal = await require_caller(request, bot)
    if not principal.acts_for_users:
        raise Forbidden("sending proactive messages needs the app or admin role")
    if request.content_type not in ("application/json", "application/octet-stream", ""):
        raise web.HTTPUnsupportedMediaType(text="send the message as application/json")
    data = web_channel.decode_json_object(await request.read())
    template = _template_field(data, request.app[BOTS].get(bot))
    text = _text_field(data, "text") if template is None else ""
    key = _idempotency_key(request, data)
    sender = request.app[PROACTIVE]
    if "user_id" in data:
        if "channel" in data or "to" in data:
            return json_error(400, "bad_request", "name either user_id or channel and to")
        recipient = await sender.to_user(bot, _text_field(data, "user_id", limit=MAX_ADDRESS))
    else:
        channel = _text_field(data, "channel", limit=50)
        recipient = await sender.to_address(
            bot, channel, _text_field(data, "to", limit=MAX_ADDRESS)
        )
    queued = await sender.queue(
        bot, recipient, text, origin="api", idempotency_key=key, template=template
    )
    request.app[DELIVERY].wake()
    log.info(
        "proactive message bot=%s channel=%s outbox=%d%s",
        bot,
        recipient.channel,
        queued.outbox_id,
        "" if queued.created else " (idempotent repeat)",
    )
    return json_response(
        {
            "outbox_id": queued.outbox_id,
            "channel": queued.recipient.channel,
            "to": queued.recipient.conversation,
            "status": "queued",
            "duplicate": not queued.created,
        },
        status=202,
    )


def _template_field(data: dict[str, object], bot: Bot | None) -> TemplateRef | None:
    """``{"template": {"name", "params"?: [..] | {..}}}``: a provider template instead of
    text (sent in the WhatsApp window and out of it), in the bot's template language."""
    raw = data.get("template")
    if raw is None:
        return None
    if "text" in data:
        raise PayloadError("send either text or a template")
    if not isinstance(raw, dict) or set(raw) - {"name", "params"}:
        raise PayloadError("'template' must be an object with 'name' and optional 'params'")
    params = raw.get("params")
    if params is not None and not isinstance(params, list | dict):
        raise PayloadError("the template's 'params' must be a list or an object")
    language = templates.language_of(bot.package.config if bot is not None else {})
    try:
        return templates.template_ref(raw.get("name"), params, language)
    except templates.TemplateRefused as e:
        raise PayloadError(str(e)) from e


def _text_field(data: dict[str, object], name: str, *, limit: int | None = None) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(f"field {name!r} must be a non-empty string")
    if limit is not None and len(value) > limit:
        raise PayloadError(f"field {name!r} is longer than {limit} characters")
    return value


def _idempotency_key(request: web.Request, data: dict[str, object]) -> str | None:
    header = request.headers.get("Idempotency-Key")
    body = data.get("message_id")
    if body is not None and (not isinstance(body, str) or not body.strip()):
        raise PayloadError("field 'message_id' must be a non-empty string")
    if header is not None and body is not None and header != body:
        raise PayloadError("Idempotency-Key and message_id differ")
    key = header if header is not None else body
    if key is not None and (not key.strip() or len(key) > 200):
        raise PayloadError("the idempotency key must be 1 to 200 characters")
    return f"api:{key}" if key is not None else None


@routes.get("/api/v1/bots/{bot}/sessions/{session_id}/messages")
async def get_history(request: web.Request) -> web.Response:
    """A session's history, for the user it belongs to.

    A user (visitor token, JWT, user key) reads only its own sessions; an
    ``app``, ``agent`` or ``admin`` any session of its bot (``?user_id=``, when
    given, must be the session's user). Someone else's session is 404, as one
    that does not exist.

    Each message carries its ``id``, a cursor: ``?after=<id>`` answers the messages
    stored after that one, oldest first (an app woken by a push catches up with
    it), and ``next`` is the cursor to ask with next time.
    """
    bot = request.match_info["bot"]
    session_id = request.match_info["session_id"]
    principal = await require_caller(request, bot)
    user_id = _reader(principal) or request.query.get("user_id") or None
    try:
        limit = min(max(int(request.query.get("limit", "50")), 1), 500)
    except ValueError:
        return json_error(400, "bad_request", "query parameter 'limit' must be an integer")
    raw_after = request.query.get("after")
    after = None
    if raw_after is not None:
        if not raw_after.isdigit() or len(raw_after) > 19:
            return json_error(400, "bad_request", "query parameter 'after' must be a message id")
        after = int(raw_after)
    store = request.app[STORES].conversations
    session = await store.get(session_id)
    if session is None or session.bot_id != bot:
        raise UnknownSession(session_id)
    if user_id is not None and session.user_id != user_id:
        raise UnknownSession(session_id)
    entries = await store.history(session_id, limit=limit, after=after)
    last = next((e.seq for e in reversed(entries) if e.seq is not None), after)
    messages = []
    for e in entries:
        message: dict[str, object] = {
            "id": str(e.seq),
            "role": e.role,
            "text": e.content,
            "at": e.created_at.isoformat() if e.created_at else None,
        }
        if e.attachments:
            message["attachments"] = [await _attachment(request, a) for a in e.attachments]
        messages.append(message)
    return json_response(
        {
            "session_id": session.id,
            "messages": messages,
            "next": str(last) if last is not None else None,
        }
    )


async def _attachment(request: web.Request, attachment: HistoryAttachment) -> dict[str, object]:
    """A history row's file, with a link that expires (the store's, or ``/media/{token}``)."""
    out: dict[str, object] = {
        "kind": attachment.kind,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "filename": attachment.filename,
        "caption": attachment.caption,
    }
    if attachment.key is not None:
        out["url"] = await request.app[MEDIA_URLS].url(
            attachment.key, filename=attachment.filename, content_type=attachment.content_type
        )
    if attachment.error is not None:
        out["error"] = attachment.error
    if attachment.transcript is not None:
        out["transcript"] = attachment.transcript
    return out


def _reader(principal: Principal) -> str | None:
    """The only user whose sessions ``principal`` may read; None: any of its bot's."""
    if principal.acts_for_users or "agent" in principal.roles:
        return None
    return message_user(principal)


@routes.post("/api/v1/visitors")
async def new_visitor(request: web.Request) -> web.Response:
    """A new anonymous visitor: ``{"visitor_token", "user_id"}`` (what the widget keeps)."""
    token, user_id = request.app[AUTH].visitors.issue()
    return json_response({"visitor_token": token, "user_id": user_id}, status=201)


@routes.post("/api/v1/bots/{bot}/reload")
async def reload_bot(request: web.Request) -> web.Response:
    """Read a bot's package from disk again and report its dialogs and errors."""
    name = request.match_info["bot"]
    await require_admin(request, name, "reload")
    if not valid_bot_name(name):
        raise UnknownBot(name)
    bot = await request.app[BOTS].reload(name)
    if bot is None:
        raise UnknownBot(name)
    await request.app[STORES].bot_configs.put(bot.name, without_secrets(bot.package.config))
    await request.app[CHANNELS].load(bot.name, bot.package.config)
    await request.app[POLLERS].sync(bot.name)
    if request.app[SETTINGS].kb_ingest_on_load:
        request.app[INGESTER].ingest(bot.name, bot.package.path)
    request.app[WEBSITES].loaded(bot)
    return json_response(
        {
            "bot": bot.name,
            "dialogs": sorted(bot.programs),
            "errors": [str(e) for e in bot.errors],
        }
    )


@routes.get("/api/v1/bots/{bot}/channels")
async def bot_channels(request: web.Request) -> web.Response:
    """Each provider channel of a bot: on or why not, webhook, last inbound, queue, parked."""
    name = request.match_info["bot"]
    await require_admin(request, name, "channel state")
    if not valid_bot_name(name) or request.app[BOTS].get(name) is None:
        raise UnknownBot(name)
    states = await channel_states(request.app[CHANNELS], request.app[STORES], name)
    return json_response({"bot": name, "channels": states})


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    """The process is up and serving."""
    return json_response({"status": "ok"})


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    """Every store answers; 503 with the failing ones otherwise."""
    checks = await request.app[STORES].ping()
    ok = all(checks.values())
    return json_response(
        {"status": "ready" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )
