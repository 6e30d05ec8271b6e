"""Provider webhooks: ``/webhooks/telegram|whatsapp|twilio|generic/{bot}``, and the channels'
state.

A webhook is answered only after each message it carries is claimed in the
inbox, so a 200 means the message is safe; the turn runs later in a worker.
What is refused, and how:

- an unknown bot, or a channel the bot does not have on: 404;
- a channel the bot asked for but is missing a secret of: 404, and its note
  is logged at start (fail closed: without the secret no request can be checked);
- a missing, forged or stale signature or secret token: 403, nothing read;
- a body over the size limit: 413;
- a verified body we cannot read: 200 with the reason logged — the provider
  sent it and would only send it again;
- a store that cannot be written: 503, so the provider delivers again.

The generic webhook (``channels/generic.py``) is called by backends of our users rather than
by a provider, so it answers what it did: ``{"accepted": true}``, or ``false`` for a
``message_id`` already received; a body it cannot read is a 400 saying why. A signed request
is valid for five minutes; within them the same signature is refused a second time (403
``replayed``): whoever captured a request cannot have it run again or learn anything from
the answer, whatever message id it carries. The signature is remembered only once the message
is claimed, so a request that got a 503 may be sent again as it was; a sender retrying after
a lost answer signs again with a fresh timestamp, and the inbox drops the duplicate.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from channels.base import (
    Channel,
    PayloadError,
    StatusUpdate,
    VerificationError,
    WebhookRequest,
    WebhookResponse,
    WebhookResult,
)
from channels.generic import MAX_AGE, MAX_AHEAD, GenericChannel, parse_message
from channels.hub import GENERIC, TELEGRAM, TWILIO_SMS, TWILIO_WHATSAPP, WHATSAPP, ChannelHub
from config.packages import valid_bot_name
from gateway.keys import BOTS, CHANNELS, MESSAGE_PATH, STORES
from gateway.responses import json_error, json_response
from pipeline.message_path import MessagePath
from storage.base import Cache, StorageError
from storage.services import Stores

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

# Provider codes that mean the customer-service window is closed.
WINDOW_CLOSED_CODES = frozenset({"131047", "63016"})


async def _verified(
    request: web.Request, channel: str
) -> tuple[str, Channel, WebhookRequest] | web.Response:
    """The bot, its adapter and the request once its signature is checked; else the refusal."""
    bot = request.match_info["bot"]
    if not valid_bot_name(bot) or request.app[BOTS].get(bot) is None:
        log.info("webhook %s for unknown bot %r refused", channel, bot[:100])
        return json_error(404, "unknown_bot", f"no bot named {bot!r}")
    state = request.app[CHANNELS].state(bot, channel)
    if state is None or state.adapter is None:
        why = state.note if state is not None else "not configured"
        log.warning("webhook %s for bot %s refused: the channel is off (%s)", channel, bot, why)
        return json_error(404, "channel_off", f"bot {bot!r} has no {channel} channel on")
    adapter = state.adapter
    webhook = WebhookRequest(
        method=request.method,
        url=str(request.url),
        headers=request.headers,
        query=request.query,
        body=await request.read(),
    )
    try:
        adapter.verify(webhook)
    except VerificationError as e:
        log.warning("webhook %s for bot %s refused: %s", channel, bot, e)
        return json_error(403, "forbidden", "the request is not signed by the provider")
    return bot, adapter, webhook


async def _webhook(request: web.Request, channel: str) -> web.Response:
    verified = await _verified(request, channel)
    if isinstance(verified, web.Response):
        return verified
    bot, adapter, webhook = verified
    try:
        result = await adapter.parse(bot, webhook)
    except PayloadError as e:
        log.warning("webhook %s for bot %s: unreadable body acknowledged: %s", channel, bot, e)
        return web.Response(status=200)
    await record(request.app[MESSAGE_PATH], request.app[STORES], bot, channel, result)
    return _response(result.response)


async def record(
    path: MessagePath, stores: Stores, bot: str, channel: str, result: WebhookResult
) -> None:
    """Claim the result's messages and record its delivery reports.

    Raises :class:`~storage.base.StorageError` when the inbox cannot be
    written: the provider must then get an error and deliver again.
    """
    for message in result.messages:
        await path.accept(message)
    for status in result.statuses:
        await _report(stores, bot, status.channel or channel, status)
    for what in result.ignored:
        log.info("webhook %s for bot %s: %s acknowledged, not read", channel, bot, what)


async def _report(stores: Stores, bot: str, channel: str, status: StatusUpdate) -> None:
    await stores.outbox.report(
        bot,
        channel,
        status.provider_id,
        status.status,
        error_code=status.error_code,
        error_message=status.error_message,
        at=status.at,
    )
    if status.error_code in WINDOW_CLOSED_CODES and status.conversation:
        await stores.windows.close_window(bot, channel, status.conversation)
    if status.error_code:
        log.warning(
            "bot %s %s: message %s %s (%s %s)",
            bot,
            channel,
            status.provider_id,
            status.status,
            status.error_code,
            status.error_message or "",
        )


def _response(response: WebhookResponse | None) -> web.Response:
    if response is None:
        return web.Response(status=200)
    return web.Response(
        status=response.status, body=response.body, content_type=response.content_type
    )


@routes.post("/webhooks/telegram/{bot}")
async def telegram_webhook(request: web.Request) -> web.Response:
    return await _webhook(request, TELEGRAM)


@routes.get("/webhooks/whatsapp/{bot}")
async def whatsapp_handshake(request: web.Request) -> web.Response:
    return await _webhook(request, WHATSAPP)


@routes.post("/webhooks/whatsapp/{bot}")
async def whatsapp_webhook(request: web.Request) -> web.Response:
    return await _webhook(request, WHATSAPP)


@routes.post("/webhooks/twilio/{bot}")
async def twilio_webhook(request: web.Request) -> web.Response:
    # One webhook for the account's WhatsApp sender and SMS number alike.
    hub = request.app[CHANNELS]
    bot = request.match_info["bot"]
    channel = TWILIO_WHATSAPP if hub.adapter(bot, TWILIO_WHATSAPP) else TWILIO_SMS
    return await _webhook(request, channel)


@routes.post("/webhooks/generic/{bot}")
async def generic_webhook(request: web.Request) -> web.Response:
    """A signed message from a backend; see the module doc for what it is answered."""
    verified = await _verified(request, GENERIC)
    if isinstance(verified, web.Response):
        return verified
    bot, adapter, webhook = verified
    assert isinstance(adapter, GenericChannel)
    cache = request.app[STORES].cache
    key = f"webhook-replay:{bot}:{adapter.replay_key(webhook)}"
    if await cache.get(key) is not None:
        log.warning("webhook generic for bot %s refused: a replayed signature", bot)
        return json_error(403, "replayed", "this signed request was received before")
    message = parse_message(bot, webhook.body)  # PayloadError: a 400 saying why
    await cache.set(key, b"1", ttl=MAX_AGE + MAX_AHEAD)
    try:
        accepted = await request.app[MESSAGE_PATH].accept(message)
    except StorageError:
        await _forget(cache, key)  # not claimed: the same request may come again
        raise
    return json_response({"accepted": accepted, "message_id": message.external_id})


async def _forget(cache: Cache, key: str) -> None:
    try:
        await cache.delete(key)
    except StorageError as e:
        log.error("replay key not deleted (the sender must sign again): %s", e)


# -- the operator's view ---------------------------------------------------------------------


async def channel_states(hub: ChannelHub, stores: Stores, bot: str) -> list[dict[str, object]]:
    """Each provider channel of ``bot``: on or why not, webhook, last inbound, queue, parked."""
    channels = hub.bot(bot)
    if channels is None:
        return []
    out: list[dict[str, object]] = []
    for name, state in sorted(channels.states.items()):
        counts = await stores.inbox.counts(bot, name)
        out.append(
            {
                "channel": name,
                "configured": state.enabled,
                "note": state.note,
                "mode": getattr(state.adapter, "mode", "webhook") if state.adapter else None,
                "webhook": await _webhook_url(state.adapter),
                "last_inbound_at": (
                    counts.last_received_at.isoformat() if counts.last_received_at else None
                ),
                "queue": {"pending": counts.pending, "running": counts.running},
                "dead_messages": counts.dead,
                "parked_sends": await stores.outbox.parked(bot, name),
            }
        )
    return out


async def _webhook_url(adapter: Channel | None) -> str | None:
    """Telegram says where it delivers; the other providers keep it in their console."""
    webhook_url = getattr(adapter, "webhook_url", None)
    if webhook_url is None:
        return None
    try:
        async with asyncio.timeout(5):
            url: str | None = await webhook_url()
    except Exception as e:  # the state page must show, whatever the provider says
        log.info("telegram getWebhookInfo failed: %s", e)
        return "unknown"
    return url
